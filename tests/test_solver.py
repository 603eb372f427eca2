"""Solvers against Caffe's rules: each update rule against a step computed here with NumPy from
Caffe's formulas, lr policies, lr_mult/decay_mult, L1/L2, clip_gradients, iter_size,
average_loss, exact resume (binary proto and HDF5), atomic snapshots, log lines, signals,
non-finite losses, paths."""
import logging
import math
import os
import re
import signal
from datetime import datetime

import h5py
import numpy as np
import pytest

from caffelite import io
from caffelite.errors import CaffeliteError
from caffelite.prototxt import parse_prototxt_text
from caffelite.proto import caffelite_pb2 as pb
from caffelite.solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver,
                              RMSPropSolver, SGDSolver, get_solver)
from caffelite.solvers import signals
from caffelite.solvers.log import GlogFormatter
from caffelite.solvers.lr_policy import learning_rate

# x (2 x 3) -> InnerProduct (2 outputs; weight lr_mult 1 decay_mult 1, bias lr_mult 2
# decay_mult 0) -> EuclideanLoss against y.
INPUT_NET = '''
name: "tiny"
layer { name: "data" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
'''

# Random data every forward (DummyData gaussian) and a Dropout: the random stream matters.
RANDOM_NET = '''
name: "random"
layer { name: "data" type: "DummyData" top: "x" top: "y"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                           data_filler { type: "gaussian" std: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "drop" type: "Dropout" bottom: "h" top: "h" include { phase: TRAIN } }
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "p"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
'''


ENUM_FIELDS = {'snapshot_format', 'solver_type', 'solver_mode', 'phase'}


def _field_text(name, value):
    if isinstance(value, (list, tuple)):
        return '\n'.join(_field_text(name, v) for v in value)
    if isinstance(value, bool):
        return f'{name}: {str(value).lower()}'
    if isinstance(value, str):
        if value.startswith('{'):
            return f'{name} {value}'
        return f'{name}: {value}' if name in ENUM_FIELDS else f'{name}: "{value}"'
    return f'{name}: {value!r}'


def solver_param(net=INPUT_NET, **fields):
    """A SolverParameter with ``net`` as net_param; list values repeat a field."""
    text = f'net_param {{ {net} }}\n' + '\n'.join(_field_text(k, v) for k, v in fields.items())
    return parse_prototxt_text(text, pb.SolverParameter())


def make(net=INPUT_NET, **fields):
    fields.setdefault('base_lr', 0.1)
    fields.setdefault('lr_policy', 'fixed')
    return get_solver(solver_param(net, **fields))


def params_of(solver):
    return [p.data.copy() for p in solver.net.learnable_params]


# -- update rules against hand-computed steps -----------------------------------------------------

def reference_steps(kind, w0, grads, lr, lr_mult, decay_mult, hp):
    """Caffe's rules written out in float64: normalize (none), L2 regularize, update, W -= u."""
    w = [np.array(x, np.float64) for x in w0]
    h1 = [np.zeros_like(x) for x in w]
    h2 = [np.zeros_like(x) for x in w]
    mu, delta = hp.get('momentum', 0.0), hp.get('delta', 1e-8)
    for t, step_grads in enumerate(grads):
        for i, g in enumerate(step_grads):
            g = g + hp.get('weight_decay', 0.0) * decay_mult[i] * w[i]
            rate = lr * lr_mult[i]
            if kind == 'SGD':
                h1[i] = mu * h1[i] + rate * g
                u = h1[i]
            elif kind == 'Nesterov':
                prev = h1[i]
                h1[i] = mu * h1[i] + rate * g
                u = (1 + mu) * h1[i] - mu * prev
            elif kind == 'AdaGrad':
                h1[i] = h1[i] + g ** 2
                u = rate * g / (np.sqrt(h1[i]) + delta)
            elif kind == 'RMSProp':
                d = hp['rms_decay']
                h1[i] = d * h1[i] + (1 - d) * g ** 2
                u = rate * g / (np.sqrt(h1[i]) + delta)
            elif kind == 'AdaDelta':
                h1[i] = mu * h1[i] + (1 - mu) * g ** 2
                step = g * np.sqrt((h2[i] + delta) / (h1[i] + delta))
                h2[i] = mu * h2[i] + (1 - mu) * step ** 2
                u = rate * step
            elif kind == 'Adam':
                b1, b2 = hp['momentum'], hp['momentum2']
                h1[i] = b1 * h1[i] + (1 - b1) * g
                h2[i] = b2 * h2[i] + (1 - b2) * g ** 2
                k = t + 1
                u = rate * math.sqrt(1 - b2 ** k) / (1 - b1 ** k) * h1[i] / (np.sqrt(h2[i]) + delta)
            w[i] = w[i] - u
    return w, h1, h2


