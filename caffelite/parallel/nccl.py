"""NCCL through CuPy (``cupy.cuda.nccl``): data-parallel training with one process per GPU.

NOT RUN HERE: the development machines and CI have no GPU, so this path has never executed;
it is kept small, and mirrors mpi.py, whose semantics are tested: same buckets (issued as
backward passes their layers), same sum-then-scale-by-1/size, same weight broadcast from
rank 0. MPI still starts the processes and carries the small things (the NCCL unique id,
the weight broadcast at start, the per-iteration signal flag, MPI_Abort on a failure); only
the gradients travel over NCCL, on device buffers, on a side stream that waits for the
compute stream (an event) before each bucket, so the reduction overlaps the rest of
backward on the GPU without any polling.

    mpiexec -n 2 caffelite train --solver S.prototxt --gpu 0,1     # rank r uses GPU ids[r]
    caffelite train --solver S.prototxt --gpu 0,1       # the same: relaunches under mpiexec

``launch.context_from_environment(device_ids)`` makes the NCCLContext when several ids are
given, and ``launch.train_solver`` then uses NCCLGradientAllreduce. This module builds on
mpi.py, never the reverse.
"""
import numpy as np

from .. import backend
from ..errors import CaffeliteError
from .mpi import DEFAULT_BUCKET_MB, GradientAllreduce, MPIContext


def nccl_modules():
    """(cupy, cupy.cuda.nccl), or a CaffeliteError saying what is missing."""
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as err:
        raise CaffeliteError(f'training on several GPUs needs CuPy with NCCL: pip install '
                             f'"caffelite[gpu,mpi]" ({err})') from None
    if not getattr(nccl, 'available', True):
        raise CaffeliteError('this CuPy was built without NCCL; install a cupy-cudaXXx wheel')
    return cupy, nccl


def _nccl_type(nccl, dtype):
    types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
             np.dtype(np.float16): nccl.NCCL_FLOAT16}
    try:
        return types[np.dtype(dtype)]
    except KeyError:
        raise CaffeliteError(f'NCCL cannot reduce parameters of dtype {dtype}') from None


class NCCLContext(MPIContext):
    """An MPI worker that owns GPU ``device_ids[rank]`` and an NCCL communicator over all
    ranks (the unique id made on rank 0 travels over MPI)."""
    kind = 'nccl'

    def __init__(self, device_ids, comm=None):
        super().__init__(comm)
        if len(device_ids) != self.size:
            raise CaffeliteError(f'{self.size} MPI processes for {len(device_ids)} GPUs '
                                 f'({",".join(map(str, device_ids))}): start one process per '
                                 f'GPU (mpiexec -n {len(device_ids)})')
        self.cupy, self.nccl = nccl_modules()
        self.device = int(device_ids[self.rank])
        backend.set_device(self.device)
        backend.set_mode_gpu()
        uid = np.zeros(128, np.uint8)
        if self.rank == 0:
            made = self.nccl.get_unique_id()
            uid[:] = np.frombuffer(bytes(b & 0xFF for b in made) if isinstance(made, tuple)
                                   else bytes(made), np.uint8)
        self.comm.Bcast(uid, root=0)
        # CuPy >= 14 takes the id as bytes, older CuPy as a tuple of (signed char) ints.
        major = int(self.cupy.__version__.split('.')[0])
        uid_arg = uid.tobytes() if major >= 14 else tuple(int(v) for v in uid.view(np.int8))
        self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid_arg, self.rank)

    def abort(self, code=1):
        try:
            self.nccl_comm.abort()
        finally:
            super().abort(code)


class DeviceBucket:
    """Like mpi.Bucket, on the GPU: the blobs' ``field`` packed into one device buffer."""

    def __init__(self, bucket, cupy):
        self.blobs, self.slots, self.ready_layer = bucket.blobs, bucket.slots, bucket.ready_layer
        self.buffer = cupy.empty(bucket.buffer.size, bucket.buffer.dtype)
        self.cupy = cupy
        self.request = None

    def pack(self, field):
        for blob, start, end in self.slots:
            self.buffer[start:end] = self.cupy.asarray(getattr(blob, field)).ravel()

    def unpack(self, field, scale):
        for blob, start, end in self.slots:
            setattr(blob, field, (self.buffer[start:end] * self.buffer.dtype.type(scale))
                    .reshape(blob.shape))


class NCCLGradientAllreduce(GradientAllreduce):
    """GradientAllreduce with device buckets reduced by ncclAllReduce on a side stream: the
    same issuing as backward passes the layers and the same sum-then-scale, with the MPI
    request calls replaced (no polling: the stream runs by itself)."""

    def __init__(self, net, context, bucket_bytes=int(DEFAULT_BUCKET_MB * 2 ** 20),
                 overlap=True):
        super().__init__(net, context.comm, bucket_bytes, overlap)
        self.context, cupy = context, context.cupy
        self.buckets = [DeviceBucket(b, cupy) for b in self.buckets]
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def _issue(self, k):
        cupy, nccl = self.context.cupy, self.context.nccl
        bucket = self.buckets[k]
        bucket.pack('xdiff')                             # on the compute stream
        ready = cupy.cuda.Event()
        ready.record()
        self.stream.wait_event(ready)
        self.context.nccl_comm.allReduce(
            bucket.buffer.data.ptr, bucket.buffer.data.ptr, bucket.buffer.size,
            _nccl_type(nccl, bucket.buffer.dtype), nccl.NCCL_SUM, self.stream.ptr)

    def _progress(self):
        pass

    def _wait(self):
        self.stream.synchronize()
        self.context.nccl_comm.check_async_error()


__all__ = ['NCCLContext', 'NCCLGradientAllreduce', 'nccl_modules']
