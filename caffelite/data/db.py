"""LMDB and LevelDB access: readers, writers (with their transactions), the endless record
stream of the Data layer.

A database maps keys to values (bytes); Caffe's data databases hold a serialized Datum per
record (see :mod:`.datum`). Records are read in key order (LMDB and LevelDB keep keys sorted).
LMDB needs the lmdb package, LevelDB the plyvel package; a missing one is a clear error.
"""
import logging
import os
import threading
import weakref

from ..errors import CaffeliteError, LayerError
from ..proto import caffelite_pb2 as pb

logger = logging.getLogger('caffelite')

LMDB, LEVELDB = 'lmdb', 'leveldb'


def backend_name(backend):
    """'lmdb' / 'leveldb' from a DataParameter.DB value or a (case-insensitive) name."""
    if isinstance(backend, str):
        name = backend.strip().lower()
        if name not in (LMDB, LEVELDB):
            raise CaffeliteError(f'unknown database backend "{backend}"; use lmdb or leveldb')
        return name
    return LMDB if backend == pb.DataParameter.LMDB else LEVELDB


def _import_lmdb():
    try:
        import lmdb
    except ImportError:
        raise CaffeliteError('the LMDB backend needs the lmdb package, which is not installed: '
                             'pip install lmdb (or caffelite[lmdb])') from None
    return lmdb


def _import_plyvel(path):
    try:
        import plyvel
    except ImportError:
        raise CaffeliteError(
            f'{path}: backend LEVELDB needs a LevelDB binding (the plyvel package), which is not '
            f'installed. Install plyvel, or convert the data to LMDB (caffelite convert_imageset '
            f'-backend lmdb ...) and set data_param {{ backend: LMDB }}') from None
    return plyvel


# -- reading ------------------------------------------------------------------------------------

class _SharedEnv:
    """One open read-only LMDB environment, shared by every reader of its folder (the lmdb
    package refuses to open an environment twice in a process); closed when the last reader
    lets go of it."""

    def __init__(self, env):
        self.env = env


_OPEN_ENVS = weakref.WeakValueDictionary()    # real path -> _SharedEnv
_OPEN_ENVS_LOCK = threading.Lock()


class LMDBReader:
    """Read-only access to an LMDB environment (a folder holding data.mdb)."""

    backend = LMDB

    def __init__(self, path):
        lmdb = _import_lmdb()
        self.path = path
        if not os.path.isdir(path):
            raise CaffeliteError(f'LMDB {path} does not exist (or is not a folder)')
        key = os.path.realpath(path)
        with _OPEN_ENVS_LOCK:
            shared = _OPEN_ENVS.get(key)
            if shared is None:
                try:
                    env = lmdb.open(path, readonly=True, lock=False, readahead=False,
                                    max_readers=256)
                except lmdb.Error as err:
                    raise CaffeliteError(f'cannot open LMDB {path}: {err}') from None
                shared = _SharedEnv(env)
                _OPEN_ENVS[key] = shared
        self._shared = shared
        self.env = shared.env

    def __len__(self):
        return int(self.env.stat()['entries'])

    def items(self):
        """(key, value) bytes pairs in key order, from the first record to the last."""
        with self.env.begin(buffers=False) as txn:
            for key, value in txn.cursor():
                yield key, value

    def close(self):
        """Let go of the environment (closed when no other reader holds it)."""
        self.env = self._shared = None


class LevelDBReader:
    """Read-only access to a LevelDB folder through plyvel."""

    backend = LEVELDB

    def __init__(self, path):
        plyvel = _import_plyvel(path)
        self.path = path
        try:
            self.db = plyvel.DB(path, create_if_missing=False)
        except Exception as err:  # plyvel.Error and IOError
            raise CaffeliteError(f'cannot open LevelDB {path}: {err}') from None

    def __len__(self):
        return sum(1 for _ in self.db.iterator(include_value=False))

    def items(self):
        with self.db.snapshot() as snapshot:
            for key, value in snapshot.iterator():
                yield key, value

    def close(self):
        self.db.close()


def open_db_reader(path, backend):
    """An LMDBReader or LevelDBReader for ``path``; errors name the path and the backend."""
    return (LMDBReader if backend_name(backend) == LMDB else LevelDBReader)(path)


def endless_records(reader):
    """reader's records in order, forever: after the last, the first again (Caffe's
    "Restarting data prefetching from start")."""
    while True:
        empty = True
        for record in reader.items():
            empty = False
            yield record
        if empty:
            raise LayerError(f'database {reader.path} has no records')
        logger.info('Restarting data prefetching from start.')


# -- writing ------------------------------------------------------------------------------------

class _Writer:
    """A context manager around a new database: ``close()`` commits what is pending, then
    closes the database (``_close_db``)."""

    def close(self):
        self.commit()
        self._close_db()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LMDBWriter(_Writer):
    """Write (key, value) records into a new LMDB folder, committing every ``commit_every``
    puts (Caffe commits every 1000) and growing the map when it is full."""

    def __init__(self, path, commit_every=1000):
        lmdb = _import_lmdb()
        self._lmdb = lmdb
        if os.path.exists(path):
            raise CaffeliteError(f'cannot create LMDB {path}: it already exists')
        self.path = path
        self.map_size = 1 << 26
        try:
            self.env = lmdb.open(path, map_size=self.map_size, subdir=True, lock=True)
        except lmdb.Error as err:
            raise CaffeliteError(f'cannot create LMDB {path}: {err}') from None
        self.pending = []
        self.commit_every = commit_every
        self.count = 0

    def put(self, key, value):
        key = key.encode() if isinstance(key, str) else key
        if len(key) > self.env.max_key_size():
            raise CaffeliteError(f'LMDB key "{key.decode(errors="replace")}" is '
                                 f'{len(key)} bytes long; LMDB allows at most '
                                 f'{self.env.max_key_size()}')
        self.pending.append((key, value))
        self.count += 1
        if len(self.pending) >= self.commit_every:
            self.commit()

    def commit(self):
        while self.pending:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                self.pending = []
            except self._lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)

    def _close_db(self):
        self.env.close()


class LevelDBWriter(_Writer):
    """Write records into a new LevelDB folder through plyvel."""

    def __init__(self, path, commit_every=1000):
        plyvel = _import_plyvel(path)
        if os.path.exists(path):
            raise CaffeliteError(f'cannot create LevelDB {path}: it already exists')
        self.path = path
        self.db = plyvel.DB(path, create_if_missing=True, error_if_exists=True)
        self.batch = self.db.write_batch()
        self.commit_every = commit_every
        self.count = 0
        self._pending = 0

    def put(self, key, value):
        key = key.encode() if isinstance(key, str) else key
        self.batch.put(key, value)
        self.count += 1
        self._pending += 1
        if self._pending >= self.commit_every:
            self.commit()

    def commit(self):
        self.batch.write()
        self.batch = self.db.write_batch()
        self._pending = 0

    def _close_db(self):
        self.db.close()


def open_db_writer(path, backend):
    """A writer for a new database at ``path`` (which must not exist yet)."""
    return (LMDBWriter if backend_name(backend) == LMDB else LevelDBWriter)(path)
