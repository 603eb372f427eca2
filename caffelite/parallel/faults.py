"""Faults in data-parallel training: one worker failing must end the whole run, quickly.

The workers meet in a collective (the gradient allreduce) every iteration, so a worker that
raises and simply exits leaves the others blocked there for ever (and an MPI process that
exits normally waits in MPI_Finalize for the others). So every worker runs the training
inside ``abort_on_error(context)``: an exception (a CaffeliteError, a bug, a second Ctrl-C,
``sys.exit(n)`` with n != 0) prints ``rank R failed: <type>: <message>`` on stderr and calls
``MPI_Abort``, which makes the MPI launcher kill every process of the job within a second and
exit non-zero.

A worker killed outright (SIGKILL, the OOM killer, a lost node) cannot say anything itself:
the launcher notices the dead process, kills the others and prints its PID; rank 0's log
line ``... pids: rank 0 = ..., rank 1 = ...`` (written at start, see mpi.DataParallel) maps
that PID to a rank. Snapshots are written to a temporary file renamed into place, so an
abort never leaves a half-written snapshot: the last complete one stays, and resumes with
any worker count.
"""
import contextlib
import sys
import time
import traceback

#: Seconds between printing the failure and MPI_Abort: the launcher forwards a worker's
#: output through pipes, and an abort that comes at once can lose the last lines.
ABORT_DELAY = 0.5


def failure_message(rank, err):
    """``rank R failed: Type: message`` (the one line a user needs)."""
    text = str(err).strip() or '(no message)'
    return f'rank {rank} failed: {type(err).__name__}: {text}'


@contextlib.contextmanager
def abort_on_error(context, stream=None, show_traceback=None):
    """Run the block; on any exception print the failure line (and, for errors that are not
    CaffeliteErrors, the traceback) on ``stream`` (stderr) and abort every worker through
    ``context.abort(1)``. A single worker (no ``abort``) re-raises instead. ``SystemExit``
    with code 0 / None passes through (a normal exit)."""
    from ..errors import CaffeliteError
    try:
        yield context
    except SystemExit as err:
        if err.code in (0, None) or not _can_abort(context):
            raise
        _report(context, RuntimeError(f'exit status {err.code}'), stream, False)
        time.sleep(ABORT_DELAY)
        context.abort(1)
    except BaseException as err:  # noqa: BLE001 - every failure must end the job
        if not _can_abort(context):
            raise
        if show_traceback is None:
            show_traceback = not isinstance(err, (CaffeliteError, KeyboardInterrupt))
        _report(context, err, stream, show_traceback)
        time.sleep(ABORT_DELAY)
        context.abort(1)


def _can_abort(context):
    return context is not None and getattr(context, 'size', 1) > 1 and hasattr(context, 'abort')


def _report(context, err, stream, show_traceback):
    stream = stream or sys.stderr
    if show_traceback:
        traceback.print_exception(type(err), err, err.__traceback__, file=stream)
    print(failure_message(context.rank, err), file=stream, flush=True)


def stop_prefetching(solver):
    """Stop the prefetch threads of the solver's nets (call when training ends). A daemon
    thread that the interpreter freezes at exit inside an h5py call keeps h5py's lock, and
    the exit then deadlocks while clearing modules; under MPI the other ranks then wait in
    MPI_Finalize for ever (seen here about once in 20 runs on a loaded machine)."""
    for net in [solver.net] + list(getattr(solver, 'test_nets', [])):
        for layer in net.layers:
            stop = getattr(layer, 'stop_prefetch', None)
            if stop is not None:
                stop()
