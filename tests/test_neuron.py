"""Neuron layers: forward values against NumPy, Caffe's defaults, in-place use, Dropout's
mask, and float64 finite-difference gradient checks (bottoms and PReLU's slopes)."""
import numpy as np
import pytest

from caffelite import backend
from caffelite.errors import LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, forward_once, make, tops

pytestmark = pytest.mark.usefixtures('array_backend')

SHAPE = (2, 3, 4, 5)


def away_from_kinks(shape=SHAPE, seed=0, low=0.1, high=2.0):
    """Random values with |x| in [low, high], either sign."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def run(layer, x, in_place=False):
    """Setup + forward; returns (bottom blob, top blob, top data copy)."""
    bottom = blob(x)
    top = bottom if in_place else tops()[0]
    forward_once(layer, [bottom], [top])
    return bottom, top, top.data.copy()


def gradcheck(text, x, in_place=False, phase=pb.TRAIN, **kw):
    layer = make(text, phase)
    bottom = blob(x)
    top = bottom if in_place else tops()[0]
    check_layer_gradient(layer, [bottom], [top], **kw)
    return layer


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# -- forward values -----------------------------------------------------------------------------

FORWARD_CASES = [
    ('type: "ReLU"', lambda x: np.maximum(x, 0)),
    ('type: "ReLU" relu_param { negative_slope: 0.1 }', lambda x: np.where(x > 0, x, 0.1 * x)),
    ('type: "Sigmoid"', sigmoid),
    ('type: "TanH"', np.tanh),
    ('type: "AbsVal"', np.abs),
    ('type: "BNLL"', lambda x: np.log1p(np.exp(x))),
    ('type: "ELU"', lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ('type: "ELU" elu_param { alpha: 0.5 }', lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }', lambda x: (3 + 0.5 * x) ** 2),
    ('type: "Power" power_param { power: 0.5 scale: 2 shift: 5 }', lambda x: np.sqrt(5 + 2 * x)),
    ('type: "Power" power_param { power: 3 scale: 0 shift: 2 }', lambda x: np.full_like(x, 8.0)),
    ('type: "Power" power_param { power: 0 }', lambda x: np.ones_like(x)),
    ('type: "Power"', lambda x: x),
    ('type: "Exp"', np.exp),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda x: 2.0 ** (1 + 0.5 * x)),
    ('type: "Log" log_param { shift: 3 }', lambda x: np.log(3 + x)),
    ('type: "Log" log_param { base: 10 scale: 2 shift: 5 }', lambda x: np.log10(5 + 2 * x)),
    ('type: "Threshold" threshold_param { threshold: 0.5 }', lambda x: (x > 0.5).astype(float)),
    ('type: "Threshold"', lambda x: (x > 0).astype(float)),
    ('type: "Swish"', lambda x: x * sigmoid(x)),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * sigmoid(1.5 * x)),
    ('type: "Clip" clip_param { min: -0.5 max: 1 }', lambda x: np.clip(x, -0.5, 1)),
    ('type: "Dropout"', lambda x: x),  # TEST phase: identity (set below)
]


@pytest.mark.parametrize('text,reference', FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
@pytest.mark.parametrize('in_place', [False, True])
def test_forward_matches_numpy(text, reference, in_place):
    x = away_from_kinks()
    x.flat[:3] = [0.0, 0.5, -0.5]  # exact values at the thresholds too
    phase = pb.TEST if 'Dropout' in text else pb.TRAIN
    bottom, top, y = run(make(text, phase), x, in_place)
    # proto floats are float32 (0.1 -> 0.10000000149), hence rtol 1e-6
    np.testing.assert_allclose(y, reference(x), rtol=1e-6, atol=1e-12)
    assert y.shape == x.shape
    if not in_place:
        np.testing.assert_array_equal(bottom.data, x)  # the bottom is left alone


def test_bnll_and_sigmoid_are_stable_for_large_inputs():
    x = np.array([[-800.0, -40.0, 0.0, 40.0, 800.0]])
    with np.errstate(over='raise', invalid='raise'):
        _, _, y = run(make('type: "BNLL"'), x)
        np.testing.assert_allclose(y, [[0.0, np.log1p(np.exp(-40.0)), np.log(2), 40.0, 800.0]],
                                   rtol=1e-14, atol=1e-300)
        _, _, s = run(make('type: "Sigmoid"'), x)
        np.testing.assert_allclose(s, [[0.0, sigmoid(-40.0), 0.5, sigmoid(40.0), 1.0]],
                                   rtol=1e-12, atol=1e-300)


def test_exp_and_log_reject_bad_base():
    for text in ('type: "Exp" exp_param { base: -2 }', 'type: "Log" log_param { base: 0 }'):
        with pytest.raises(LayerError, match='base'):
            run(make(text), np.ones((2, 2)))


# -- gradients ------------------------------------------------------------------------------------

GRADIENT_CASES = [
    'type: "ReLU"',
    'type: "ReLU" relu_param { negative_slope: 0.01 }',
    'type: "ReLU" relu_param { negative_slope: -0.3 }',
    'type: "Sigmoid"',
    'type: "TanH"',
    'type: "AbsVal"',
    'type: "BNLL"',
    'type: "ELU" elu_param { alpha: 0.7 }',
    'type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }',
    'type: "Power" power_param { power: 0.37 scale: 0.2 shift: 1 }',
    'type: "Power" power_param { power: -1.5 scale: -0.2 shift: 1 }',
    'type: "Power" power_param { power: 1 scale: 3 shift: -2 }',
    'type: "Power" power_param { power: 0 scale: 3 shift: 1 }',
    'type: "Exp"',
    'type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }',
    'type: "Log" log_param { shift: 3 }',
    'type: "Log" log_param { base: 2 scale: 0.7 shift: 2 }',
    'type: "Swish" swish_param { beta: 1.3 }',
    'type: "Clip" clip_param { min: -0.5 max: 1 }',
]


@pytest.mark.parametrize('text', GRADIENT_CASES)
@pytest.mark.parametrize('in_place', [False, True])
def test_gradient(text, in_place):
    x = away_from_kinks(seed=1)
    if 'Clip' in text:  # keep away from the clip bounds as well
        x = np.where(np.abs(x + 0.5) < 0.05, x - 0.1, x)
        x = np.where(np.abs(x - 1) < 0.05, x + 0.1, x)
    gradcheck(text, x, in_place=in_place)


def test_dropout_gradient_train_and_test():
    x = away_from_kinks(seed=2)
    for in_place in (False, True):
        gradcheck('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x, in_place)
        gradcheck('type: "Dropout"', x, in_place, phase=pb.TEST)


def test_threshold_has_no_backward():
    layer = make('type: "Threshold"')
    bottom, top, _ = run(layer, np.ones((2, 2)))
    top.diff[...] = 1
    layer.backward([top], [False], [bottom])  # nothing asked: nothing done
    with pytest.raises(LayerError, match='no backward'):
        layer.backward([top], [True], [bottom])


def test_power_gradient_matches_closed_form():
    x = away_from_kinks(seed=3)
    layer = make('type: "Power" power_param { power: 3 scale: 2 shift: 0 }')
    bottom, top, y = run(layer, x)
    np.testing.assert_allclose(y, (2 * x) ** 3)
    top.diff[...] = 1
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff, 3 * 2 * (2 * x) ** 2)


def test_relu_in_place_backward_after_a_later_in_place_layer():
    """A later in-place layer replaces the blob's data; ReLU's backward must still use its
    own output's sign."""
    x = np.array([[1.0, -2.0, 3.0, -4.0]])
    relu = make('type: "ReLU"')
    b, t, _ = run(relu, x, in_place=True)
    b.xdata = -np.abs(x)  # what a later in-place layer might leave there
    t.diff[...] = 5.0
    relu.backward([t], [True], [b])
    np.testing.assert_array_equal(b.diff, [[5.0, 0.0, 5.0, 0.0]])


