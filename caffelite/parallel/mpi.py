"""Data-parallel training over MPI, on mpi4py's buffer API (Caffe's multi-GPU semantics).

Every worker (one MPI process) runs the same solver on its own share of the data. Per
iteration:

1. rank 0 alone tests and snapshots (``worker_solver_param`` strips test nets, display and
   snapshots from the other ranks' solver files), while the others go straight on;
2. every worker runs forward/backward on its batch (its data layers keep records
   i = rank mod size of the stream, see context.py);
3. the parameter diffs are summed over the workers with ``Iallreduce`` on contiguous buffers
   (uppercase, no pickling) in buckets of ``bucket_mb`` (25 MB, PyTorch DDP's default): a
   bucket is issued as soon as backward has passed the lowest layer that owns one of its
   parameters, so the reduction of the top layers' gradients runs while the lower layers are
   still in backward (Caffe's layer-wise reduce, DDP's buckets);
4. before the update the workers wait for every bucket and scale the sums by 1/size (Caffe
   1.0 sums, then multiplies by 1 / solver_count), so each worker holds the mean gradient and
   applies the identical update: K workers at batch B train like one worker at batch K x B.

Initial weights (and, on resume, weights, solver history and iteration) are broadcast from
rank 0, so the replicas start equal whatever their seeds (random_seed + rank) drew.

How much of the reduction overlaps backward depends on the MPI's progress: a non-blocking
collective advances only inside MPI calls unless the MPI runs a progress thread (MPICH:
``MPIR_CVAR_ASYNC_PROGRESS=1``). So the reducer is a callback of the net after each layer's
backward (``Net.add_after_backward``, Caffe's hook): it issues the buckets that just became
final and polls the ones in flight (``Testall``), which keeps them moving between layers
without a thread.

This module knows nothing of NCCL (``nccl.py`` builds on it); ``launch.py`` picks the engine.
"""
import logging
import os
import socket
import time
import zlib

import numpy as np

from .. import backend
from ..errors import CaffeliteError
from ..solvers import signals
from ..worker import WorkerContext

logger = logging.getLogger('caffelite')

DEFAULT_BUCKET_MB = 25.0
_ACTION_CODES = {signals.NONE: 0, signals.STOP: 1, signals.SNAPSHOT: 2}
_ACTIONS = {code: name for name, code in _ACTION_CODES.items()}


def mpi_module():
    """mpi4py's MPI, or a CaffeliteError telling how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise CaffeliteError(f'training over MPI needs mpi4py and an MPI library: '
                             f'pip install "caffelite[mpi]" ({err})') from None
    return MPI


class MPIContext(WorkerContext):
    """The worker context of one MPI process: rank and size of ``comm`` (COMM_WORLD).
    ``shared_seed`` is drawn on rank 0 and broadcast."""
    kind = 'mpi'

    def __init__(self, comm=None, shared_seed=None):
        MPI = mpi_module()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        seed = np.zeros(1, np.int64)
        if self.comm.rank == 0:
            seed[0] = shared_seed if shared_seed is not None else \
                np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(2)
        self.comm.Bcast(seed, root=0)
        super().__init__(self.comm.rank, self.comm.size, int(seed[0]))

    def abort(self, code=1):
        """End every process of the job (MPI_Abort); does not return."""
        self.comm.Abort(code)

    def barrier(self):
        self.comm.Barrier()


# -- packing parameter blobs into contiguous buffers ---------------------------------------------

class Bucket:
    """Parameter blobs packed into one contiguous host buffer (their dtype, e.g. float32).

    ``ready_layer``: the lowest layer index owning one of the blobs; the bucket's gradients
    are final once backward has run that layer (backward goes from the last layer down).
    """

    def __init__(self, blobs, dtype, ready_layer=0):
        self.blobs, self.ready_layer = list(blobs), ready_layer
        self.slots, offset = [], 0
        for blob in self.blobs:
            self.slots.append((blob, offset, offset + blob.count))
            offset += blob.count
        self.buffer = np.empty(offset, dtype)
        self.request = None

    @property
    def nbytes(self):
        return self.buffer.nbytes

    def pack(self, field):
        """Copy every blob's ``field`` ('xdata' or 'xdiff') into the buffer."""
        for blob, start, end in self.slots:
            array = backend.to_host(getattr(blob, field))
            np.copyto(self.buffer[start:end].reshape(blob.shape), array, casting='same_kind')

    def unpack(self, field, scale=None):
        """Write the buffer back into every blob's ``field``, multiplied by ``scale``."""
        for blob, start, end in self.slots:
            view = self.buffer[start:end].reshape(blob.shape)
            target = getattr(blob, field)
            if isinstance(target, np.ndarray) and target.shape == blob.shape:
                if scale is None:
                    np.copyto(target, view, casting='same_kind')
                else:
                    np.multiply(view, scale, out=target, casting='same_kind')
            else:                                   # on the GPU: one host -> device copy
                value = view if scale is None else view * view.dtype.type(scale)
                setattr(blob, field, backend.to_device(value))


