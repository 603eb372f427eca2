"""caffelite on both backends, and the fake GPU that stands in for CuPy on the CPU.

- fakegpu's rules (CuPy's): host arrays refused as operands, NumPy functions and implicit
  conversion refused on device arrays, explicit crossings counted; a layer with such a bug
  runs on NumPy and fails on the fake GPU.
- Every compute layer type: forward tops, bottom diffs and parameter diffs on the device equal
  NumPy's (float32, rtol 1e-5 of each array's scale).
- A 20-step solver run: the same weights on both backends.
- Blobs cross host <-> device only when asked (counted), and not at all between layers.
- ``caffelite train --gpu 0`` runs in GPU mode and logs the CPU run's losses.
Device backends: 'fakegpu' everywhere, 'cupy' where CuPy and a GPU are (marked gpu).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend_testing import use_backend
from caffelite import backend, fakegpu
from caffelite.blob import Blob
from caffelite.layers import Layer, layer_type_list
from caffelite.net import Net
from caffelite.proto import caffelite_pb2 as pb
from caffelite.solver import get_solver
from layer_testing import blob, make, tops

REPO = Path(__file__).resolve().parent.parent
DEVICES = ['fakegpu', pytest.param('cupy', marks=pytest.mark.gpu)]
F32 = np.float32


def assert_same(device, host, what, rtol=1e-5):
    """``device`` equals ``host`` to ``rtol`` relative to the array's largest magnitude."""
    scale = float(np.max(np.abs(host))) if np.size(host) else 0.0
    np.testing.assert_allclose(device, host, rtol=rtol, atol=rtol * scale, err_msg=what)


# -- fakegpu's rules ------------------------------------------------------------------------------

def test_fakegpu_refuses_host_arrays_numpy_calls_and_implicit_conversion():
    a = fakegpu.asarray(np.arange(6, dtype=F32).reshape(2, 3))
    host = np.ones(3, F32)
    refused = {
        'host operand': lambda: a + host,
        'host operand on the left': lambda: host * a,
        'host argument': lambda: fakegpu.maximum(a, host),
        'host value stored': lambda: a.__setitem__(0, host),
        'numpy ufunc': lambda: np.exp(a),
        'numpy function': lambda: np.sum(a),
        'np.asarray': lambda: np.asarray(a),
        'np.array': lambda: np.array(a),
        'numpy scalar from a device array': lambda: np.float32(a.sum()),
    }
    for what, call in refused.items():
        with pytest.raises(TypeError):
            call()
            pytest.fail(f'{what} was allowed')
    with pytest.raises(TypeError, match='Implicit conversion to a NumPy array is not allowed'):
        np.asarray(a)


def test_fakegpu_computes_like_numpy_on_device_arrays_and_scalars():
    host = np.arange(12, dtype=F32).reshape(3, 4)
    a = fakegpu.asarray(host)
    total = a.sum()
    assert isinstance(total, fakegpu.ndarray) and total.shape == ()    # 0-d, as CuPy
    assert float(total) == 66.0
    y = fakegpu.exp(a * F32(0.1) + 1.0) - np.float32(2) * a[:, ::2].mean()
    assert isinstance(y, fakegpu.ndarray)
    np.testing.assert_array_equal(y.get(), np.exp(host * F32(0.1) + 1.0)
                                  - np.float32(2) * host[:, ::2].mean())
    view = a.reshape(-1)
    view[0] = 100.0                                      # a view writes through
    assert float(a[0, 0]) == 100.0
    counts = fakegpu.zeros(4, F32)
    fakegpu.add.at(counts, fakegpu.asarray(np.array([1, 1, 3])), 1.0)
    np.testing.assert_array_equal(fakegpu.asnumpy(counts), [0, 2, 0, 1])
    windows = fakegpu.lib.stride_tricks.as_strided(a, shape=(2, 2), strides=a.strides)
    assert isinstance(windows, fakegpu.ndarray)
    assert backend.get_array_module(a) is fakegpu
    assert backend.get_array_module(host) is np


