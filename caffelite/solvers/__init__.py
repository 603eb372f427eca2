"""Caffe's solvers: the training loop (base.Solver), the update rules (updates), learning-rate
policies (lr_policy), solver files and their paths (params), snapshots (snapshot), signals."""
from .base import Solver
from .updates import (SOLVER_REGISTRY, AdaDeltaSolver, AdaGradSolver, AdamSolver,
                      NesterovSolver, RMSPropSolver, SGDSolver, get_solver, solver_class)

__all__ = ['Solver', 'SGDSolver', 'NesterovSolver', 'AdaGradSolver', 'RMSPropSolver',
           'AdaDeltaSolver', 'AdamSolver', 'get_solver', 'solver_class', 'SOLVER_REGISTRY']