def make_buckets(blobs, bucket_bytes, ready_layer=None):
    """Group ``blobs`` (in the given order) into Buckets of at least ``bucket_bytes`` each
    (the last may be smaller; a blob is never split); a dtype change starts a new bucket.
    ``ready_layer(blob)`` gives each blob's layer index (default 0)."""
    buckets, group, size, dtype = [], [], 0, None

    def close():
        if group:
            ready = min(ready_layer(b) for b in group) if ready_layer else 0
            buckets.append(Bucket(group, dtype, ready))

    for blob in blobs:
        blob_dtype = np.dtype(blob.dtype)
        if group and (blob_dtype != dtype or size >= bucket_bytes):
            close()
            group, size = [], 0
        group.append(blob)
        size += blob.count * blob_dtype.itemsize
        dtype = blob_dtype
    close()
    return buckets


def first_use_by_blob(net):
    """id(blob) -> the lowest index of a layer holding that parameter blob (a shared
    parameter belongs to several layers; its gradient is final after the lowest one)."""
    first = {}
    for i, layer in enumerate(net.layers):
        for blob in layer.blobs:
            first.setdefault(id(blob), i)
    return first


def broadcast_blobs(comm, blobs, field, root=0, chunk_bytes=int(DEFAULT_BUCKET_MB * 2 ** 20)):
    """Make every rank's ``field`` ('xdata' / 'xdiff') of ``blobs`` equal to the root's
    (``Bcast`` on contiguous buffers, ``chunk_bytes`` at a time)."""
    for bucket in make_buckets(blobs, chunk_bytes):
        if comm.rank == root:
            bucket.pack(field)
        comm.Bcast(bucket.buffer, root=root)
        if comm.rank != root:
            bucket.unpack(field)


# -- the gradient reduction ---------------------------------------------------------------------

class GradientAllreduce:
    """Sums a net's parameter diffs over the ranks of ``comm`` and scales them by 1/size,
    bucket by bucket, each bucket issued (``Iallreduce``) as soon as backward has passed the
    layers that own it.

    It registers ``layer_done(i)`` as the net's after-backward callback. ``arm(passes)`` (at
    the start of an iteration) says how many forward/backward passes the iteration makes
    (the solver's iter_size): only the last pass issues reductions, since the diffs
    accumulate over the passes (a pass ends when backward has run layer 0). ``finish()``
    issues what is left, waits, and scales. With ``overlap=False`` every bucket is issued in
    ``finish()`` (after backward). Outside an armed iteration (pycaffe's ``net.backward()``)
    the callback does nothing.
    """

    def __init__(self, net, comm, bucket_bytes=int(DEFAULT_BUCKET_MB * 2 ** 20), overlap=True):
        self.net, self.comm, self.overlap = net, comm, overlap
        self.MPI = mpi_module()
        first = first_use_by_blob(net)
        params = list(net.learnable_params)
        # Backward produces the last layers' gradients first: pack those first.
        order = sorted(params, key=lambda blob: -first.get(id(blob), 0))
        self.buckets = make_buckets(order, bucket_bytes, lambda blob: first.get(id(blob), 0))
        self._passes_left = 0
        self._next = 0          # the first bucket not issued yet
        self.stats = {'iterations': 0, 'issued_during_backward': 0, 'issued_after_backward': 0,
                      'issue_seconds': 0.0, 'finish_seconds': 0.0}
        net.add_after_backward(self.layer_done)

    def arm(self, passes=1):
        self._passes_left = int(passes)
        self._next = 0

    def layer_done(self, i):
        """Backward has run layer i (and every layer above it): on the iteration's last pass,
        issue the buckets that are now final, and give the ones in flight a chance to
        progress."""
        if self._passes_left <= 0:                 # not inside a solver iteration
            return
        if self._passes_left == 1 and self.overlap:
            start = time.perf_counter()
            while self._next < len(self.buckets) and self.buckets[self._next].ready_layer >= i:
                self._issue(self._next)
                self.stats['issued_during_backward'] += 1
                self._next += 1
            self._progress()
            self.stats['issue_seconds'] += time.perf_counter() - start
        if i == 0:
            self._passes_left -= 1

    def _issue(self, k):
        bucket = self.buckets[k]
        bucket.pack('xdiff')
        bucket.request = self.comm.Iallreduce(self.MPI.IN_PLACE, bucket.buffer, op=self.MPI.SUM)

    def _progress(self):
        """Poll the buckets in flight (an MPI collective advances inside MPI calls)."""
        pending = [b.request for b in self.buckets[:self._next] if b.request is not None]
        if pending:
            self.MPI.Request.Testall(pending)

    def _wait(self):
        """Block until every issued bucket is reduced."""
        self.MPI.Request.Waitall([b.request for b in self.buckets])
        for bucket in self.buckets:
            bucket.request = None

    def finish(self):
        """Issue the remaining buckets, wait for all, and write diff = sum / size."""
        start = time.perf_counter()
        while self._next < len(self.buckets):
            self._issue(self._next)
            self.stats['issued_after_backward'] += 1
            self._next += 1
        self._wait()
        scale = 1.0 / self.comm.size
        for bucket in self.buckets:
            bucket.unpack('xdiff', scale)
        self._passes_left = 0
        self._next = 0
        self.stats['iterations'] += 1
        self.stats['finish_seconds'] += time.perf_counter() - start


