"""Learning-rate policies, Caffe's SGDSolver::GetLearningRate.

With ``it`` the iteration (number of updates done so far):

- fixed:     base_lr
- step:      base_lr * gamma ^ floor(it / stepsize)
- exp:       base_lr * gamma ^ it
- inv:       base_lr * (1 + gamma * it) ^ (-power)
- multistep: base_lr * gamma ^ current_step, where current_step advances by ONE each call
             whose ``it`` has reached stepvalue[current_step] (Caffe's ``if``, not ``while``)
- poly:      base_lr * (1 - it / max_iter) ^ power
- sigmoid:   base_lr / (1 + exp(-gamma * (it - stepsize)))

``current_step`` is solver state (saved in the .solverstate): "step" sets it to
floor(it / stepsize), "multistep" advances it.
"""
import math

from ..errors import CaffeliteError
from .log import logger

POLICIES = ('fixed', 'step', 'exp', 'inv', 'multistep', 'poly', 'sigmoid')


def check_lr_policy(param):
    """Raise CaffeliteError for an unknown policy or one missing what it needs (Caffe's
    CHECKs, done once before training instead of at the first update)."""
    policy = param.lr_policy
    if policy not in POLICIES:
        what = f'unknown lr_policy "{policy}"' if policy else 'lr_policy is not set'
        raise CaffeliteError(f'{what}; known policies: {", ".join(POLICIES)}')
    if policy in ('step', 'sigmoid') and param.stepsize <= 0:
        raise CaffeliteError(f'lr_policy "{policy}" needs stepsize > 0, got {param.stepsize}')
    if policy in ('step', 'exp', 'inv', 'multistep', 'sigmoid') and param.gamma < 0:
        raise CaffeliteError(f'lr_policy "{policy}" needs gamma >= 0, got {param.gamma:g}')
    if policy == 'poly' and param.max_iter <= 0:
        raise CaffeliteError(f'lr_policy "poly" needs max_iter > 0, got {param.max_iter}')


def learning_rate(param, it, current_step):
    """(rate, new current_step) at iteration ``it`` for SolverParameter ``param``."""
    policy = param.lr_policy
    base = param.base_lr
    if policy == 'fixed':
        return base, current_step
    if policy == 'step':
        current_step = it // param.stepsize
        return base * math.pow(param.gamma, current_step), current_step
    if policy == 'exp':
        return base * math.pow(param.gamma, it), current_step
    if policy == 'inv':
        return base * math.pow(1.0 + param.gamma * it, -param.power), current_step
    if policy == 'multistep':
        if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
            current_step += 1
            logger.info('MultiStep Status: Iteration %d, step = %d', it, current_step)
        return base * math.pow(param.gamma, current_step), current_step
    if policy == 'poly':
        remaining = 1.0 - it / param.max_iter
        if remaining < 0 and param.power != int(param.power):
            raise CaffeliteError(f'lr_policy "poly" is undefined past max_iter '
                                 f'({it} > {param.max_iter})')
        return base * math.pow(remaining, param.power), current_step
    if policy == 'sigmoid':
        return base / (1.0 + math.exp(-param.gamma * (it - param.stepsize))), current_step
    check_lr_policy(param)      # raises with the list of known policies
    raise AssertionError(policy)