SOLVER_SETTINGS = {
    'SGD': dict(momentum=0.9, weight_decay=0.01),
    'Nesterov': dict(momentum=0.9, weight_decay=0.01),
    'AdaGrad': dict(weight_decay=0.01, delta=1e-6),
    'RMSProp': dict(weight_decay=0.01, rms_decay=0.9, delta=1e-6),
    'AdaDelta': dict(momentum=0.95, weight_decay=0.01, delta=1e-6),
    'Adam': dict(momentum=0.9, momentum2=0.999, weight_decay=0.01, delta=1e-8),
}
CLASSES = {'SGD': SGDSolver, 'Nesterov': NesterovSolver, 'AdaGrad': AdaGradSolver,
           'RMSProp': RMSPropSolver, 'AdaDelta': AdaDeltaSolver, 'Adam': AdamSolver}


@pytest.mark.parametrize('kind', list(SOLVER_SETTINGS))
def test_update_rule_matches_hand_computed_steps(kind):
    hp = SOLVER_SETTINGS[kind]
    solver = make(type=kind, base_lr=0.05, **hp)
    assert type(solver) is CLASSES[kind]
    rng = np.random.default_rng(7)
    params = solver.net.learnable_params
    w0 = [rng.standard_normal(p.shape) for p in params]
    for p, w in zip(params, w0):
        p.data[...] = w
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(3)]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.diff[...] = g
        solver.apply_update()
        solver.iter += 1
    w_ref, h1, h2 = reference_steps(kind, [p.astype(np.float32) for p in w0],
                                    [[g.astype(np.float32) for g in s] for s in grads],
                                    0.05, [1, 2], [1, 0], hp)
    for p, expected in zip(params, w_ref):
        np.testing.assert_allclose(p.data, expected, rtol=2e-5, atol=2e-6)
    n = len(params)
    two = kind in ('AdaDelta', 'Adam')
    assert len(solver.history) == (2 * n if two else n)
    for i in range(n):
        np.testing.assert_allclose(solver.history[i].data, h1[i], rtol=2e-5, atol=2e-6)
        if two:
            np.testing.assert_allclose(solver.history[n + i].data, h2[i], rtol=2e-5, atol=2e-6)


def test_sgd_step_through_forward_backward_matches_euclidean_gradient():
    """step() = clear diffs, forward/backward, regularize, momentum update; twice (so the
    second step must not see the first step's diffs)."""
    solver = make(base_lr=0.1, momentum=0.9, weight_decay=0.01)
    net = solver.net
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    net.blobs['x'].data[...] = x
    net.blobs['y'].data[...] = y
    w, b = [p.data.astype(np.float64) for p in net.learnable_params]
    v_w, v_b = np.zeros_like(w), np.zeros_like(b)
    for _ in range(2):
        residual = x @ w.T + b - y                    # loss = sum(residual^2) / (2 N)
        g_w = residual.T @ x / 2 + 0.01 * w           # + weight decay (decay_mult 1)
        g_b = residual.sum(0) / 2                     # bias: decay_mult 0
        v_w = 0.9 * v_w + 0.1 * g_w
        v_b = 0.9 * v_b + 0.2 * g_b                   # bias lr_mult 2
        w, b = w - v_w, b - v_b
        solver.step(1)
    np.testing.assert_allclose(net.learnable_params[0].data, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.learnable_params[1].data, b, rtol=1e-5, atol=1e-6)
    assert solver.iter == 2