# -- the solver's side --------------------------------------------------------------------------

def worker_solver_param(param, rank):
    """The SolverParameter that worker ``rank`` runs: rank 0 runs ``param`` as given; the
    others run no test nets, display nothing and write no snapshots (rank 0 does all three,
    as in Caffe). A copy; ``param`` is not changed."""
    copy = type(param)()
    copy.CopyFrom(param)
    if rank != 0:
        for field in ('test_net', 'test_net_param', 'test_iter', 'test_state'):
            copy.ClearField(field)
        copy.test_interval = 0
        copy.test_initialization = False
        copy.display = 0
        copy.snapshot = 0
        copy.snapshot_after_train = False
    return copy


#: Data layers that read a list or database in order: unless the class deals its records
#: out by rank (``deals_records``), under K workers each would read the same records.
LIST_READERS = ('ImageData', 'VideoData', 'WindowData', 'HDF5Data', 'Data')


def check_data_layers(net):
    """Refuse a train net whose data layers would give every worker the same records
    (a layer type of LIST_READERS whose class does not deal records out). HDF5Data, ImageData,
    VideoData and Data deal; DummyData draws from each worker's own seed; Input, MemoryData and Python
    layers are fed by the user's code, which reads ``caffelite.parallel.current()``."""
    for layer in net.layers:            # (not layer_dict: LRCN's two data layers share a name)
        if layer.type in LIST_READERS and not layer.deals_records:
            raise CaffeliteError(
                f'layer "{layer.name}" ({layer.type}) does not split its records among the '
                f'workers: every worker would read the same ones (and an LRCN net, whose '
                f'{layer.type} batches pair with HDF5Data batches, would pair the wrong '
                f'ones). Data-parallel training supports HDF5Data, ImageData, VideoData and '
                f'Data (dealt by rank), DummyData, and Input/MemoryData/Python layers that read '
                f'caffelite.parallel.current()')