def test_fakegpu_counts_the_explicit_crossings():
    fakegpu.reset_transfers()
    a = fakegpu.asarray(np.ones(3))                   # host -> device
    b = fakegpu.asarray(a)                            # already there: no copy
    assert b is a
    fakegpu.zeros(3) + a * 2                          # device only
    host = a.get()                                    # device -> host
    fakegpu.asnumpy(a)                                # device -> host
    host[0] = 5.0                                     # a copy: the device keeps its value
    assert float(a[0]) == 1.0
    assert fakegpu.transfers == {'to_device': 1, 'to_host': 2}


def test_set_mode_gpu_uses_the_fake_device_when_the_environment_asks(monkeypatch):
    monkeypatch.setenv('CAFFELITE_FAKE_GPU', '1')
    backend.set_mode_gpu()
    try:
        assert backend.xp() is fakegpu
        assert isinstance(Blob((2, 3)).xdata, fakegpu.ndarray)
    finally:
        backend.set_mode_cpu()
    assert backend.xp() is np


class _SloppyLayer(Layer):
    """A layer (not registered) with one host/device bug of the kind the fake GPU is for."""
    bugs = {
        'forgotten xp': lambda x: np.tanh(x),
        'host array slipped in': lambda x: x * np.ones(x.shape, x.dtype),
        'implicit copy to the host': lambda x: np.asarray(x) * 2,
    }

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        top[0].xdata = self.bugs[self.name](bottom[0].xdata)


@pytest.mark.parametrize('bug', sorted(_SloppyLayer.bugs))
def test_fakegpu_catches_host_device_bugs_that_numpy_lets_through(bug):
    param = pb.LayerParameter(name=bug, type='Sloppy')
    for name in ('numpy', 'fakegpu'):
        with use_backend(name):
            layer = _SloppyLayer(param, dtype=F32)
            bottom, top = [blob(np.ones((2, 3)), F32)], tops(1, F32)
            layer.set_up(bottom, top)
            if name == 'numpy':
                layer.forward(bottom, top)
            else:
                with pytest.raises(TypeError):
                    layer.forward(bottom, top)


# -- every layer on both backends -----------------------------------------------------------------

def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def labels(n, classes, *rest):
    return lambda rng: rng.integers(0, classes, size=(n,) + rest).astype(float)


