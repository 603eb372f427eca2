"""The solver types and their update rules (Caffe's ComputeUpdateValue), the registry and
``get_solver``.

Notation, for learnable parameter i: g its diff (after normalize/regularize/clip),
lr = rate * lr_mult_i, mu = momentum, H the history blob(s). Each rule leaves in g the step that
update_params subtracts from the weights.

- SGD:      H <- mu H + lr g;                      g <- H
- Nesterov: H' <- mu H + lr g;                     g <- (1 + mu) H' - mu H;  H <- H'
- AdaGrad:  H <- H + g^2;                          g <- lr g / (sqrt(H) + delta)
- RMSProp:  H <- rms_decay H + (1 - rms_decay) g^2; g <- lr g / (sqrt(H) + delta)
- AdaDelta: history = [H_g (one per param)] + [H_u (one per param)];
            H_g <- mu H_g + (1 - mu) g^2;  g <- g sqrt((H_u + delta) / (H_g + delta));
            H_u <- mu H_u + (1 - mu) g^2;  g <- lr g
- Adam:     history = [m (one per param)] + [v (one per param)], beta1 = momentum,
            beta2 = momentum2, t = iter + 1;
            m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2;
            g <- lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + delta)
"""
import os

from .. import backend
from ..blob import Blob
from ..errors import CaffeliteError
from ..layers.im2col import workspace
from .base import Solver
from ..upgrade import solver_type
from .params import read_solver_param

SOLVER_REGISTRY = {}


def register_solver(cls):
    SOLVER_REGISTRY[cls.type] = cls
    return cls


def _arrays(solver, i, *history_indices):
    """Parameter i's diff, its array module, and the history arrays at the given indices."""
    diff = solver.net.learnable_params[i].xdiff
    return (diff, backend.get_array_module(diff),
            *[solver.history[k].xdata for k in history_indices])


@register_solver
class SGDSolver(Solver):
    """Stochastic gradient descent with momentum."""
    type = 'SGD'

    def compute_update_value(self, i, rate):
        g, xp, h = _arrays(self, i, i)
        g *= self.local_rate(i, rate)     # in place: g is overwritten with the step anyway
        h *= self.param.momentum
        h += g
        g[...] = h


@register_solver
class NesterovSolver(SGDSolver):
    """Nesterov's accelerated gradient (Sutskever et al.'s momentum form, as Caffe)."""
    type = 'Nesterov'

    def compute_update_value(self, i, rate):
        g, xp, h = _arrays(self, i, i)
        momentum = self.param.momentum
        previous = h.copy()
        h *= momentum
        h += self.local_rate(i, rate) * g
        g[...] = (1 + momentum) * h - momentum * previous


@register_solver
class AdaGradSolver(SGDSolver):
    type = 'AdaGrad'

    def check_param(self):
        super().check_param()
        if self.param.momentum != 0:
            raise CaffeliteError('momentum cannot be used with AdaGrad (set momentum: 0)')

    def compute_update_value(self, i, rate):
        g, xp, h = _arrays(self, i, i)
        h += g * g
        g[...] = self.local_rate(i, rate) * (g / (xp.sqrt(h) + self.param.delta))


@register_solver
class RMSPropSolver(SGDSolver):
    type = 'RMSProp'

    def check_param(self):
        super().check_param()
        if self.param.momentum != 0:
            raise CaffeliteError('momentum cannot be used with RMSProp (set momentum: 0)')
        if not 0 <= self.param.rms_decay < 1:
            raise CaffeliteError(f'rms_decay must lie in [0, 1), got {self.param.rms_decay:g}')

    def compute_update_value(self, i, rate):
        g, xp, h = _arrays(self, i, i)
        decay = self.param.rms_decay
        h *= decay
        h += (1 - decay) * (g * g)
        g[...] = self.local_rate(i, rate) * (g / (xp.sqrt(h) + self.param.delta))


class _TwoHistorySolver(SGDSolver):
    """History = one blob per parameter, then a second one per parameter (Caffe appends the
    second set after SGDSolver's, so a .solverstate lists all first ones, then all second)."""

    def pre_solve(self):
        super().pre_solve()
        self.history += [Blob(p.shape, p.dtype) for p in self.net.learnable_params]


@register_solver
class AdaDeltaSolver(_TwoHistorySolver):
    type = 'AdaDelta'

    def compute_update_value(self, i, rate):
        n = len(self.net.learnable_params)
        g, xp, h_grad, h_update = _arrays(self, i, i, n + i)
        momentum, delta = self.param.momentum, self.param.delta
        h_grad *= momentum
        h_grad += (1 - momentum) * (g * g)
        g *= xp.sqrt((h_update + delta) / (h_grad + delta))
        h_update *= momentum
        h_update += (1 - momentum) * (g * g)
        g *= self.local_rate(i, rate)


@register_solver
class AdamSolver(_TwoHistorySolver):
    type = 'Adam'

    def compute_update_value(self, i, rate):
        n = len(self.net.learnable_params)
        g, xp, m, v = _arrays(self, i, i, n + i)
        beta1, beta2 = self.param.momentum, self.param.momentum2
        t = self.iter + 1
        correction = (1 - beta2 ** t) ** 0.5 / (1 - beta1 ** t)
        scratch = workspace(xp, g.shape, g.dtype, 'solver.scratch')   # no temporaries
        xp.multiply(g, 1 - beta1, out=scratch)
        m *= beta1
        m += scratch
        xp.multiply(g, g, out=scratch)
        scratch *= 1 - beta2
        v *= beta2
        v += scratch
        xp.sqrt(v, out=scratch)
        scratch += self.param.delta
        xp.divide(m, scratch, out=g)
        g *= self.local_rate(i, rate) * correction


def solver_class(type_name):
    try:
        return SOLVER_REGISTRY[type_name]
    except KeyError:
        raise CaffeliteError(f'unknown solver type "{type_name}"; known types: '
                             f'{", ".join(SOLVER_REGISTRY)}') from None


def get_solver(param, rank=0, world_size=1, solver_path=None):
    """The solver its SolverParameter's ``type`` names (pycaffe's caffe.get_solver); ``param``
    is a solver prototxt path or a SolverParameter (read from ``solver_path``, if given)."""
    if isinstance(param, (str, os.PathLike)):
        solver_path = os.fspath(param)
        param = read_solver_param(solver_path)       # read and upgraded once, here
    return solver_class(solver_type(param))(param, rank=rank, world_size=world_size,
                                            solver_path=solver_path)
