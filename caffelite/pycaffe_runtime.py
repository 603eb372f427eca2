"""pycaffe's module-level runtime functions (Caffe 1.0's _caffe.cpp): logging, Timer, the
solver count and rank of data-parallel training, and the NCCL switches.

- ``init_log(level=0, stderr=True)``: caffelite's log lines (glog's format) go to stderr from
  then on, at glog severity ``level`` and above (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL); there
  are no log files. ``log(message)`` writes one INFO line. Without init_log a solver's log
  goes to stderr too, as pycaffe's does (solvers.log.ensure_default_log), unless the
  application set up logging itself.
- ``Timer``: ``start()``, ``stop()``, ``ms`` (reading ``ms`` stops a running timer, as Caffe's
  Timer::MilliSeconds does).
- ``solver_count()`` / ``set_solver_count(n)``, ``solver_rank()`` / ``set_solver_rank(r)``:
  the worker context data layers read at setup (caffelite.worker), so a net built after
  ``set_solver_count(2); set_solver_rank(1)`` reads rank 1's share of its Data / HDF5Data
  records, as in Caffe. ``set_multiprocess(flag)`` is accepted: Caffe needs it only to allow
  Python layers under several solvers, which caffelite always allows.
- ``has_nccl()`` is False and ``NCCL`` refuses to be built: caffelite trains on several GPUs
  or processes from the command line (``caffelite train --gpu 0,1``, ``mpiexec``).
"""
import time

from . import worker
from .errors import CaffeliteError
from .solvers.log import GLOG_LEVELS, GlogHandler, logger


def init_log(level=0, stderr=True):
    """Log caffelite's lines at glog severity ``level`` and above to stderr (once)."""
    if not 0 <= int(level) < len(GLOG_LEVELS):
        raise CaffeliteError(f'init_log: level {level} is not a glog severity (0-3)')
    logger.setLevel(GLOG_LEVELS[int(level)])
    if stderr and not any(isinstance(h, GlogHandler) for h in logger.handlers):
        logger.addHandler(GlogHandler())


def log(message):
    """One INFO line in the caffelite log (pycaffe's caffe.log)."""
    logger.info('%s', message)


class Timer:
    """Wall-clock timer in milliseconds (Caffe's CPU Timer)."""

    def __init__(self):
        self._start = None
        self._elapsed = None

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        if self._start is not None:
            self._elapsed = (time.perf_counter() - self._start) * 1e3
            self._start = None

    @property
    def ms(self):
        if self._start is not None:
            self.stop()
        return 0.0 if self._elapsed is None else self._elapsed


def solver_count():
    return worker.current().size


def solver_rank():
    return worker.current().rank


def set_solver_count(count):
    """The number of data-parallel solvers; the rank stays (it must be below ``count``)."""
    current = worker.current()
    if int(count) < 1:
        raise CaffeliteError(f'set_solver_count: {count} solvers; need at least 1')
    worker.set_current(worker.WorkerContext(min(current.rank, int(count) - 1), int(count),
                                            current.shared_seed))


def set_solver_rank(rank):
    """This solver's rank, in [0, solver_count()) (call set_solver_count first)."""
    current = worker.current()
    if not 0 <= int(rank) < current.size:
        raise CaffeliteError(f'set_solver_rank: rank {rank} is not below the solver count '
                             f'{current.size} (call set_solver_count first)')
    worker.set_current(worker.WorkerContext(int(rank), current.size, current.shared_seed))


def set_multiprocess(flag):
    """Accepted for pycaffe scripts; see the module docstring."""
    del flag


def has_nccl():
    """pycaffe's build flag: False (see the module docstring)."""
    return False


class NCCL:
    """pycaffe's NCCL: not in caffelite (has_nccl() is False)."""

    MESSAGE = ('caffelite has no pycaffe NCCL (caffe.has_nccl() is False); train on several '
               'GPUs with `caffelite train --solver S --gpu 0,1` or on several processes with '
               '`mpiexec -n K caffelite train --solver S`')

    def __init__(self, *args, **kwargs):
        raise CaffeliteError(self.MESSAGE)

    @staticmethod
    def new_uid():
        raise CaffeliteError(NCCL.MESSAGE)