def test_lr_mult_zero_freezes_a_parameter():
    net = INPUT_NET.replace('param { lr_mult: 2 decay_mult: 0 }', 'param { lr_mult: 0 }')
    solver = make(net, momentum=0.9, weight_decay=0.1)
    bias = solver.net.learnable_params[1]
    before = bias.data.copy()
    for p in solver.net.learnable_params:
        p.diff[...] = 1.0
    solver.apply_update()
    np.testing.assert_array_equal(bias.data, before)
    assert not np.allclose(solver.net.learnable_params[0].data, 0)


def test_solver_specific_checks():
    with pytest.raises(CaffeliteError, match='momentum cannot be used with AdaGrad'):
        make(type='AdaGrad', momentum=0.9)
    with pytest.raises(CaffeliteError, match='momentum cannot be used with RMSProp'):
        make(type='RMSProp', momentum=0.9)
    with pytest.raises(CaffeliteError, match='rms_decay'):
        make(type='RMSProp', rms_decay=1.5)
    with pytest.raises(CaffeliteError, match='unknown solver type "Lbfgs"'):
        make(type='Lbfgs')
    with pytest.raises(CaffeliteError, match='regularization_type'):
        make(regularization_type='L3')


def test_legacy_solver_type_enum():
    solver = get_solver(solver_param(base_lr=0.1, lr_policy='fixed', solver_type='ADAM'))
    assert type(solver) is AdamSolver
    with pytest.raises(CaffeliteError, match='not both'):
        get_solver(solver_param(base_lr=0.1, lr_policy='fixed', solver_type='ADAM',
                                type='Adam'))


# -- learning-rate policies -----------------------------------------------------------------------