# -- Dropout ------------------------------------------------------------------------------------

def test_dropout_train_scales_kept_units_and_zeros_the_rest():
    x = np.random.default_rng(4).uniform(1, 2, (50, 40))
    layer = make('type: "Dropout" dropout_param { dropout_ratio: 0.25 }')
    backend.set_random_seed(11)
    bottom, top, y = run(layer, x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-14)
    assert 0.70 < kept.mean() < 0.80          # 2000 draws, p(keep) = 0.75
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff, kept / 0.75)  # the same mask


def test_dropout_default_ratio_and_seed_reproducibility():
    x = np.ones((30, 30))
    masks = []
    for seed in (5, 5, 6):
        backend.set_random_seed(seed)
        _, _, y = run(make('type: "Dropout"'), x)
        assert set(np.unique(y)) <= {0.0, 2.0}  # default ratio 0.5: kept units are doubled
        masks.append(y != 0)
    np.testing.assert_array_equal(masks[0], masks[1])
    assert (masks[0] != masks[2]).any()


def test_dropout_is_identity_at_test_and_in_place():
    x = away_from_kinks(seed=6)
    layer = make('type: "Dropout" dropout_param { dropout_ratio: 0.9 }', pb.TEST)
    bottom, top, y = run(layer, x, in_place=True)
    np.testing.assert_array_equal(y, x)
    top.diff[...] = 3.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff, np.full(x.shape, 3.0))


