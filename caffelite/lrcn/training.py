"""Run an LRCN example's solver, and name the weights it leaves.

``train(solver_path)`` solves with Caffe's log on stdout and returns
``<snapshot_prefix>_iter_<final iteration>.caffemodel``; ``final_weights(solver_path)``
names the same file from the solver prototxt alone (``max_iter``), for evaluating a run
trained earlier.
"""

import logging
import sys

from ..proto import caffelite_pb2 as pb
from ..prototxt import read_prototxt
from ..solver import get_solver
from ..solvers.log import glog_handler, logger


def train(solver_path):
    """Run the solver (Caffe-style log on stdout); -> path of the final weights."""
    if not logger.handlers:
        logger.addHandler(glog_handler(sys.stdout))
        logger.setLevel(logging.INFO)
    solver = get_solver(solver_path)
    solver.solve()
    return "%s_iter_%d.caffemodel" % (solver.snapshot_prefix, solver.iter)


def final_weights(solver_path):
    """The weights file the solver writes at max_iter."""
    sp = read_prototxt(solver_path, pb.SolverParameter())
    return "%s_iter_%d.caffemodel" % (sp.snapshot_prefix, sp.max_iter)