@pytest.mark.parametrize('policy, fields, formula', [
    ('fixed', {}, lambda p, it: p.base_lr),
    ('step', dict(gamma=0.5, stepsize=30), lambda p, it: p.base_lr * p.gamma ** (it // 30)),
    ('exp', dict(gamma=0.99), lambda p, it: p.base_lr * p.gamma ** it),
    ('inv', dict(gamma=1e-4, power=0.75),
     lambda p, it: p.base_lr * (1 + p.gamma * it) ** -p.power),
    ('poly', dict(power=2.0, max_iter=1000), lambda p, it: p.base_lr * (1 - it / 1000) ** 2),
    ('sigmoid', dict(gamma=0.01, stepsize=300),
     lambda p, it: p.base_lr / (1 + math.exp(-p.gamma * (it - 300)))),
])
def test_lr_policies(policy, fields, formula):
    # The formulas read the (float32) proto values, as Caffe does.
    param = pb.SolverParameter(base_lr=0.1, lr_policy=policy, **fields)
    for it in (0, 1, 29, 30, 31, 299, 300, 999):
        rate, _ = learning_rate(param, it, 0)
        assert rate == pytest.approx(formula(param, it), rel=1e-12), (policy, it)
    assert learning_rate(param, 0, 0)[0] == pytest.approx(
        {'sigmoid': 0.1 / (1 + math.exp(3))}.get(policy, 0.1), rel=1e-6)


def test_multistep_advances_one_stepvalue_per_iteration():
    param = pb.SolverParameter(base_lr=1.0, lr_policy='multistep', gamma=0.1,
                               stepvalue=[3, 5, 9])
    step, rates = 0, []
    for it in range(12):
        rate, step = learning_rate(param, it, step)
        rates.append(rate)
    expected = [param.gamma ** sum(it >= s for s in (3, 5, 9)) for it in range(12)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert step == 3
    # Caffe's "if", not "while": a jump past two stepvalues advances one step per call.
    rate, step = learning_rate(param, 10, 0)
    assert step == 1 and rate == pytest.approx(0.1, rel=1e-6)


def test_step_policy_sets_current_step_and_solver_uses_policy():
    solver = make(lr_policy='step', gamma=0.1, stepsize=2, base_lr=1.0)
    rates = []
    for _ in range(5):
        rates.append(solver.get_learning_rate())
        solver.iter += 1
    np.testing.assert_allclose(rates, [1, 1, 0.1, 0.1, 0.01], rtol=1e-6)
    assert solver.current_step == 2


@pytest.mark.parametrize('fields, message', [
    (dict(lr_policy='cosine'), 'unknown lr_policy "cosine"'),
    (dict(lr_policy=''), 'lr_policy is not set'),
    (dict(lr_policy='step'), 'needs stepsize > 0'),
    (dict(lr_policy='poly', power=1.0), 'needs max_iter > 0'),
])
def test_bad_lr_policy_is_rejected_at_construction(fields, message):
    with pytest.raises(CaffeliteError, match=re.escape(message)):
        get_solver(solver_param(base_lr=0.1, **fields))


# -- regularization, clipping, iter_size, average_loss --------------------------------------------

@pytest.mark.parametrize('kind', ['L1', 'L2'])
def test_regularization_l1_uses_sign_l2_uses_weights(kind):
    solver = make(weight_decay=0.5, regularization_type=kind)
    w = solver.net.learnable_params[0]
    values = np.array([[-2.0, 0.0, 3.0], [0.5, -0.25, 1.0]], np.float32)
    w.data[...] = values
    w.diff[...] = 1.0
    solver.regularize(0)
    expected = 1.0 + 0.5 * (np.sign(values) if kind == 'L1' else values)
    np.testing.assert_allclose(w.diff, expected, rtol=1e-6)
    bias = solver.net.learnable_params[1]             # decay_mult 0: untouched
    bias.diff[...] = 1.0
    solver.regularize(1)
    np.testing.assert_array_equal(bias.diff, 1.0)


def test_clip_gradients_scales_by_global_norm_before_iter_size_normalization():
    solver = make(clip_gradients=1.0, iter_size=2, base_lr=1.0)
    w, b = solver.net.learnable_params
    w.data[...] = 0
    b.data[...] = 0
    w.diff[...] = np.full(w.shape, 2.0)               # 6 entries of 2
    b.diff[...] = np.array([3.0, 4.0])
    norm = math.sqrt(6 * 4 + 9 + 16)                  # 7: the raw accumulated diffs
    solver.apply_update()
    # Caffe clips first (on the accumulated diffs), then scales by 1/iter_size.
    np.testing.assert_allclose(w.data, -2.0 / norm / 2, rtol=1e-6)
    np.testing.assert_allclose(b.data, -2 * np.array([3.0, 4.0]) / norm / 2, rtol=1e-6)
    small = make(clip_gradients=100.0, base_lr=1.0)
    w, b = small.net.learnable_params
    before = w.data.copy()
    w.diff[...] = 1.0
    b.diff[...] = 0.0
    small.clip_gradients()
    np.testing.assert_array_equal(w.diff, 1.0)
    small.apply_update()
    np.testing.assert_allclose(w.data, before - 1.0, rtol=1e-6)


def _hdf5_net(tmp_path, batch):
    rng = np.random.default_rng(11)
    path = tmp_path / 'rows.h5'
    if not path.exists():
        with h5py.File(path, 'w') as f:
            f['x'] = rng.standard_normal((8, 3)).astype(np.float32)
            f['y'] = rng.standard_normal((8, 2)).astype(np.float32)
        (tmp_path / 'rows.txt').write_text(f'{path}\n')
    return INPUT_NET.replace(
        'layer { name: "data" type: "Input" top: "x" top: "y"\n'
        '        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }',
        f'layer {{ name: "data" type: "HDF5Data" top: "x" top: "y" '
        f'hdf5_data_param {{ source: "{tmp_path / "rows.txt"}" batch_size: {batch} }} }}')


def test_iter_size_accumulation_equals_the_larger_batch(tmp_path):
    """iter_size 2 at batch 4 == batch 8 for a loss that is a batch mean: same losses, same
    weights (momentum and weight decay included)."""
    results = []
    for batch, iter_size in ((4, 2), (8, 1)):
        solver = make(_hdf5_net(tmp_path, batch), iter_size=iter_size, momentum=0.9,
                      weight_decay=0.01, random_seed=5)
        losses = []
        forward_backward = solver.forward_backward
        solver.forward_backward = lambda: losses.append(forward_backward()) or losses[-1]
        solver.step(3)
        results.append((params_of(solver), losses))
    (w_a, loss_a), (w_b, loss_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    for a, b in zip(w_a, w_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_average_loss_is_the_running_mean_of_the_last_losses():
    solver = make(RANDOM_NET, average_loss=3, random_seed=2)
    losses = []
    forward_backward = solver.forward_backward
    solver.forward_backward = lambda: losses.append(forward_backward()) or losses[-1]
    solver.step(2)
    assert solver.smoothed_loss == pytest.approx(np.mean(losses[:2]), rel=1e-9)
    solver.step(5)                                    # a new step() starts a new window
    assert solver.smoothed_loss == pytest.approx(np.mean(losses[-3:]), rel=1e-9)
    with pytest.raises(CaffeliteError, match='average_loss'):
        make(average_loss=0)


# -- snapshots and exact resume -------------------------------------------------------------------

def _resume_param(tmp_path, kind, fmt):
    return solver_param(
        RANDOM_NET, type=kind, base_lr=0.05, momentum=0.9 if kind != 'AdaGrad' else 0.0,
        weight_decay=0.001, lr_policy='multistep', gamma=0.5, stepvalue=[2, 4],
        max_iter=6, snapshot=3, snapshot_prefix=str(tmp_path / 'snaps' / 'r'),
        snapshot_format=fmt, random_seed=9, test_iter=[1], test_interval=2,
        snapshot_after_train=True, display=0)


@pytest.mark.parametrize('kind, fmt', [('SGD', 'BINARYPROTO'), ('Adam', 'HDF5'),
                                       ('Nesterov', 'HDF5')])
def test_resume_is_bit_exact(tmp_path, kind, fmt):
    param = _resume_param(tmp_path, kind, fmt)
    straight = get_solver(param)
    straight.solve()
    assert straight.iter == 6
    ext = '.solverstate.h5' if fmt == 'HDF5' else '.solverstate'
    model_ext = '.caffemodel.h5' if fmt == 'HDF5' else '.caffemodel'
    state3 = tmp_path / 'snaps' / f'r_iter_3{ext}'
    assert state3.exists() and (tmp_path / 'snaps' / f'r_iter_3{model_ext}').exists()
    assert (tmp_path / 'snaps' / f'r_iter_6{ext}').exists()

    resumed = get_solver(param)
    resumed.restore(str(state3))
    assert resumed.iter == 3 and resumed.current_step == 1
    resumed.solve()
    for a, b in zip(params_of(straight), params_of(resumed)):
        assert np.array_equal(a, b)
    for a, b in zip(straight.history, resumed.history):
        assert np.array_equal(a.data, b.data)
    assert resumed.current_step == straight.current_step == 2


def test_solverstate_layouts_are_caffes(tmp_path):
    solver = get_solver(_resume_param(tmp_path, 'Adam', 'HDF5'))
    solver.step(3)                      # multistep passed stepvalue 2 at iteration 2
    model, state_path = solver.snapshot()
    assert model.endswith('r_iter_3.caffemodel.h5')
    n = len(solver.net.learnable_params)
    with h5py.File(state_path, 'r') as f:
        assert f['iter'][()].tolist() == [3]
        assert f['current_step'][()].tolist() == [1]
        assert f['learned_net'][()].decode() == model
        assert sorted(f['history'], key=int) == [str(i) for i in range(2 * n)]
        np.testing.assert_array_equal(f['history'][str(n)][()], solver.history[n].data)
    with h5py.File(model, 'r') as f:
        np.testing.assert_array_equal(f['data']['ip1']['0'][()],
                                      solver.net.params['ip1'][0].data)

    solver = get_solver(_resume_param(tmp_path, 'SGD', 'BINARYPROTO'))
    solver.step(1)
    model, state_path = solver.snapshot()
    state = pb.SolverState()
    state.ParseFromString(open(state_path, 'rb').read())
    assert state.iter == 1 and state.learned_net == model and state.current_step == 0
    assert [tuple(h.shape.dim) for h in state.history] == \
        [p.shape for p in solver.net.learnable_params]
    weights = pb.NetParameter()
    weights.ParseFromString(open(model, 'rb').read())
    assert [l.name for l in weights.layer if l.blobs] == ['ip1', 'ip2']


def test_snapshot_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    solver = get_solver(_resume_param(tmp_path, 'SGD', 'BINARYPROTO'))
    solver.step(1)
    good_model, good_state = solver.snapshot()
    good_bytes = open(good_state, 'rb').read()
    solver.step(1)

    real_open = open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            raise OSError(28, 'No space left on device')

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def failing_open(path, mode='r', *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return HalfWriter(f) if 'w' in mode and 'solverstate' in str(path) else f

    monkeypatch.setattr(io, 'open', failing_open, raising=False)
    with pytest.raises(CaffeliteError, match='No space left'):
        solver.snapshot()
    monkeypatch.undo()
    folder = tmp_path / 'snaps'
    names = sorted(os.listdir(folder))
    assert 'r_iter_2.solverstate' not in names
    assert not [n for n in names if n.endswith('.tmp')], names
    assert open(good_state, 'rb').read() == good_bytes


def test_hdf5_snapshot_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    solver = get_solver(_resume_param(tmp_path, 'Adam', 'HDF5'))
    solver.step(1)
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == '1':
            raise OSError('disk full')
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, 'create_dataset', failing)
    with pytest.raises(CaffeliteError, match='disk full'):
        solver.snapshot()
    monkeypatch.undo()
    names = os.listdir(tmp_path / 'snaps')
    assert 'r_iter_1.solverstate.h5' not in names
    assert not [n for n in names if n.endswith('.tmp')], names


def test_restore_rejects_a_snapshot_of_another_net_or_solver(tmp_path):
    solver = get_solver(_resume_param(tmp_path, 'SGD', 'BINARYPROTO'))
    solver.step(1)
    _, state_path = solver.snapshot()
    other_net = RANDOM_NET.replace('num_output: 5', 'num_output: 7')
    other = make(other_net, snapshot_prefix=str(tmp_path / 'o'))
    with pytest.raises(CaffeliteError, match='different net'):
        other.restore(state_path)
    renamed = make(RANDOM_NET.replace('"ip1"', '"fc1"'))
    with pytest.raises(CaffeliteError, match='layer.*fc1.*different net'):
        renamed.restore(state_path)
    adam = make(RANDOM_NET, type='Adam')
    with pytest.raises(CaffeliteError, match='holds 4 history blobs.*needs 8'):
        adam.restore(state_path)
    with pytest.raises(CaffeliteError, match='does not exist'):
        adam.restore(str(tmp_path / 'missing.solverstate'))


def test_restore_finds_weights_beside_a_moved_state(tmp_path):
    solver = get_solver(_resume_param(tmp_path, 'SGD', 'BINARYPROTO'))
    solver.step(2)
    solver.snapshot()
    moved = tmp_path / 'moved'
    os.rename(tmp_path / 'snaps', moved)
    fresh = get_solver(_resume_param(tmp_path, 'SGD', 'BINARYPROTO'))
    fresh.restore(str(moved / 'r_iter_2.solverstate'))
    for a, b in zip(params_of(solver), params_of(fresh)):
        assert np.array_equal(a, b)


def test_snapshot_prefix_checks(tmp_path):
    with pytest.raises(CaffeliteError, match='no snapshot_prefix'):
        make(snapshot=10)
    (tmp_path / 'file').write_text('')
    with pytest.raises(CaffeliteError, match='cannot write to snapshot prefix'):
        make(snapshot=10, snapshot_prefix=str(tmp_path / 'file' / 'x'))
    solver = make(RANDOM_NET, max_iter=1)            # no prefix: the final snapshot is skipped
    solver.solve()
    with pytest.raises(CaffeliteError, match='no snapshot_prefix'):
        solver.snapshot()


def test_fine_tune_weights_are_copied(tmp_path):
    source = make(RANDOM_NET, random_seed=1)
    path = str(tmp_path / 'w.caffemodel')
    source.net.save(path)
    tuned = make(RANDOM_NET, random_seed=2, weights=path)
    for a, b in zip(params_of(source), params_of(tuned)):
        assert np.array_equal(a, b)


# -- log lines, signals, non-finite losses --------------------------------------------------------

def test_log_lines_follow_caffe(tmp_path, caplog):
    solver = get_solver(solver_param(
        RANDOM_NET, base_lr=0.01, lr_policy='fixed', display=2, max_iter=4, test_iter=[2],
        test_interval=2, random_seed=1, snapshot_after_train=False))
    with caplog.at_level(logging.INFO, logger='caffelite'):
        solver.solve()
    lines = [r.getMessage() for r in caplog.records]
    number = r'[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?'
    assert re.fullmatch(rf'Iteration 2 \({number} iter/s, {number}s/2 iters\), loss = {number}',
                        lines[[i for i, l in enumerate(lines) if l.startswith('Iteration 2 (')][0]])
    assert any(re.fullmatch(rf'    Train net output #0: loss = ({number}) \(\* 1 = \1 loss\)', l)
               for l in lines)
    assert 'Iteration 2, lr = 0.01' in lines
    assert lines.count('Iteration 2, Testing net (#0)') == 1
    assert lines.count('Iteration 4, Testing net (#0)') == 1       # the final test
    assert any(re.fullmatch(rf'    Test net output #0: loss = {number} \(\* 1 = {number} loss\)',
                            l) for l in lines)
    assert any(re.fullmatch(rf'Iteration 4, loss = {number}', l) for l in lines)
    assert lines[-1] == 'Optimization Done.'


def test_glog_prefix_parses_like_caffes_log_tools():
    record = logging.LogRecord('caffelite', logging.INFO, 'solver.py', 12, 'Iteration %d, lr = %s',
                               (100, '0.01'), None)
    line = GlogFormatter().format(record)
    fields = line.split()
    assert fields[0][0] == 'I' and 1 <= int(fields[0][1:3]) <= 12 and 1 <= int(fields[0][3:]) <= 31
    datetime.strptime(fields[1], '%H:%M:%S.%f')        # parse_log.py / extract_seconds.py
    assert line.endswith('solver.py:12] Iteration 100, lr = 0.01')


def test_signal_handler_maps_signals_to_actions():
    with signals.SignalHandler('stop', 'snapshot') as handler:
        assert handler.requested_action() == 'none'
        os.kill(os.getpid(), signal.SIGHUP)
        assert handler.requested_action() == 'snapshot'
        assert handler.requested_action() == 'none'
        os.kill(os.getpid(), signal.SIGINT)
        assert handler.requested_action() == 'stop'
    with signals.SignalHandler('none', 'stop') as handler:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGHUP)
        assert handler.requested_action() == 'none'     # SIGINT first, mapped to none
        assert handler.requested_action() == 'stop'
    with pytest.raises(CaffeliteError, match='sigint_effect'):
        signals.SignalHandler('explode')


def test_requested_snapshot_and_stop(tmp_path):
    param = _resume_param(tmp_path, 'SGD', 'BINARYPROTO')
    param.snapshot = 0
    solver = get_solver(param)
    script = {2: 'snapshot', 4: 'stop'}
    solver.set_action_function(lambda: script.pop(solver.iter, 'none'))   # a signal is consumed
    solver.solve()
    names = sorted(os.listdir(tmp_path / 'snaps'))
    # snapshot after iteration 2 (SIGHUP), stop after 4 and the final snapshot there (SIGINT)
    assert names == ['r_iter_2.caffemodel', 'r_iter_2.solverstate',
                     'r_iter_4.caffemodel', 'r_iter_4.solverstate']
    assert solver.iter == 4 and solver.requested_early_exit


@pytest.mark.filterwarnings('ignore::RuntimeWarning')
def test_non_finite_loss_names_iteration_and_first_layer():
    solver = make(base_lr=1e38)
    solver.net.blobs['x'].data[...] = 10.0
    solver.net.blobs['y'].data[...] = 1.0
    with pytest.raises(CaffeliteError,
                       match=r'Iteration 1: the loss is (inf|nan); the first non-finite output '
                             r'is top "p" of layer "ip" \(type InnerProduct\)'):
        solver.step(3)


# -- nets and paths -------------------------------------------------------------------------------

def test_paths_fall_back_to_the_solver_folder(tmp_path, monkeypatch):
    folder = tmp_path / 'models'
    folder.mkdir()
    (folder / 'net.prototxt').write_text(RANDOM_NET)
    (folder / 'solver.prototxt').write_text(
        'net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\ntest_iter: 1\n'
        'test_interval: 5\nsnapshot_prefix: "snaps/x"\n')
    monkeypatch.chdir(tmp_path)
    (folder / 'snaps').mkdir()
    solver = SGDSolver(str(folder / 'solver.prototxt'))
    assert len(solver.test_nets) == 1
    assert solver.snapshot_prefix == os.path.join(str(folder), 'snaps/x')
    (folder / 'snaps').rmdir()
    solver = SGDSolver(str(folder / 'solver.prototxt'))
    assert solver.snapshot_prefix == 'snaps/x'            # no folder anywhere: cwd, created
    assert (tmp_path / 'snaps').is_dir() and not os.listdir(tmp_path / 'snaps')
    (folder / 'solver.prototxt').write_text('net: "nowhere.prototxt"\nlr_policy: "fixed"\n')
    with pytest.raises(CaffeliteError) as err:
        SGDSolver(str(folder / 'solver.prototxt'))
    assert str(tmp_path / 'nowhere.prototxt') in str(err.value)
    assert str(folder / 'nowhere.prototxt') in str(err.value)


def test_default_snapshot_prefix_is_the_solver_file_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'net.prototxt').write_text(RANDOM_NET)
    (tmp_path / 'my_solver.prototxt').write_text('net: "net.prototxt"\nlr_policy: "fixed"\n')
    assert SGDSolver('my_solver.prototxt').snapshot_prefix == 'my_solver'
    (tmp_path / 'out').mkdir()
    (tmp_path / 'my_solver.prototxt').write_text(
        'net: "net.prototxt"\nlr_policy: "fixed"\nsnapshot_prefix: "out"\n')
    assert SGDSolver('my_solver.prototxt').snapshot_prefix == os.path.join('out', 'my_solver')


def test_test_nets_follow_caffes_rules():
    base = dict(base_lr=0.1, lr_policy='fixed')
    solver = get_solver(solver_param(RANDOM_NET, test_iter=[1, 2], test_interval=3, **base))
    assert len(solver.test_nets) == 2                 # a generic net: one per test_iter
    assert [n.phase for n in solver.test_nets] == [pb.TEST, pb.TEST]
    assert 'drop' not in solver.test_nets[0]._layer_names
    with pytest.raises(CaffeliteError, match='no test_interval'):
        get_solver(solver_param(RANDOM_NET, test_iter=[1], **base))
    with pytest.raises(CaffeliteError, match='test_state'):
        get_solver(solver_param(RANDOM_NET, test_iter=[1], test_interval=2,
                                test_state=['{ stage: "a" }', '{ stage: "b" }'], **base))
    param = pb.SolverParameter(train_net_param=solver_param(RANDOM_NET).net_param,
                               test_net_param=[solver_param(RANDOM_NET).net_param],
                               test_iter=[1, 1], test_interval=2, **base)
    with pytest.raises(CaffeliteError, match='test_iter must be given once for each test net'):
        get_solver(param)


def test_test_pass_shares_weights_and_averages_outputs(caplog):
    solver = get_solver(solver_param(RANDOM_NET, base_lr=0.1, lr_policy='fixed', test_iter=[3],
                                     test_interval=1, random_seed=4))
    solver.step(1)
    test_net = solver.test_nets[0]
    assert test_net.params['ip1'][0] is solver.net.params['ip1'][0]
    outputs = []
    forward = test_net.forward_from_to
    test_net.forward_from_to = lambda a, b: (forward(a, b),
                                             outputs.append(float(test_net.blobs['loss'].data)))[0]
    with caplog.at_level(logging.INFO, logger='caffelite'):
        means = solver.test(0)
    assert means['loss'][0] == pytest.approx(np.mean(outputs), rel=1e-6)
