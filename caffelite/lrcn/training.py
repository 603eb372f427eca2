"""Run an LRCN example's solver, and name the weights it leaves.

``train(solver_path)`` solves with Caffe's log on stderr and returns
``<snapshot_prefix>_iter_<final iteration>.caffemodel``; ``final_weights(solver_path)``
names the same file from the solver prototxt alone (``max_iter``), for evaluating a run
trained earlier. ``max_iter`` (both) trains on a reduced budget: the solver's max_iter is
replaced and its step schedule scaled with it, stepsize' = round(stepsize x max_iter' /
max_iter), and the snapshot prefix gets "_<max_iter'>it" so runs of different budgets keep
their own weights.
"""

from ..proto import caffelite_pb2 as pb
from ..prototxt import read_prototxt
from ..solver import get_solver


def solver_param(solver_path, max_iter=None):
    """The solver prototxt as a SolverParameter, on the budget ``max_iter`` if given."""
    sp = read_prototxt(solver_path, pb.SolverParameter())
    if max_iter:
        sp.stepsize = max(1, round(sp.stepsize * max_iter / sp.max_iter))
        sp.max_iter = max_iter
        sp.snapshot_prefix = "%s_%dit" % (sp.snapshot_prefix, max_iter)
    return sp


def train(solver_path, max_iter=None):
    """Run the solver (Caffe-style log on stderr, see solvers.log.ensure_default_log);
    -> path of the final weights."""
    solver = get_solver(solver_param(solver_path, max_iter), solver_path=solver_path)
    solver.solve()
    return "%s_iter_%d.caffemodel" % (solver.snapshot_prefix, solver.iter)


def final_weights(solver_path, max_iter=None):
    """The weights file the solver writes at max_iter."""
    sp = solver_param(solver_path, max_iter)
    return "%s_iter_%d.caffemodel" % (sp.snapshot_prefix, sp.max_iter)
