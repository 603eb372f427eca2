"""Data-parallel training: K workers, each with its own share of the data, one model.

Caffe 1.0's multi-GPU semantics on the engines the field trusts: MPI through mpi4py
(``mpi.py``: any number of processes, on one machine or many) and NCCL through CuPy
(``nccl.py``: one process per GPU). After backward the parameter gradients are summed over
the workers and divided by their number, and every worker applies the identical update, so
K workers at batch B train like one worker at batch K x B. Rank 0 alone logs, tests and
writes snapshots; a snapshot resumes with any worker count.

Usage (``pip install -e .[mpi]``)::

    mpiexec -n 4 caffelite train --solver prototxt/lrcn_solver.prototxt

From Python (every rank runs the same script under mpiexec)::

    from caffelite import parallel
    ctx = parallel.mpi.MPIContext()
    solver, dp = parallel.mpi.data_parallel_solver(param, ctx, solver_path=path)
    with parallel.abort_on_error(ctx):
        solver.solve()

Which records a worker sees: ``current()`` (context.py) is this process's worker context;
data layers read it at setup. At TRAIN, record i of a data layer's stream goes to the worker
of rank i mod size (HDF5Data, Data). A Python data layer does the same with::

    ctx = caffelite.parallel.current()      # in setup(); ctx.rank, ctx.size
    # keep record i when i % ctx.size == ctx.rank (at TRAIN; test nets run on rank 0 only)

(``self.solver_rank`` / ``self.solver_count`` are the same numbers on the layers that
declare them with ``WorkerAttribute``.) Test nets run on rank 0 alone, over every record.

Only context.py and faults.py load here: ``parallel.mpi`` (mpi4py) and ``parallel.nccl``
(CuPy) load when first used.
"""
import importlib

from .context import (WorkerAttribute, WorkerContext, current, launched_by_mpi, set_current,
                      shard_rng, using)
from .faults import abort_on_error, failure_message, stop_prefetching

__all__ = ['WorkerAttribute', 'WorkerContext', 'current', 'launched_by_mpi', 'set_current',
           'shard_rng', 'using', 'abort_on_error', 'failure_message', 'stop_prefetching', 'mpi',
           'nccl']


def __getattr__(name):
    if name in ('mpi', 'nccl'):
        return importlib.import_module(f'.{name}', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