class DataParallel:
    """Ties a solver (built while ``context`` was current, see ``launch.train_solver``) to
    the other workers, attaching itself as the solver's sync (``solver.attach_sync``, Caffe's
    P2PSync / NCCL as a ``Solver::Callback``): broadcasts rank 0's weights now, reduces the
    gradients every iteration (``on_start``, ``on_gradients_ready``), makes the workers agree
    on signals (``requested_action``: rank 0's requests count; only rank 0 snapshots), and
    restores a snapshot on rank 0 alone and broadcasts it (``restore``). The caller keeps
    driving the solver: ``solver.set_action_function(f)``, ``solver.restore(path)``,
    ``solver.solve()``.

    ``reducer(net)``, if given, makes the gradient reducer (default: GradientAllreduce over
    MPI; launch.py passes NCCL's for an NCCLContext).
    """

    def __init__(self, solver, context, bucket_mb=DEFAULT_BUCKET_MB, overlap=True,
                 reducer=None):
        if (solver.rank, solver.world_size) != (context.rank, context.size):
            raise CaffeliteError(f'the solver was built as rank {solver.rank} of '
                                 f'{solver.world_size}, the MPI context is rank '
                                 f'{context.rank} of {context.size}')
        self.solver, self.context, self.comm = solver, context, context.comm
        self.MPI = context.MPI
        check_data_layers(solver.net)
        self._check_same_net()
        self.reducer = reducer(solver.net) if reducer else GradientAllreduce(
            solver.net, self.comm, int(bucket_mb * 2 ** 20), overlap)
        broadcast_blobs(self.comm, solver.net.learnable_params, 'xdata')
        self._agreed = signals.NONE
        self._flag = np.zeros(1, np.int32)
        solver.attach_sync(self)
        self._log_workers()

    # set-up checks and logging
    def _check_same_net(self):
        """Every rank must have built the same learnable parameters (same shapes, order)."""
        params = self.solver.net.learnable_params
        shapes = ';'.join(','.join(map(str, p.shape)) for p in params)
        mine = np.array([len(params), sum(p.count for p in params),
                         zlib.crc32(shapes.encode())], np.int64)
        every = np.empty((self.comm.size, 3), np.int64)
        self.comm.Allgather(mine, every)
        differ = [r for r in range(self.comm.size) if not np.array_equal(every[r], every[0])]
        if differ:
            raise CaffeliteError(
                f'rank(s) {", ".join(map(str, differ))} built a train net whose parameters '
                f'differ from rank 0\'s ({every[differ[0]][0]} blobs / {every[differ[0]][1]} '
                f'values against {every[0][0]} / {every[0][1]}): every worker must run the '
                f'same net')

    def _log_workers(self):
        pid = np.array([os.getpid()], np.int64)
        pids = np.empty(self.comm.size, np.int64)
        self.comm.Gather(pid, pids, root=0)
        host = socket.gethostname()
        if self.context.is_root:
            sizes = ', '.join(f'{b.buffer.nbytes / 2 ** 20:.2f}'
                              for b in self.reducer.buckets)
            logger.info('Data-parallel training over MPI: %d workers (this is rank 0 on %s); '
                        'pids: %s', self.comm.size, host,
                        ', '.join(f'rank {r} = {p}' for r, p in enumerate(pids)))
            logger.info('Gradient buckets (MB, in reduction order): %s; overlap with backward: '
                        '%s', sizes, 'on' if self.reducer.overlap else 'off')

    # the solver's sync protocol (see Solver.attach_sync)
    def on_start(self):
        self.reducer.arm(self.solver.param.iter_size)

    def on_gradients_ready(self):
        """Reduce the gradients, then agree on rank 0's action (its action function is
        polled here, once per iteration)."""
        self.reducer.finish()
        if self.context.is_root:
            self._flag[0] = _ACTION_CODES.get(self.solver.poll_action_function(), 0)
        self.comm.Bcast(self._flag, root=0)
        self._agreed = _ACTIONS[int(self._flag[0])]

    def requested_action(self):
        """The action every worker takes: the one agreed at the last gradient reduction
        (returned once). The solver asks after each update (and, on rank 0, between test
        batches: there a request waits for the next update, so that all ranks leave the
        loop together); only rank 0 snapshots on request."""
        action, self._agreed = self._agreed, signals.NONE
        if action == signals.SNAPSHOT and not self.context.is_root:
            return signals.NONE
        return action

    def restore(self, state_file):
        """Rank 0 reads ``state_file`` (a .solverstate[.h5]; ``solver.load_state``); its
        weights, solver history, iteration and lr step are then broadcast to every rank."""
        solver = self.solver
        if self.context.is_root:
            solver.load_state(state_file)
        broadcast_blobs(self.comm, solver.net.learnable_params, 'xdata')
        broadcast_blobs(self.comm, solver.history, 'xdata')
        counters = np.array([solver.iter, solver.current_step], np.int64)
        self.comm.Bcast(counters, root=0)
        solver.iter, solver.current_step = int(counters[0]), int(counters[1])

    def max_weight_difference(self):
        """The largest |w - w_rank0| over every parameter and rank (0.0 when the replicas
        agree, as they must); collective."""
        worst = 0.0
        for bucket in make_buckets(self.solver.net.learnable_params,
                                   int(DEFAULT_BUCKET_MB * 2 ** 20)):
            bucket.pack('xdata')
            mine = bucket.buffer.copy()
            self.comm.Bcast(bucket.buffer, root=0)
            worst = max(worst, float(np.abs(mine - bucket.buffer).max(initial=0.0)))
        result = np.array([worst])
        self.comm.Allreduce(self.MPI.IN_PLACE, result, op=self.MPI.MAX)
        return float(result[0])
