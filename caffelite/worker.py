"""The worker identity: which of how many data-parallel workers this process is.

Caffe keeps this beside the mode in common.hpp (``solver_rank``, ``solver_count``); here it
sits below the layers, which read it, and below ``caffelite.parallel``, which installs it
(and re-exports these names). One context is current per process (``current()``); it
starts as the single worker (rank 0 of 1). Data-parallel training installs its own
(``set_current``, or ``using``) BEFORE the solver builds its nets, because data layers read
the rank and the worker count once, at setup:

- HDF5Data, Data (and any layer class that declares ``solver_rank = WorkerAttribute('rank')``
  / ``solver_count = WorkerAttribute('size')``) take ``self.solver_rank`` /
  ``self.solver_count`` from the current context unless a value was assigned to the layer
  (``layer.solver_rank = 1``, as tests do);
- a Python layer reads ``caffelite.parallel.current().rank`` / ``.size`` (the same object as
  ``caffelite.worker.current()``) in its setup and keeps every ``size``-th record starting
  at ``rank`` (record i of the stream to worker i mod size, at TRAIN only: test nets run on
  rank 0 alone, with the whole stream).

``shared_seed`` is one integer equal on every worker (rank 0 draws it and broadcasts it):
a data layer that shuffles under several workers must shuffle with ``shard_rng`` so that
every worker shuffles alike and the shards (i mod size) stay disjoint and cover the epoch.
"""
import contextlib
import zlib

import numpy as np


class WorkerContext:
    """rank, size (the worker count), ``kind`` ('local', 'mpi', 'nccl') and
    ``shared_seed`` (equal on every worker). The base class is the single local worker."""
    kind = 'local'

    def __init__(self, rank=0, size=1, shared_seed=0):
        if not 0 <= int(rank) < int(size):
            raise ValueError(f'rank {rank} is not in [0, {size})')
        self.rank, self.size, self.shared_seed = int(rank), int(size), int(shared_seed)

    @property
    def is_root(self):
        """True on the worker that logs, tests and snapshots (rank 0)."""
        return self.rank == 0

    def shard_rng(self, key):
        """A numpy Generator seeded from (shared_seed, key): the same stream on every
        worker, for shuffling a stream that is then dealt out by rank."""
        return np.random.default_rng([self.shared_seed, zlib.crc32(str(key).encode())])

    def __repr__(self):
        return f'{type(self).__name__}(rank={self.rank}, size={self.size})'


_state = {'current': WorkerContext()}


def current():
    """The worker context of this process (rank 0 of 1 unless training data-parallel)."""
    return _state['current']


def set_current(context):
    """Install ``context`` (None: back to the single worker); returns the previous one."""
    previous = _state['current']
    _state['current'] = context if context is not None else WorkerContext()
    return previous


@contextlib.contextmanager
def using(context):
    """``with using(ctx): solver = SGDSolver(path)``: ctx is current inside the block."""
    previous = set_current(context)
    try:
        yield context
    finally:
        set_current(previous)


class WorkerAttribute:
    """A layer class attribute whose value is the current context's ``rank`` or ``size``,
    read when the attribute is read (i.e. at the layer's setup), unless a value was assigned
    to the instance::

        class HDF5DataLayer(...):
            solver_rank = WorkerAttribute('rank')
            solver_count = WorkerAttribute('size')
    """

    def __init__(self, field):
        if field not in ('rank', 'size'):
            raise ValueError(f'WorkerAttribute reads "rank" or "size", not "{field}"')
        self.field = field
        self.slot = None

    def __set_name__(self, owner, name):
        self.slot = '_assigned_' + name

    def __get__(self, obj, owner=None):
        if obj is not None and self.slot in obj.__dict__:
            return obj.__dict__[self.slot]
        return getattr(current(), self.field)

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = int(value)


def shard_rng(layer_rng, key):
    """The generator a data layer shuffles with: its own ``layer_rng`` when it is the only
    worker, else the context's shared stream for ``key`` (the layer's name), equal on every
    worker so that dealing record i to worker i mod size gives disjoint shards."""
    ctx = current()
    return layer_rng if ctx.size <= 1 else ctx.shard_rng(key)

