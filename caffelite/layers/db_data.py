"""The Data layer (Caffe's DataLayer): Datum records from an LMDB (or LevelDB) database.

Also the pieces Caffe's tools share with it: opening a database for reading or writing
(:func:`open_db_reader`, :func:`open_db_writer`), and Datum -> image conversion
(:func:`datum_to_image`, :func:`decode_image_bytes`, :func:`encode_image`; images -> Datum
is ``caffelite.io.array_to_datum``).

A Datum holds one item: ``channels`` x ``height`` x ``width`` raw uint8 pixels in ``data``
(C x H x W order, BGR for colour, as convert_imageset writes them), or the same number of
floats in ``float_data`` (extract_features), or, with ``encoded: true``, a whole JPEG/PNG
file in ``data``; plus an integer ``label``. Records are read in key order (LMDB and LevelDB
keep keys sorted), wrapping around to the first record after the last.
"""
import io
import logging
import os
import threading
import warnings
import weakref

import numpy as np
from google.protobuf.message import DecodeError

from ..data_transformer import DataTransformer, load_image, resolve_path
from ..errors import CaffeliteError, LayerError
from ..proto import caffelite_pb2 as pb
from ..worker import shard_rng
from .base import register
from .data import PrefetchingDataLayer, _source_dir

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

class LMDBWriter:
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

    def close(self):
        self.commit()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LevelDBWriter:
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

    def close(self):
        self.commit()
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_db_writer(path, backend):
    """A writer for a new database at ``path`` (which must not exist yet)."""
    return (LMDBWriter if backend_name(backend) == LMDB else LevelDBWriter)(path)


# -- Datum <-> image ----------------------------------------------------------------------------

_GRAY_MODES = ('1', 'L', 'I', 'I;16', 'I;16B', 'I;16L', 'F')


def decode_image_bytes(data, color=None):
    """Decode a JPEG/PNG/... file held in ``data`` into uint8 C x H x W.

    color True: 3-channel BGR; False: 1 gray channel; None: the file's own channels, as
    OpenCV's ``imdecode(..., IMREAD_UNCHANGED)`` (Caffe's DecodeDatumToCVMatNative) gives
    them -- 1 for grayscale, 4 (BGRA) with an alpha channel, else 3 (BGR).
    Raises LayerError with the decoder's message.
    """
    if color is not None:
        return load_image(io.BytesIO(data), bool(color))
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode in _GRAY_MODES:
                return load_image(io.BytesIO(data), False)
            has_alpha = 'A' in img.getbands() or 'transparency' in img.info
            if not has_alpha:
                return load_image(io.BytesIO(data), True)
            array = np.asarray(img.convert('RGBA'), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise LayerError(f'cannot decode the encoded image: {err}') from None
    return np.ascontiguousarray(array[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))


ENCODE_FORMATS = {'jpg': 'JPEG', 'jpeg': 'JPEG', 'png': 'PNG', 'bmp': 'BMP', 'ppm': 'PPM',
                  'pgm': 'PPM', 'tif': 'TIFF', 'tiff': 'TIFF', 'webp': 'WEBP'}


def encode_image(array, encode_type):
    """Encode a uint8 C x H x W (BGR or gray) image as ``encode_type`` ('jpg', 'png', ...),
    as OpenCV's imencode does (JPEG quality 95)."""
    from PIL import Image
    fmt = ENCODE_FORMATS.get(encode_type.lower().lstrip('.'))
    if fmt is None:
        raise CaffeliteError(f'unknown encode_type "{encode_type}"; use one of '
                             f'{", ".join(sorted(ENCODE_FORMATS))}')
    array = np.asarray(array, dtype=np.uint8)
    if array.shape[0] == 1:
        img = Image.fromarray(array[0], 'L')
    else:
        img = Image.fromarray(np.ascontiguousarray(array[::-1].transpose(1, 2, 0)), 'RGB')
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({'quality': 95} if fmt == 'JPEG' else {}))
    return buffer.getvalue()


def datum_to_image(datum, color=None):
    """The C x H x W image of a Datum: uint8 from raw or encoded ``data``, float32 from
    ``float_data``. ``color`` is the decoding mode of encoded data (see
    :func:`decode_image_bytes`). Raises LayerError when the sizes do not agree."""
    if datum.encoded:
        return decode_image_bytes(datum.data, color)
    shape = (datum.channels, datum.height, datum.width)
    count = int(np.prod(shape))
    if len(datum.data):
        if len(datum.data) != count:
            raise LayerError(f'it holds {len(datum.data)} bytes of pixel data, but channels x '
                             f'height x width = {" x ".join(map(str, shape))} = {count}')
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    if len(datum.float_data):
        if len(datum.float_data) != count:
            raise LayerError(f'it holds {len(datum.float_data)} float_data values, but channels'
                             f' x height x width = {" x ".join(map(str, shape))} = {count}')
        return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)
    if count:
        raise LayerError(f'it has neither data nor float_data for its '
                         f'{" x ".join(map(str, shape))} shape')
    raise LayerError('it is empty (no shape, data or float_data)')


def parse_datum(value):
    """A Datum from a record's bytes; LayerError with the protobuf message if they do not
    parse."""
    datum = pb.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as err:
        raise LayerError(f'it does not parse as a Datum ({err})') from None
    return datum