def cont(t, n):
    def make_cont(rng):
        c = np.ones((t, n))
        c[0] = 0
        c[t // 2, 0] = 0
        return c
    return make_cont


# (prototxt, bottoms (functions of a Generator), bottoms to back-propagate to, phase)
LAYER_CASES = {
    'AbsVal': ('type: "AbsVal"', [normal(2, 3, 4)], [0]),
    'BNLL': ('type: "BNLL"', [normal(2, 3, 4)], [0]),
    'Clip': ('type: "Clip" clip_param { min: -0.5 max: 0.7 }', [normal(2, 3, 4)], [0]),
    'Dropout': ('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', [normal(2, 3, 4)],
                [0], pb.TEST),   # TRAIN masks come from each backend's own random stream
    'ELU': ('type: "ELU" elu_param { alpha: 0.7 }', [normal(2, 3, 4)], [0]),
    'Exp': ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.1 }', [normal(2, 3, 4)], [0]),
    'Log': ('type: "Log" log_param { scale: 0.5 shift: 4 }', [normal(2, 3, 4)], [0]),
    'Power': ('type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }', [normal(2, 3, 4)],
              [0]),
    'PReLU': ('type: "PReLU" prelu_param { filler { type: "uniform" min: 0.1 max: 0.5 } }',
              [normal(2, 3, 4, 5)], [0]),
    'ReLU': ('type: "ReLU" relu_param { negative_slope: 0.1 }', [normal(2, 3, 4)], [0]),
    'Sigmoid': ('type: "Sigmoid"', [normal(2, 3, 4)], [0]),
    'Swish': ('type: "Swish" swish_param { beta: 1.5 }', [normal(2, 3, 4)], [0]),
    'TanH': ('type: "TanH"', [normal(2, 3, 4)], [0]),
    'Threshold': ('type: "Threshold" threshold_param { threshold: 0.2 }', [normal(2, 3, 4)],
                  []),
    'Convolution': ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 '
                    'stride: 2 pad: 1 group: 2 weight_filler { type: "gaussian" std: 0.3 } '
                    'bias_filler { type: "constant" value: 0.1 } }', [normal(2, 4, 7, 6)], [0]),
    'Deconvolution': ('type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 3 '
                      'stride: 2 pad: 1 weight_filler { type: "gaussian" std: 0.3 } '
                      'bias_filler { type: "constant" value: 0.1 } }', [normal(2, 2, 4, 5)],
                      [0]),
    'Im2col': ('type: "Im2col" convolution_param { kernel_size: 3 stride: 1 pad: 1 }',
               [normal(2, 3, 5, 4)], [0]),
    'Pooling': ('type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }',
                [normal(2, 3, 7, 6)], [0]),
    'SPP': ('type: "SPP" spp_param { pyramid_height: 2 pool: AVE }', [normal(2, 3, 6, 5)],
            [0]),
    'LRN': ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }',
            [normal(2, 5, 4, 3)], [0]),
    'InnerProduct': ('type: "InnerProduct" inner_product_param { num_output: 5 weight_filler '
                     '{ type: "xavier" } bias_filler { type: "constant" value: 0.2 } }',
                     [normal(3, 2, 4)], [0]),
    'BatchNorm': ('type: "BatchNorm" batch_norm_param { use_global_stats: false }',
                  [normal(4, 3, 2, 2)], [0]),
    'MVN': ('type: "MVN" mvn_param { normalize_variance: true }', [normal(3, 4, 5)], [0]),
    'Softmax': ('type: "Softmax" softmax_param { axis: 1 }', [normal(2, 5, 3)], [0]),
    'Scale': ('type: "Scale" scale_param { axis: 1 num_axes: 1 bias_term: true '
              'filler { type: "gaussian" } bias_filler { type: "gaussian" } }',
              [normal(2, 3, 4)], [0]),
    'Bias': ('type: "Bias" bias_param { axis: 1 num_axes: 1 filler { type: "gaussian" } }',
             [normal(2, 3, 4)], [0]),
    'Concat': ('type: "Concat" concat_param { axis: 1 }', [normal(2, 3, 4), normal(2, 2, 4)],
               [0, 1]),
    'Slice': ('type: "Slice" top: "a" top: "b" slice_param { axis: 1 slice_point: 2 }',
              [normal(2, 5, 3)], [0]),
    'Split': ('type: "Split" top: "a" top: "b"', [normal(2, 3)], [0]),
    'Eltwise': ('type: "Eltwise" eltwise_param { operation: PROD }',
                [normal(2, 3, 4), normal(2, 3, 4)], [0, 1]),
    'Flatten': ('type: "Flatten"', [normal(2, 3, 4)], [0]),
    'Reshape': ('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }', [normal(2, 3, 4)],
                [0]),
    'Tile': ('type: "Tile" tile_param { axis: 1 tiles: 3 }', [normal(2, 3, 2)], [0]),
    'Crop': ('type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }',
             [normal(2, 3, 6, 7), normal(2, 3, 4, 4)], [0]),
    'Reduction': ('type: "Reduction" reduction_param { operation: SUMSQ axis: 1 coeff: 0.5 }',
                  [normal(2, 3, 4)], [0]),
    'ArgMax': ('type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }', [normal(3, 6)],
               []),
    'Accuracy': ('type: "Accuracy" top: "a" top: "per_class" accuracy_param { top_k: 2 }',
                 [normal(6, 4), labels(6, 4)], []),
    'Embed': ('type: "Embed" embed_param { num_output: 4 input_dim: 5 '
              'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }',
              [labels(6, 5, 2)], []),
    'BatchReindex': ('type: "BatchReindex"',
                     [normal(4, 3), lambda rng: np.array([2., 0., 2., 3., 1.])], [0]),
    'Filter': ('type: "Filter" top: "a" top: "b"',
               [normal(5, 3), normal(5, 2), lambda rng: np.array([1., 0., 1., 1., 0.])],
               [0, 1]),
    'Parameter': ('type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }', [], []),
    'Silence': ('type: "Silence"', [normal(2, 3)], [0]),
    'LSTM': ('type: "LSTM" recurrent_param { num_output: 5 weight_filler { type: "uniform" '
             'min: -0.3 max: 0.3 } bias_filler { type: "constant" value: 0.1 } }',
             [normal(4, 3, 2), cont(4, 3), normal(3, 6)], [0, 2]),
    'RNN': ('type: "RNN" recurrent_param { num_output: 4 weight_filler { type: "uniform" '
            'min: -0.3 max: 0.3 } bias_filler { type: "constant" value: 0.1 } }',
            [normal(4, 3, 2), cont(4, 3)], [0]),
    'LSTMUnit': ('type: "LSTMUnit" top: "c" top: "h"',
                 [normal(1, 3, 4), normal(1, 3, 16), lambda rng: np.array([[1., 0., 1.]])],
                 [0, 1]),
    'SoftmaxWithLoss': ('type: "SoftmaxWithLoss" loss_param { ignore_label: 2 }',
                        [normal(6, 4), labels(6, 4)], [0]),
    'EuclideanLoss': ('type: "EuclideanLoss"', [normal(4, 3), normal(4, 3)], [0, 1]),
    'SigmoidCrossEntropyLoss': ('type: "SigmoidCrossEntropyLoss"',
                                [normal(4, 3), lambda rng: rng.integers(0, 2, (4, 3)) * 1.0],
                                [0]),
    'HingeLoss': ('type: "HingeLoss" hinge_loss_param { norm: L2 }',
                  [normal(5, 4), labels(5, 4)], [0]),
    'ContrastiveLoss': ('type: "ContrastiveLoss" contrastive_loss_param { margin: 2 }',
                        [normal(5, 3), normal(5, 3), lambda rng: rng.integers(0, 2, 5) * 1.0],
                        [0, 1]),
    'InfogainLoss': ('type: "InfogainLoss"',
                     [lambda rng: rng.uniform(0.1, 1, (5, 4)), labels(5, 4),
                      lambda rng: rng.uniform(0, 1, (4, 4))], [0]),
    'MultinomialLogisticLoss': ('type: "MultinomialLogisticLoss"',
                                [lambda rng: rng.uniform(0.1, 1, (5, 4)), labels(5, 4)], [0]),
}
# Data layers read files or fill constants on the host; test_data_layers covers them, and the
# whole suite runs on the fake GPU with CAFFELITE_FAKE_GPU=1.
NOT_COMPUTE = {'Data', 'DummyData', 'HDF5Data', 'HDF5Output', 'ImageData', 'Input',
               'MemoryData', 'Python', 'VideoData', 'WindowData'}


