"""Starting data-parallel training: the one place that picks the engine (MPI or NCCL).

``mpi.py`` knows nothing of NCCL and ``nccl.py`` builds on ``mpi.py``; this module sits above
both. ``caffelite train`` (and tests/mpi_harness.py) call, in this order::

    context = context_from_environment(gpus)    # None: one worker, no MPI loaded
    quiet_unless_root(context)                  # rank 0 alone logs
    solver = train_solver(param, context, solver_path=path)
    solver.restore(...); solver.set_action_function(...); solver.solve()

and drive the same solver object whether or not the training is parallel: under several
workers ``solver.sync`` is the attached ``mpi.DataParallel`` (see Solver.attach_sync).
"""
import logging
import os
import shutil
import sys

from ..errors import CaffeliteError
from ..solvers import get_solver
from ..worker import set_current
from .mpi import DEFAULT_BUCKET_MB, DataParallel, MPIContext, worker_solver_param

logger = logging.getLogger('caffelite')

# The world size that MPI launchers put in the environment of every process they start:
# MPICH's and Intel MPI's Hydra (and Slurm's srun --mpi=pmi2) set PMI_SIZE, Open MPI's
# mpirun sets OMPI_COMM_WORLD_SIZE.
_SIZE_VARIABLES = ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE')


def launched_by_mpi(environ=None):
    """The worker count an MPI launcher (mpiexec/mpirun/srun) announced in the environment,
    or 0 when this process was not started by one. Reads only the environment (no MPI
    import), so ``caffelite train`` can decide whether to load mpi4py at all."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name, '')
        if value.isdigit():
            return int(value)
    return 0


def context_from_environment(device_ids=()):
    """The worker context of this process when an MPI launcher started it with more than one
    process (``mpiexec -n K``, K > 1): an NCCLContext on GPU ``device_ids[rank]`` when
    several GPU ids are given, else an MPIContext; None otherwise (one worker: no MPI is
    loaded)."""
    if launched_by_mpi() <= 1:
        return None
    if len(device_ids) > 1:
        from .nccl import NCCLContext
        return NCCLContext(device_ids)
    return MPIContext()


def find_mpiexec():
    """The mpiexec beside this Python (where the mpich wheel installs it), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    found = here if os.path.exists(here) else shutil.which('mpiexec')
    if not found:
        raise CaffeliteError('no mpiexec found: pip install "caffelite[mpi]" (it brings '
                             'MPICH\'s mpiexec), or start the workers with your MPI\'s launcher')
    return found


def relaunch(workers, argv=None):
    """Replace this process by ``mpiexec -n workers python -m caffelite ARGV`` (for
    ``caffelite train --gpu 0,1`` typed without mpiexec). Does not return."""
    argv = sys.argv[1:] if argv is None else list(argv)
    mpiexec = find_mpiexec()
    command = [mpiexec, '-n', str(int(workers)), sys.executable, '-m', 'caffelite', *argv]
    logger.info('Starting %d workers: %s', workers, ' '.join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(mpiexec, command)


def quiet_unless_root(context):
    """Rank 0 alone logs: the other ranks' ``caffelite`` logger keeps warnings and errors
    (nothing changes for one worker, ``context`` None)."""
    if context is not None and not context.is_root:
        logger.setLevel(logging.WARNING)


def gradient_reducer(context, bucket_mb=DEFAULT_BUCKET_MB, overlap=True):
    """``reducer(net)`` for DataParallel: NCCL's for an NCCLContext, else None (MPI's)."""
    if context.kind != 'nccl':
        return None
    from .nccl import NCCLGradientAllreduce

    def reducer(net):
        return NCCLGradientAllreduce(net, context, int(bucket_mb * 2 ** 20), overlap)
    return reducer


def train_solver(param, context, solver_path=None, bucket_mb=DEFAULT_BUCKET_MB, overlap=True):
    """The solver that trains SolverParameter ``param``: a plain one for one worker
    (``context`` None), else worker ``context.rank``'s, with a DataParallel attached
    (``solver.sync``). The context is installed as current (process-wide, for the rest of
    the run) before the nets are built, so the data layers deal the records out; ranks
    other than 0 log warnings only."""
    if context is None:
        return get_solver(param, solver_path=solver_path)
    set_current(context)
    quiet_unless_root(context)
    solver = get_solver(worker_solver_param(param, context.rank), rank=context.rank,
                        world_size=context.size, solver_path=solver_path)
    DataParallel(solver, context, bucket_mb=bucket_mb, overlap=overlap,
                 reducer=gradient_reducer(context, bucket_mb, overlap))
    return solver