def test_dropout_rejects_ratio_of_one():
    with pytest.raises(LayerError, match='dropout_ratio'):
        run(make('type: "Dropout" dropout_param { dropout_ratio: 1 }'), np.ones((2, 2)))


# -- PReLU --------------------------------------------------------------------------------------

def test_prelu_defaults_shapes_and_forward():
    x = away_from_kinks(seed=7)
    layer = make('type: "PReLU"')
    _, _, y = run(layer, x)
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == (3,)
    np.testing.assert_array_equal(layer.blobs[0].data, [0.25] * 3)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.25 * x))

    shared = make('type: "PReLU" prelu_param { channel_shared: true '
                  'filler { type: "constant" value: 0.1 } }')
    _, _, y = run(shared, x)
    assert shared.blobs[0].shape == () and shared.blobs[0].count == 1  # Caffe's 0-axis blob
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.1 * x))


def test_prelu_per_channel_slopes():
    x = away_from_kinks(seed=8)
    layer = make('type: "PReLU"')
    bottom, top = blob(x), tops()[0]
    layer.set_up([bottom], [top])
    layer.blobs[0].data[...] = [0.5, -1.0, 2.0]
    layer.reshape([bottom], [top])
    layer.forward([bottom], [top])
    a = np.array([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(top.data, np.where(x > 0, x, a * x))


@pytest.mark.parametrize('shared', [False, True])
@pytest.mark.parametrize('in_place', [False, True])
def test_prelu_gradient(shared, in_place):
    text = ('type: "PReLU" prelu_param { channel_shared: %s filler { type: "uniform" '
            'min: -0.5 max: 0.8 } }' % ('true' if shared else 'false'))
    gradcheck(text, away_from_kinks(seed=9), in_place)
    gradcheck(text, away_from_kinks((4, 3), seed=10), in_place)  # 2-D input (N x C)


def test_prelu_accumulates_slope_gradient():
    x = away_from_kinks((2, 2), seed=11)
    layer = make('type: "PReLU"')
    bottom, top, _ = run(layer, x)
    top.diff[...] = 1.0
    layer.blobs[0].diff[...] = 10.0
    layer.backward([top], [True], [bottom])
    expected = 10.0 + np.where(x > 0, 0, x).sum(axis=0)
    np.testing.assert_allclose(layer.blobs[0].diff, expected)


def test_prelu_rejects_wrong_channel_count_and_1d_input():
    layer = make('type: "PReLU"')
    bottom, top, _ = run(layer, np.ones((2, 3)))
    bottom.reshape(2, 4)
    with pytest.raises(LayerError, match='slope'):
        layer.reshape([bottom], [top])
    with pytest.raises(LayerError, match='2 axes'):
        run(make('type: "PReLU"'), np.ones(5))