def test_every_compute_layer_type_has_a_backend_case():
    assert sorted(set(layer_type_list()) - NOT_COMPUTE) == sorted(LAYER_CASES)


def run_layer(case, backend_name):
    """Forward and backward of ``case`` on ``backend_name`` in float32: host copies of the
    tops, the propagated bottom diffs and the parameter diffs, by name."""
    text, bottom_fns, propagate, *phase = case
    rng = np.random.default_rng(0)
    arrays = [fn(rng) for fn in bottom_fns]
    with use_backend(backend_name):
        backend.set_random_seed(1701)
        layer = make(text, phase[0] if phase else pb.TRAIN, dtype=F32)
        bottom = [blob(a, F32) for a in arrays]
        top = tops(len(layer.layer_param.top) or
                   (1 if layer.exact_num_top is None else layer.exact_num_top), F32)
        layer.set_up(bottom, top)
        layer.forward(bottom, top)
        results = {f'top[{i}]': t.data.copy() for i, t in enumerate(top)}
        for t in top:
            t.diff[...] = rng.standard_normal(t.shape)
        for b in bottom:
            b.diff[...] = 0
        for p in layer.blobs:
            p.diff[...] = 0
        if propagate or layer.blobs:
            layer.backward(top, [i in propagate for i in range(len(bottom))], bottom)
        results.update({f'bottom[{i}].diff': bottom[i].diff.copy() for i in propagate})
        results.update({f'blobs[{j}].diff': p.diff.copy() for j, p in enumerate(layer.blobs)})
    return results


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('layer_type', sorted(LAYER_CASES))
def test_layer_forward_and_backward_agree_on_both_backends(layer_type, device):
    case = LAYER_CASES[layer_type]
    host = run_layer(case, 'numpy')
    on_device = run_layer(case, device)
    assert on_device.keys() == host.keys()
    for what in host:
        assert on_device[what].dtype == host[what].dtype == F32, what
        assert_same(on_device[what], host[what], f'{layer_type} {what}')


