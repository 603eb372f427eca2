"""BatchNorm and MVN (caffelite/layers/normalization.py): Caffe 1.0's forward values, running
statistics and parameter rules, and float64 gradient checks."""
import numpy as np
import pytest
from google.protobuf import text_format

from caffelite.errors import LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, forward_once, make, tops

pytestmark = pytest.mark.usefixtures('array_backend')


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def run(layer, bottom):
    return forward_once(layer, bottom, tops())


def batch_norm_reference(x, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps), mean.ravel(), var.ravel()


# -- BatchNorm --------------------------------------------------------------------------------
def test_batch_norm_train_forward_and_running_statistics():
    layer = make('type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 }')
    x1, x2 = rand(4, 3, 2, 2) * 2 + 1, rand(4, 3, 2, 2, seed=1) - 3
    bottom = [blob(x1)]
    top = run(layer, bottom)
    assert [b.shape for b in layer.blobs] == [(3,), (3,), (1,)]
    y, mean1, var1 = batch_norm_reference(x1)
    np.testing.assert_allclose(top[0].data, y, rtol=1e-10, atol=1e-12)
    m = 4 * 2 * 2
    np.testing.assert_allclose(layer.blobs[2].data, [1.0])
    np.testing.assert_allclose(layer.blobs[0].data, mean1, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].data, var1 * m / (m - 1), rtol=1e-12)
    bottom[0].data[...] = x2
    layer.forward(bottom, top)
    _, mean2, var2 = batch_norm_reference(x2)
    f = float(np.float32(0.9))  # the proto field is a float
    np.testing.assert_allclose(layer.blobs[2].data, [f * 1 + 1])
    np.testing.assert_allclose(layer.blobs[0].data, mean2 + f * mean1, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].data, (var2 + f * var1) * m / (m - 1),
                               rtol=1e-12)


def test_batch_norm_global_stats_forward():
    mean, var, factor = np.array([1., -2.]), np.array([4., 0.25]), 2.5
    x = rand(3, 2, 4)
    for text, phase in [('type: "BatchNorm"', pb.TEST),
                        ('type: "BatchNorm" batch_norm_param { use_global_stats: true }',
                         pb.TRAIN)]:
        layer = make(text, phase)
        bottom, top = [blob(x)], tops()
        layer.set_up(bottom, top)
        assert layer.use_global_stats
        for b, v in zip(layer.blobs, (mean * factor, var * factor, [factor])):
            b.data[...] = v
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        expected = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5)
        np.testing.assert_allclose(top[0].data, expected, rtol=1e-10)
        # global statistics are read, never updated
        np.testing.assert_allclose(layer.blobs[2].data, [factor])
    # A zero scale factor (an untrained net) means zero mean and variance.
    layer = make('type: "BatchNorm" batch_norm_param { eps: 0.01 }', pb.TEST)
    top = run(layer, [blob(x)])
    np.testing.assert_allclose(top[0].data, x / np.sqrt(float(np.float32(0.01))), rtol=1e-12)


def test_batch_norm_default_mode_follows_phase():
    train = make('type: "BatchNorm"', pb.TRAIN)
    run(train, [blob(rand(2, 3))])
    assert not train.use_global_stats
    explicit = make('type: "BatchNorm" batch_norm_param { use_global_stats: false }', pb.TEST)
    run(explicit, [blob(rand(2, 3))])
    assert not explicit.use_global_stats


@pytest.mark.parametrize('shape', [(4, 3, 2, 3), (5, 3), (6,)])
def test_batch_norm_train_gradient(shape):
    x = rand(*shape) * 1.5 + 0.5
    # The running statistics receive no gradient (and the output at TRAIN does not depend on
    # them), so the parameter check compares zeros with zeros.
    check_layer_gradient(make('type: "BatchNorm"'), [blob(x)], tops())


def test_batch_norm_train_gradient_in_place():
    b = blob(rand(3, 2, 2) * 2)
    check_layer_gradient(make('type: "BatchNorm"'), [b], [b])