def record_to_item(key, value, color, where):
    """(image, label) of one record; errors name the record's key and ``where`` (the db)."""
    try:
        datum = parse_datum(value)
        return datum_to_image(datum, color), datum.label
    except LayerError as err:
        raise LayerError(f'corrupt record "{key.decode(errors="replace")}" in {where}: '
                         f'{err}') from None


# -- the Data layer -----------------------------------------------------------------------------

class DatumSource:
    """Caffe's DataLayer::load_batch over a database cursor.

    Record k of the stream (counted from the first record, through wrap-arounds, and
    including the ``skip`` records passed over at the start) is kept by the worker with
    rank k % count (Caffe's Skip(); count is 1 at TEST). Each batch takes the shape of its
    first record; a record of another shape is an error naming its key.
    """

    def __init__(self, reader, batch_size, transformer, rng, dtype, color, skip=0,
                 rank=0, count=1):
        self.reader, self.batch_size, self.transformer = reader, batch_size, transformer
        self.rng, self.dtype, self.color = rng, dtype, color
        self.skip, self.rank, self.count = skip, rank, count
        self.records = None   # created by the first next_batch, in the loading thread
        self.offset = 0
        self.where = f'{reader.backend.upper()} {reader.path}'

    def _advance(self):
        record = next(self.records)
        self.offset += 1
        return record

    def _next_record(self):
        if self.records is None:
            self.records = endless_records(self.reader)
            for _ in range(self.skip):
                self._advance()
        while self.offset % self.count != self.rank:
            self._advance()
        return self._advance()

    def next_batch(self):
        items, labels, keys = [], [], []
        for _ in range(self.batch_size):
            key, value = self._next_record()
            image, label = record_to_item(key, value, self.color, self.where)
            if items and image.shape != items[0].shape:
                raise LayerError(
                    f'record "{key.decode(errors="replace")}" in {self.where} is '
                    f'{" x ".join(map(str, image.shape))}, the batch\'s first record '
                    f'"{keys[0].decode(errors="replace")}" is '
                    f'{" x ".join(map(str, items[0].shape))}: records of a batch must have '
                    f'one shape')
            items.append(image)
            labels.append(label)
            keys.append(key)
        batch = np.stack(items)
        if batch.dtype != np.uint8:
            batch = batch.astype(np.float32)
        data = self.transformer.transform(batch, self.rng, dtype=self.dtype)
        return data, np.asarray(labels, dtype=self.dtype)


@register('Data')
class DataLayer(PrefetchingDataLayer):
    """Datum records from a database (Caffe's Data layer).

    data_param: source (the database folder, looked up in the working directory, then
    beside the prototxt), backend (LEVELDB, the default, needs the plyvel package; LMDB needs
    lmdb), batch_size, rand_skip (pass over a random number < rand_skip of records at the
    start), prefetch (batches loaded ahead), force_encoded_color. transform_param applies
    (crop, mirror, mean_file / mean_value, scale); force_color / force_gray choose how
    encoded images decode, which otherwise keep their own channels.
    Tops: data (batch_size x C x H' x W') and, optionally, label (batch_size).
    At TRAIN with ``solver_count`` workers, the worker of rank ``solver_rank`` keeps records
    rank, rank + count, ... (class attributes, set by the solver; 0 / 1 by default).
    """
    deals_records = True
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.data_param
        if self.prefetch_depth is None and p.HasField('prefetch'):
            self.prefetch_depth = int(p.prefetch)
        super().setup(bottom, top)

    def make_source(self, top):
        p = self.layer_param.data_param
        if p.batch_size <= 0:
            raise LayerError('data_param.batch_size must be positive')
        if not p.source:
            raise LayerError('data_param.source is not set')
        deprecated = [f for f in ('scale', 'mean_file', 'crop_size', 'mirror') if p.HasField(f)]
        if deprecated:
            warnings.warn(f'Data layer "{self.name}": data_param.{", ".join(deprecated)} '
                          f'{"is" if len(deprecated) == 1 else "are"} ignored, as in Caffe; '
                          f'give them in transform_param')
        path = resolve_path(p.source, _source_dir(self))
        try:
            reader = open_db_reader(path, p.backend)
        except CaffeliteError as err:
            raise LayerError(f'data_param.source: {err}') from None
        transformer = DataTransformer(self.layer_param.transform_param, self.phase,
                                      _source_dir(self))
        color = True if p.force_encoded_color else None
        color = transformer.color_override(color)
        where = f'{reader.backend.upper()} {path}'
        records = reader.items()
        first = next(records, None)
        records.close()
        if first is None:
            raise LayerError(f'{where} has no records')
        image, _ = record_to_item(first[0], first[1], color, where)
        shape = transformer.output_shape(*image.shape)
        count = max(int(self.solver_count), 1) if self.phase == pb.TRAIN else 1
        rank = int(self.solver_rank) if count > 1 else 0
        skip = 0
        if p.rand_skip:     # one skip for all ranks, so that their shards stay disjoint
            skip_rng = shard_rng(self.rng, self.name) if count > 1 else self.rng
            skip = int(skip_rng.integers(0, p.rand_skip))
        source = DatumSource(reader, int(p.batch_size), transformer, self.rng, self.dtype,
                             color, skip, rank, count)
        return source, [(p.batch_size,) + shape, (p.batch_size,)][:len(top)]