# -- a solver run on both backends ----------------------------------------------------------------

SOLVER_NET = '''
name: "backends"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 2 dim: 6 dim: 6 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''


def train(solver_type, backend_name, tmp_path, iterations=20):
    """The weights and smoothed loss after ``iterations`` steps of ``solver_type`` on
    ``backend_name``."""
    net_path = tmp_path / 'net.prototxt'
    net_path.write_text(SOLVER_NET)
    solver_path = tmp_path / f'{solver_type}.prototxt'
    solver_path.write_text(f'net: "{net_path}" type: "{solver_type}" base_lr: 0.05 '
                           f'momentum: 0.9 momentum2: 0.999 weight_decay: 0.001 '
                           f'lr_policy: "fixed" max_iter: {iterations} random_seed: 7 '
                           f'display: 0 snapshot_after_train: false')
    with use_backend(backend_name):
        solver = get_solver(str(solver_path))
        solver.step(iterations)
        return [p.data.copy() for p in solver.net.learnable_params], solver.smoothed_loss


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('solver_type', ['SGD', 'Adam'])
def test_twenty_solver_steps_agree_on_both_backends(solver_type, device, tmp_path):
    host_params, host_loss = train(solver_type, 'numpy', tmp_path)
    device_params, device_loss = train(solver_type, device, tmp_path)
    for k, (d, h) in enumerate(zip(device_params, host_params)):
        assert_same(d, h, f'{solver_type} param {k}', rtol=1e-4)
    assert device_loss == pytest.approx(host_loss, rel=1e-4)


def test_a_solver_step_moves_only_the_data_layer_tops(tmp_path):
    (tmp_path / 'net.prototxt').write_text(SOLVER_NET)
    (tmp_path / 'solver.prototxt').write_text(
        f'net: "{tmp_path / "net.prototxt"}" type: "Adam" base_lr: 0.01 lr_policy: "fixed" '
        f'max_iter: 10 display: 1 clip_gradients: 1 snapshot_after_train: false')
    with use_backend('fakegpu'):
        solver = get_solver(str(tmp_path / 'solver.prototxt'))
        solver.step(1)
        fakegpu.reset_transfers()
        solver.step(5)
    # DummyData refills its gaussian top on the host (the constant label top once, at set-up),
    # the display (every iteration) reads the loss output; forward, backward, clipping and
    # the update stay on the device.
    assert fakegpu.transfers == {'to_device': 5, 'to_host': 5}


# -- transfers: only when asked -------------------------------------------------------------------

FORWARD_NET = '''
name: "traffic"
input: "data" input_shape { dim: 4 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
'''


def test_a_blob_crosses_only_when_the_other_side_asks():
    with use_backend('fakegpu'):
        fakegpu.reset_transfers()
        b = Blob((2, 3))
        b.xdata                                            # created on the device
        b.xdata
        assert fakegpu.transfers == {'to_device': 0, 'to_host': 0}
        b.data[...] = 1.0                                  # the host asks: one copy back
        b.data
        assert fakegpu.transfers == {'to_device': 0, 'to_host': 1}
        b.xdata += 1.0                                     # the device asks: one copy there
        b.xdata
        assert fakegpu.transfers == {'to_device': 1, 'to_host': 1}
        np.testing.assert_array_equal(b.data, 2.0)
        assert fakegpu.transfers == {'to_device': 1, 'to_host': 2}


def test_forward_and_backward_stay_on_the_device(tmp_path):
    path = tmp_path / 'net.prototxt'
    path.write_text(FORWARD_NET)
    with use_backend('fakegpu'):
        backend.set_random_seed(3)
        net = Net(str(path), pb.TRAIN)
        net.blobs['data'].data[...] = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
        net.forward()
        net.blobs['prob'].diff[...] = 1.0
        net.backward()
        fakegpu.reset_transfers()
        last = len(net.layers) - 1
        for _ in range(3):                                 # what a solver step runs
            net.forward_from_to(0, last)
            net.backward_from_to(last, 0)
        assert fakegpu.transfers == {'to_device': 0, 'to_host': 0}
        net.forward()                       # pycaffe's forward returns the output on the host
        assert fakegpu.transfers == {'to_device': 0, 'to_host': 1}


# -- the command line ---------------------------------------------------------------------------

def test_train_and_device_query_with_gpu_flag_run_in_gpu_mode(tmp_path):
    (tmp_path / 'net.prototxt').write_text(SOLVER_NET)
    (tmp_path / 'solver.prototxt').write_text(
        'net: "net.prototxt" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" max_iter: 10 '
        'display: 5 random_seed: 7 snapshot_after_train: false')
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    losses = {}
    for mode, extra, fake in (('cpu', [], '0'), ('gpu', ['--gpu', '0'], '1')):
        result = subprocess.run(
            [sys.executable, '-m', 'caffelite', 'train', '--solver', 'solver.prototxt', *extra],
            cwd=tmp_path, env=dict(env, CAFFELITE_FAKE_GPU=fake), capture_output=True,
            text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        log = result.stdout + result.stderr
        assert ('Use GPU with device ID 0' in log) == (mode == 'gpu'), log
        losses[mode] = re.findall(r'Iteration \d+.*, loss = ([0-9.e+-]+)', log)
    assert losses['cpu'] and len(losses['gpu']) == len(losses['cpu'])
    np.testing.assert_allclose(np.array(losses['gpu'], float), np.array(losses['cpu'], float),
                               rtol=1e-5)
    query = subprocess.run([sys.executable, '-m', 'caffelite', 'device_query', '-gpu', '0'],
                           cwd=tmp_path, env=dict(env, CAFFELITE_FAKE_GPU='1'),
                           capture_output=True, text=True, timeout=60)
    assert query.returncode == 0 and 'caffelite fake GPU' in query.stdout + query.stderr


def test_random_seed_is_taken_modulo_2_to_the_32_as_caffe_does(array_backend):
    """Caffe's set_random_seed takes an unsigned int: random_seed 2**32 + 5 seeds like 5."""
    from caffelite import backend
    draws = []
    for seed in (5, 2 ** 32 + 5):
        backend.set_random_seed(seed)
        draws.append(backend.to_host(backend.random_uniform((4,), np.float32, backend.xp())))
    np.testing.assert_array_equal(draws[0], draws[1])
