"""Caffe's solvers (pycaffe's ``caffe.SGDSolver(path)``, ``caffe.get_solver(path)``, ...).

The implementation lives in the ``caffelite.solvers`` package: the training loop in
``solvers/base.py``, the update rules in ``solvers/updates.py``, learning-rate policies in
``solvers/lr_policy.py``, snapshots in ``solvers/snapshot.py``.
"""
from .solvers import (SOLVER_REGISTRY, AdaDeltaSolver, AdaGradSolver, AdamSolver,
                      NesterovSolver, RMSPropSolver, SGDSolver, Solver, get_solver,
                      solver_class)

__all__ = ['Solver', 'SGDSolver', 'NesterovSolver', 'AdaGradSolver', 'RMSPropSolver',
           'AdaDeltaSolver', 'AdamSolver', 'get_solver', 'solver_class', 'SOLVER_REGISTRY']