def test_batch_norm_global_stats_gradient():
    layer = make('type: "BatchNorm" batch_norm_param { use_global_stats: true }')
    bottom, top = [blob(rand(3, 2, 2, 2))], tops()
    layer.set_up(bottom, top)
    for b, v in zip(layer.blobs, ([0.5, -1.], [2., 0.3], [1.7])):
        b.data[...] = v
    # Statistics are not learned: Caffe computes no gradient for them (check_params=False).
    check_layer_gradient(layer, bottom, top, check_params=False, setup=False)


def test_batch_norm_statistics_are_not_learned():
    lp = text_format.Parse('type: "BatchNorm"', pb.LayerParameter())
    layer = make(lp)
    run(layer, [blob(rand(2, 3))])
    assert [p.lr_mult for p in lp.param] == [0, 0, 0]
    bad = make('type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 1 }')
    with pytest.raises(LayerError, match='lr_mult'):
        run(bad, [blob(rand(2, 3))])


def test_batch_norm_channel_mismatch():
    layer = make('type: "BatchNorm"')
    bottom, top = [blob(rand(2, 3))], tops()
    layer.set_up(bottom, top)
    bottom[0].reshape(2, 4)
    with pytest.raises(LayerError, match='channels'):
        layer.reshape(bottom, top)


# -- MVN --------------------------------------------------------------------------------------
def mvn_reference(x, normalize_variance, across_channels, eps=1e-9):
    rows = x.reshape(x.shape[0] if across_channels else x.shape[0] * x.shape[1], -1)
    y = rows - rows.mean(axis=1, keepdims=True)
    if normalize_variance:
        y = y / (np.sqrt((y * y).mean(axis=1, keepdims=True)) + eps)
    return y.reshape(x.shape)


VARIANTS = [(nv, ac) for nv in (True, False) for ac in (True, False)]


@pytest.mark.parametrize('nv,ac', VARIANTS)
def test_mvn_forward(nv, ac):
    x = rand(2, 3, 2, 3) * 3 + 2
    text = (f'type: "MVN" mvn_param {{ normalize_variance: {str(nv).lower()} '
            f'across_channels: {str(ac).lower()} }}')
    top = run(make(text), [blob(x)])
    np.testing.assert_allclose(top[0].data, mvn_reference(x, nv, ac), rtol=1e-10, atol=1e-12)
    rows = top[0].data.reshape(2 if ac else 6, -1)
    np.testing.assert_allclose(rows.mean(axis=1), 0, atol=1e-12)
    if nv:
        np.testing.assert_allclose(rows.std(axis=1), 1, rtol=1e-8)


def test_mvn_eps_is_added_to_the_std():
    x = np.array([[[1., 3.]]])  # std 1
    top = run(make('type: "MVN" mvn_param { eps: 0.5 }'), [blob(x)])
    np.testing.assert_allclose(top[0].data, [[[-1 / 1.5, 1 / 1.5]]])


@pytest.mark.parametrize('nv,ac', VARIANTS)
def test_mvn_gradient(nv, ac):
    text = (f'type: "MVN" mvn_param {{ normalize_variance: {str(nv).lower()} '
            f'across_channels: {str(ac).lower()} }}')
    check_layer_gradient(make(text), [blob(rand(2, 3, 2, 2) * 2 + 1)], tops())


def test_mvn_gradient_2d_and_in_place():
    check_layer_gradient(make('type: "MVN" mvn_param { across_channels: true }'),
                         [blob(rand(3, 5))], tops())
    b = blob(rand(2, 2, 3))
    check_layer_gradient(make('type: "MVN"'), [b], [b])


def test_batch_norm_in_a_net_has_zero_lr_and_runs_in_place_with_scale():
    import caffelite
    text = '''
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 dim: 2 } } }
    layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }
    layer { name: "sc" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
    '''
    net = caffelite.Net(text_format.Parse(text, pb.NetParameter()), caffelite.TRAIN)
    assert net.params_lr == [0.0, 0.0, 0.0, 1.0, 1.0]
    x = rand(4, 3, 2).astype(np.float32)
    out = net.forward(x=x)['x']
    np.testing.assert_allclose(out, batch_norm_reference(x.astype(np.float64))[0], atol=1e-5)
    np.testing.assert_allclose(net.params['bn'][2].data, [1.0])
