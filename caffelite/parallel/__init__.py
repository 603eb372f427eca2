"""Data-parallel training: K workers, each with its own share of the data, one model.

Caffe 1.0's multi-GPU semantics on the engines the field trusts: MPI through mpi4py
(``mpi.py``: any number of processes, on one machine or many) and NCCL through CuPy
(``nccl.py``, built on mpi.py: one process per GPU); ``launch.py`` picks between them. After
backward the parameter gradients are summed over the workers and divided by their number,
and every worker applies the identical update, so K workers at batch B train like one worker
at batch K x B. Rank 0 alone logs, tests and writes snapshots; a snapshot resumes with any
worker count.

Usage (``pip install -e .[mpi]``)::

    mpiexec -n 4 caffelite train --solver prototxt/lrcn_solver.prototxt

From Python (every rank runs the same script under mpiexec)::

    from caffelite import parallel
    ctx = parallel.context_from_environment()       # None when started alone
    solver = parallel.train_solver(param, ctx, solver_path=path)   # solver.sync: DataParallel
    with parallel.abort_on_error(ctx):
        solver.solve()

Which records a worker sees: ``current()`` (``caffelite.worker``, re-exported here) is this
process's worker context; data layers read it at setup. At TRAIN, record i of a data layer's
stream goes to the worker of rank i mod size (HDF5Data, Data). A Python data layer does the
same with::

    ctx = caffelite.parallel.current()      # in setup(); ctx.rank, ctx.size
    # keep record i when i % ctx.size == ctx.rank (at TRAIN; test nets run on rank 0 only)

(``self.solver_rank`` / ``self.solver_count`` are the same numbers on the layers that
declare them with ``WorkerAttribute``.) Test nets run on rank 0 alone, over every record.

Importing this package loads no MPI: mpi4py loads when an MPIContext is made, CuPy's NCCL
when an NCCLContext is.
"""
from ..worker import WorkerAttribute, WorkerContext, current, set_current, shard_rng, using
from . import mpi
from .faults import abort_on_error, failure_message, stop_prefetching
from .launch import (context_from_environment, launched_by_mpi, quiet_unless_root, relaunch,
                     train_solver)

__all__ = ['WorkerAttribute', 'WorkerContext', 'current', 'set_current', 'shard_rng', 'using',
           'abort_on_error', 'failure_message', 'stop_prefetching', 'context_from_environment',
           'launched_by_mpi', 'quiet_unless_root', 'relaunch', 'train_solver', 'mpi']
