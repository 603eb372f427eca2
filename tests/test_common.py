"""Structural layers (caffelite/layers/common.py): exact forwards against NumPy references,
Caffe's shape rules and errors, and float64 finite-difference gradient checks."""
import numpy as np
import pytest

from caffelite.errors import LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, forward_once, make, tops

pytestmark = pytest.mark.usefixtures('array_backend')


def run(layer, bottom, ntop=1):
    """set_up + forward on ``ntop`` fresh tops; returns the top blobs."""
    return forward_once(layer, bottom, tops(ntop))


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, seed=0, spacing=0.1):
    """Values at least ``spacing`` apart (safe for max/sort layers under finite differences)."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) - n / 2.0).reshape(shape) * spacing


GAUSS = 'type: "gaussian" std: 1'


# -- InnerProduct -----------------------------------------------------------------------------
def test_inner_product_forward_default_axis():
    layer = make(f'type: "InnerProduct" inner_product_param {{ num_output: 5 '
                 f'weight_filler {{ {GAUSS} }} bias_filler {{ {GAUSS} }} }}')
    x = rand(2, 3, 4)
    top = run(layer, [blob(x)])
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (5, 12) and b.shape == (5,)
    assert top[0].shape == (2, 5)
    np.testing.assert_allclose(top[0].data, x.reshape(2, 12) @ w.T + b, rtol=1e-12)


def test_inner_product_axis2_transpose_no_bias_forward_and_gradient():
    text = (f'type: "InnerProduct" inner_product_param {{ num_output: 3 axis: 2 transpose: true '
            f'bias_term: false weight_filler {{ {GAUSS} }} }}')
    layer = make(text)
    x = rand(2, 3, 4)
    top = run(layer, [blob(x)])
    assert len(layer.blobs) == 1
    w = layer.blobs[0].data
    assert w.shape == (4, 3)  # K x N when transposed
    assert top[0].shape == (2, 3, 3)
    np.testing.assert_allclose(top[0].data, np.einsum('abk,kn->abn', x, w), rtol=1e-12)
    check_layer_gradient(make(text), [blob(x)], tops())


def test_inner_product_gradient_with_bias():
    text = (f'type: "InnerProduct" inner_product_param {{ num_output: 4 '
            f'weight_filler {{ {GAUSS} }} bias_filler {{ {GAUSS} }} }}')
    check_layer_gradient(make(text), [blob(rand(3, 2, 2, seed=1))], tops())


def test_set_up_checks_blob_counts_then_sets_up_and_sizes_the_tops():
    layer = make('type: "InnerProduct" inner_product_param { num_output: 2 }')
    with pytest.raises(LayerError, match='takes exactly 1 bottom blob'):
        layer.set_up([blob(rand(2, 6)), blob(rand(2, 6))], tops())
    assert not layer.blobs                                    # setup did not run
    top = tops()
    layer.set_up([blob(rand(3, 6))], top)
    assert [b.shape for b in layer.blobs] == [(2, 6), (2,)] and top[0].shape == (3, 2)


def test_inner_product_default_filler_is_zero_and_input_size_checked():
    layer = make('type: "InnerProduct" inner_product_param { num_output: 2 }')
    bottom, top = [blob(rand(2, 6))], tops()
    layer.set_up(bottom, top)
    assert not layer.blobs[0].data.any() and not layer.blobs[1].data.any()
    bottom[0].reshape(2, 5)
    with pytest.raises(LayerError, match='incompatible'):
        layer.reshape(bottom, top)


# -- Embed ------------------------------------------------------------------------------------
EMBED = (f'type: "Embed" embed_param {{ num_output: 3 input_dim: 5 '
         f'weight_filler {{ {GAUSS} }} bias_filler {{ {GAUSS} }} }}')


def test_embed_forward():
    layer = make(EMBED)
    idx = np.array([[0, 4], [4, 2]], dtype=np.float64)
    top = run(layer, [blob(idx)])
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (5, 3) and b.shape == (3,)
    assert top[0].shape == (2, 2, 3)
    np.testing.assert_allclose(top[0].data, w[idx.astype(int)] + b)


def test_embed_weight_gradient_with_repeated_indices():
    idx = np.array([1, 3, 1, 1, 0, 3], dtype=np.float64)
    check_layer_gradient(make(EMBED), [blob(idx)], tops(), check_bottom=[])
    # And the accumulated rows explicitly.
    layer = make(EMBED)
    top = run(layer, [blob(idx)])
    dy = rand(6, 3, seed=3)
    top[0].diff[...] = dy
    layer.backward(top, [False], [blob(idx)])
    expected = np.zeros((5, 3))
    for i, k in enumerate(idx.astype(int)):
        expected[k] += dy[i]
    np.testing.assert_allclose(layer.blobs[0].diff, expected)
    np.testing.assert_allclose(layer.blobs[1].diff, dy.sum(0))


def test_embed_rejects_bad_indices_and_bottom_gradient():
    layer = make(EMBED)
    with pytest.raises(LayerError, match='5.0'):
        run(layer, [blob([1.0, 5.0])])
    with pytest.raises(LayerError, match='-1.0'):
        run(make(EMBED), [blob([-1.0])])
    with pytest.raises(LayerError, match='1.5'):
        run(make(EMBED), [blob([1.5])])
    layer = make(EMBED)
    bottom = [blob([1.0, 2.0])]
    top = run(layer, bottom)
    top[0].diff[...] = 1
    with pytest.raises(LayerError, match='backpropagate'):
        layer.backward(top, [True], bottom)
    assert not layer.allow_force_backward(0)


# -- Concat / Slice ---------------------------------------------------------------------------
def test_concat_forward_axes_and_legacy_concat_dim():
    a, b = rand(2, 3, 2), rand(2, 1, 2, seed=1)
    top = run(make('type: "Concat"'), [blob(a), blob(b)])
    np.testing.assert_array_equal(top[0].data, np.concatenate([a, b], axis=1))
    c = rand(1, 3, 2, seed=2)
    top = run(make('type: "Concat" concat_param { axis: 0 }'), [blob(a), blob(c)])
    np.testing.assert_array_equal(top[0].data, np.concatenate([a, c], axis=0))
    top = run(make('type: "Concat" concat_param { axis: -3 }'), [blob(a), blob(c)])
    assert top[0].shape == (3, 3, 2)
    top = run(make('type: "Concat" concat_param { concat_dim: 0 }'), [blob(a), blob(c)])
    np.testing.assert_array_equal(top[0].data, np.concatenate([a, c], axis=0))


def test_concat_errors():
    with pytest.raises(LayerError, match='same shape'):
        run(make('type: "Concat"'), [blob(rand(2, 3)), blob(rand(3, 3))])
    with pytest.raises(LayerError, match='number of axes'):
        run(make('type: "Concat"'), [blob(rand(2, 3)), blob(rand(2, 3, 1))])
    with pytest.raises(LayerError, match='not both'):
        run(make('type: "Concat" concat_param { axis: 1 concat_dim: 1 }'),
            [blob(rand(2, 3)), blob(rand(2, 3))])


def test_concat_gradient():
    check_layer_gradient(make('type: "Concat" concat_param { axis: 2 }'),
                         [blob(rand(2, 2, 3)), blob(rand(2, 2, 1, seed=1)),
                          blob(rand(2, 2, 2, seed=2))], tops())


def test_slice_points_and_equal_split():
    x = rand(2, 6, 3)
    pieces = run(make('type: "Slice" slice_param { axis: 1 slice_point: 1 slice_point: 4 }'),
               [blob(x)], ntop=3)
    for t, ref in zip(pieces, np.split(x, [1, 4], axis=1)):
        np.testing.assert_array_equal(t.data, ref)
    pieces = run(make('type: "Slice" slice_param { axis: -1 }'), [blob(x)], ntop=3)
    for t, ref in zip(pieces, np.split(x, 3, axis=2)):
        np.testing.assert_array_equal(t.data, ref)
    pieces = run(make('type: "Slice" slice_param { slice_dim: 0 }'), [blob(x)], ntop=2)
    np.testing.assert_array_equal(pieces[1].data, x[1:])


def test_slice_errors():
    with pytest.raises(LayerError, match='evenly divide'):
        run(make('type: "Slice"'), [blob(rand(2, 5))], ntop=2)
    with pytest.raises(LayerError, match='slice_point'):
        run(make('type: "Slice" slice_param { slice_point: 2 }'), [blob(rand(2, 5))], ntop=3)
    with pytest.raises(LayerError, match='increasing'):
        run(make('type: "Slice" slice_param { slice_point: 3 slice_point: 2 }'),
            [blob(rand(2, 5))], ntop=3)


def test_slice_concat_round_trip():
    x = rand(3, 7, 2)
    pieces = run(make('type: "Slice" slice_param { axis: 1 slice_point: 2 slice_point: 3 }'),
               [blob(x)], ntop=3)
    back = run(make('type: "Concat" concat_param { axis: 1 }'), pieces)
    np.testing.assert_array_equal(back[0].data, x)


def test_slice_gradient():
    check_layer_gradient(make('type: "Slice" slice_param { axis: 0 slice_point: 1 }'),
                         [blob(rand(3, 2, 2))], tops(2))


# -- Flatten / Reshape ------------------------------------------------------------------------
def test_flatten_shapes_and_gradient():
    x = rand(2, 3, 4, 5)
    top = run(make('type: "Flatten"'), [blob(x)])
    np.testing.assert_array_equal(top[0].data, x.reshape(2, 60))
    top = run(make('type: "Flatten" flatten_param { axis: 1 end_axis: 2 }'), [blob(x)])
    assert top[0].shape == (2, 12, 5)
    top = run(make('type: "Flatten" flatten_param { axis: -2 }'), [blob(x)])
    assert top[0].shape == (2, 3, 20)
    check_layer_gradient(make('type: "Flatten" flatten_param { axis: 0 end_axis: 1 }'),
                         [blob(rand(2, 3, 2))], tops())
    b = blob(x)
    with pytest.raises(LayerError, match='in-place'):
        make('type: "Flatten"').reshape([b], [b])


def reshaped(text, shape):
    return run(make(f'type: "Reshape" reshape_param {{ {text} }}'), [blob(np.arange(
        float(np.prod(shape))).reshape(shape))])[0]


@pytest.mark.parametrize('text', [
    'shape { dim: 2 dim: 2 dim: 4 }',
    'shape { dim: 0 dim: 2 dim: 4 }',
    'shape { dim: 0 dim: 2 dim: -1 }',
    'shape { dim: 0 dim: -1 dim: 4 }',
    'shape { dim: 2 dim: 4 } axis: 1',
    'shape { dim: -1 dim: 4 } axis: 1',
    'shape { dim: 2 dim: 4 } axis: -2',
])
def test_reshape_caffe_examples_2x8_to_2x2x4(text):
    top = reshaped(text, (2, 8))
    assert top.shape == (2, 2, 4)
    np.testing.assert_array_equal(top.data, np.arange(16.0).reshape(2, 2, 4))


@pytest.mark.parametrize('text,shape', [
    ('shape { dim: 1 dim: 2 dim: 8 }', (1, 2, 8)),
    ('shape { dim: 1 dim: 2 } num_axes: 1', (1, 2, 8)),
    ('shape { dim: 1 } num_axes: 0', (1, 2, 8)),
    ('shape { dim: 2 dim: 1 dim: 8 }', (2, 1, 8)),
    ('shape { dim: 1 } axis: 1 num_axes: 0', (2, 1, 8)),
    ('shape { dim: 1 } axis: -1 num_axes: 0', (2, 8, 1)),
    ('shape { dim: -1 } axis: 0 num_axes: 2', (16,)),
    ('shape { dim: 0 dim: 0 }', (2, 8)),
])
def test_reshape_axis_num_axes(text, shape):
    assert reshaped(text, (2, 8)).shape == shape


def test_reshape_replaces_a_middle_range():
    top = reshaped('shape { dim: 3 dim: 2 dim: -1 } axis: 1 num_axes: 2', (2, 6, 4, 5))
    assert top.shape == (2, 3, 2, 4, 5)


def test_reshape_errors_and_gradient():
    with pytest.raises(LayerError, match='multiple -1'):
        reshaped('shape { dim: -1 dim: -1 }', (2, 8))
    with pytest.raises(LayerError, match='count'):
        reshaped('shape { dim: 3 dim: 5 }', (2, 8))
    with pytest.raises(LayerError, match='divisible'):
        reshaped('shape { dim: 3 dim: -1 }', (2, 8))
    with pytest.raises(LayerError, match='no corresponding'):
        reshaped('shape { dim: 0 dim: 0 dim: 0 }', (2, 8))
    with pytest.raises(LayerError, match='past'):
        reshaped('shape { dim: 16 } axis: 1 num_axes: 2', (2, 8))
    with pytest.raises(LayerError, match='out of range'):
        reshaped('shape { dim: 16 } axis: 3', (2, 8))
    check_layer_gradient(make('type: "Reshape" reshape_param { shape { dim: -1 dim: 3 } }'),
                         [blob(rand(2, 3, 2))], tops())


# -- Eltwise ----------------------------------------------------------------------------------
def test_eltwise_sum_with_coeffs():
    xs = [rand(2, 3, seed=s) for s in range(3)]
    text = 'type: "Eltwise" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }'
    top = run(make(text), [blob(x) for x in xs])
    np.testing.assert_allclose(top[0].data, xs[0] - 0.5 * xs[1] + 2 * xs[2], rtol=1e-12)
    check_layer_gradient(make(text), [blob(x) for x in xs], tops())
    top = run(make('type: "Eltwise"'), [blob(x) for x in xs[:2]])
    np.testing.assert_allclose(top[0].data, xs[0] + xs[1])


@pytest.mark.parametrize('stable', ['true', 'false'])
def test_eltwise_prod(stable):
    xs = [rand(2, 3, seed=s) + 2 for s in range(3)]
    text = f'type: "Eltwise" eltwise_param {{ operation: PROD stable_prod_grad: {stable} }}'
    top = run(make(text), [blob(x) for x in xs])
    np.testing.assert_allclose(top[0].data, xs[0] * xs[1] * xs[2], rtol=1e-12)
    check_layer_gradient(make(text), [blob(x) for x in xs], tops())


def test_eltwise_prod_stable_gradient_with_zero_input():
    xs = [rand(2, 3), rand(2, 3, seed=1)]
    xs[0][0, 0] = 0.0
    check_layer_gradient(make('type: "Eltwise" eltwise_param { operation: PROD }'),
                         [blob(x) for x in xs], tops())


def test_eltwise_max_forward_ties_and_gradient():
    layer = make('type: "Eltwise" eltwise_param { operation: MAX }')
    a, b, c = np.array([[1., 5., 2.]]), np.array([[3., 5., 2.]]), np.array([[0., 1., 7.]])
    bottom = [blob(a), blob(b), blob(c)]
    top = run(layer, bottom)
    np.testing.assert_array_equal(top[0].data, [[3., 5., 7.]])
    top[0].diff[...] = [[10., 20., 30.]]
    layer.backward(top, [True] * 3, bottom)
    # ties go to the lowest bottom index (Caffe keeps the first maximum)
    np.testing.assert_array_equal(bottom[0].diff, [[0., 20., 0.]])
    np.testing.assert_array_equal(bottom[1].diff, [[10., 0., 0.]])
    np.testing.assert_array_equal(bottom[2].diff, [[0., 0., 30.]])
    values = distinct((3, 2, 4))
    check_layer_gradient(make('type: "Eltwise" eltwise_param { operation: MAX }'),
                         [blob(v) for v in values], tops())


def test_eltwise_errors():
    with pytest.raises(LayerError, match='one coefficient per bottom'):
        run(make('type: "Eltwise" eltwise_param { coeff: 1 }'), [blob(rand(2)), blob(rand(2))])
    with pytest.raises(LayerError, match='summation'):
        run(make('type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 }'),
            [blob(rand(2)), blob(rand(2))])
    with pytest.raises(LayerError, match='one shape'):
        run(make('type: "Eltwise"'), [blob(rand(2)), blob(rand(3))])


def test_silence_zeroes_bottom_diffs():
    layer = make('type: "Silence"')
    bottom = [blob(rand(2, 3)), blob(rand(4))]
    for b in bottom:
        b.diff[...] = 7
    run(layer, bottom, ntop=0)
    layer.backward([], [True, False], bottom)
    assert not bottom[0].diff.any()
    assert (bottom[1].diff == 7).all()


# -- Bias / Scale -----------------------------------------------------------------------------
@pytest.mark.parametrize('axis,num_axes,shape', [(1, 1, (3,)), (1, -1, (3, 4)), (0, 2, (2, 3)),
                                                 (-1, 1, (4,)), (1, 0, ())])
def test_bias_one_bottom_forward_and_gradient(axis, num_axes, shape):
    text = (f'type: "Bias" bias_param {{ axis: {axis} num_axes: {num_axes} '
            f'filler {{ {GAUSS} }} }}')
    x = rand(2, 3, 4)
    layer = make(text)
    top = run(layer, [blob(x)])
    b = layer.blobs[0].data
    assert b.shape == shape
    a = axis % 3 if shape else 0
    expected = x + b.reshape((1,) * a + shape + (1,) * (3 - a - len(shape)))
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-12)
    check_layer_gradient(make(text), [blob(x)], tops())


def test_bias_default_filler_zero_and_two_bottom_form():
    layer = make('type: "Bias"')
    run(layer, [blob(rand(2, 3))])
    assert layer.blobs[0].shape == (3,) and not layer.blobs[0].data.any()
    x, b = rand(2, 3, 4), rand(3, 4, seed=1)
    layer = make('type: "Bias"')
    top = run(layer, [blob(x), blob(b)])
    assert layer.blobs == []
    np.testing.assert_allclose(top[0].data, x + b)
    check_layer_gradient(make('type: "Bias"'), [blob(x), blob(b)], tops())
    # a scalar second bottom broadcasts over everything
    check_layer_gradient(make('type: "Bias"'), [blob(x), blob(np.array(0.5))],
                         tops())


def test_bias_in_place_gradient():
    b = blob(rand(2, 3, 2))
    check_layer_gradient(make(f'type: "Bias" bias_param {{ filler {{ {GAUSS} }} }}'), [b], [b])


def test_scale_one_bottom_with_bias():
    text = (f'type: "Scale" scale_param {{ axis: 1 num_axes: 2 filler {{ {GAUSS} }} '
            f'bias_term: true bias_filler {{ {GAUSS} }} }}')
    x = rand(2, 3, 4)
    layer = make(text)
    top = run(layer, [blob(x)])
    s, b = layer.blobs[0].data, layer.blobs[1].data
    assert s.shape == b.shape == (3, 4)
    np.testing.assert_allclose(top[0].data, x * s + b, rtol=1e-12)
    check_layer_gradient(make(text), [blob(x)], tops())


def test_scale_default_filler_is_one():
    layer = make('type: "Scale"')
    x = rand(2, 3)
    top = run(layer, [blob(x)])
    np.testing.assert_array_equal(layer.blobs[0].data, np.ones(3))
    np.testing.assert_array_equal(top[0].data, x)


def test_scale_two_bottom_form_with_bias():
    text = f'type: "Scale" scale_param {{ axis: 0 bias_term: true bias_filler {{ {GAUSS} }} }}'
    x, s = rand(2, 3, 4), rand(2, 3, seed=1)
    layer = make(text)
    top = run(layer, [blob(x), blob(s)])
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == (2, 3)
    np.testing.assert_allclose(top[0].data, x * s[..., None] + layer.blobs[0].data[..., None])
    check_layer_gradient(make(text), [blob(x), blob(s)], tops())
    check_layer_gradient(make('type: "Scale"'), [blob(x), blob(np.array(1.5))],
                         tops())


def test_scale_in_place_gradient():
    b = blob(rand(2, 3, 2))
    text = f'type: "Scale" scale_param {{ filler {{ {GAUSS} }} bias_term: true }}'
    check_layer_gradient(make(text), [b], [b])


def test_scale_shape_mismatch():
    with pytest.raises(LayerError, match='does not match'):
        run(make('type: "Scale"'), [blob(rand(2, 3)), blob(rand(4))])
    with pytest.raises(LayerError, match='past'):
        run(make('type: "Scale" scale_param { axis: 1 num_axes: 3 }'), [blob(rand(2, 3))])


# -- Tile / Reduction / Crop ------------------------------------------------------------------
def test_tile_forward_and_gradient():
    x = rand(2, 3, 2)
    top = run(make('type: "Tile" tile_param { axis: 1 tiles: 3 }'), [blob(x)])
    np.testing.assert_array_equal(top[0].data, np.tile(x, (1, 3, 1)))
    top = run(make('type: "Tile" tile_param { axis: -1 tiles: 2 }'), [blob(x)])
    np.testing.assert_array_equal(top[0].data, np.tile(x, (1, 1, 2)))
    check_layer_gradient(make('type: "Tile" tile_param { axis: 1 tiles: 3 }'), [blob(x)],
                         tops())
    with pytest.raises(LayerError, match='tiles'):
        run(make('type: "Tile"'), [blob(x)])


@pytest.mark.parametrize('op,ref', [
    ('SUM', lambda x: x.sum(-1)), ('ASUM', lambda x: np.abs(x).sum(-1)),
    ('SUMSQ', lambda x: (x * x).sum(-1)), ('MEAN', lambda x: x.mean(-1))])
@pytest.mark.parametrize('axis', [0, 1, -1])
def test_reduction(op, ref, axis):
    x = rand(2, 3, 2)
    x[np.abs(x) < 0.05] = 0.3  # keep ASUM away from its kink
    text = f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: -1.5 }}'
    top = run(make(text), [blob(x)])
    a = axis % 3
    assert top[0].shape == x.shape[:a]
    np.testing.assert_allclose(top[0].data, -1.5 * ref(x.reshape(x.shape[:a] + (-1,))),
                               rtol=1e-6)
    check_layer_gradient(make(text), [blob(x)], tops())


def test_crop_forward_offsets_and_gradient():
    x, ref = rand(2, 3, 5, 6), np.zeros((1, 1, 3, 2))
    top = run(make('type: "Crop" crop_param { axis: 2 offset: 1 offset: 3 }'), [blob(x), blob(ref)])
    np.testing.assert_array_equal(top[0].data, x[:, :, 1:4, 3:5])
    top = run(make('type: "Crop" crop_param { axis: 1 offset: 1 }'), [blob(x), blob(ref)])
    np.testing.assert_array_equal(top[0].data, x[:, 1:2, 1:4, 1:3])
    top = run(make('type: "Crop"'), [blob(x), blob(ref)])
    np.testing.assert_array_equal(top[0].data, x[:, :, :3, :2])
    check_layer_gradient(make('type: "Crop" crop_param { offset: 1 }'),
                         [blob(rand(1, 2, 4, 4)), blob(ref)], tops())
    with pytest.raises(LayerError, match='out-of-bounds'):
        run(make('type: "Crop" crop_param { offset: 3 }'), [blob(x), blob(ref)])
    with pytest.raises(LayerError, match='number of offset'):
        run(make('type: "Crop" crop_param { offset: 0 offset: 0 offset: 0 }'),
            [blob(x), blob(ref)])


# -- ArgMax -----------------------------------------------------------------------------------
def test_argmax_without_axis():
    x = np.array([[[1., 9.], [3., 4.]], [[0., 2.], [8., 5.]]])  # N=2, count(1)=4
    top = run(make('type: "ArgMax"'), [blob(x)])
    assert top[0].shape == (2, 1, 1)
    np.testing.assert_array_equal(top[0].data.ravel(), [1, 2])
    top = run(make('type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }'), [blob(x)])
    assert top[0].shape == (2, 2, 2)
    np.testing.assert_array_equal(top[0].data, [[[1, 3], [9, 4]], [[2, 3], [8, 5]]])
    x4 = rand(3, 2, 2, 2)
    top = run(make('type: "ArgMax" argmax_param { top_k: 3 }'), [blob(x4)])
    assert top[0].shape == (3, 1, 3, 1)
    np.testing.assert_array_equal(top[0].data.reshape(3, 3),
                                  np.argsort(-x4.reshape(3, -1), axis=1)[:, :3])


def test_argmax_with_axis_and_ties():
    x = distinct((2, 4, 3))
    top = run(make('type: "ArgMax" argmax_param { axis: 1 top_k: 2 }'), [blob(x)])
    assert top[0].shape == (2, 2, 3)
    np.testing.assert_array_equal(top[0].data, np.argsort(-x, axis=1)[:, :2])
    top = run(make('type: "ArgMax" argmax_param { axis: -1 out_max_val: true }'), [blob(x)])
    np.testing.assert_array_equal(top[0].data, x.max(axis=2, keepdims=True))
    # Caffe sorts (value, index) pairs descending: an equal value at a larger index wins.
    top = run(make('type: "ArgMax" argmax_param { axis: 1 }'), [blob([[2., 5., 5., 1.]])])
    assert top[0].data.ravel()[0] == 2
    with pytest.raises(LayerError, match='top_k'):
        run(make('type: "ArgMax" argmax_param { axis: 1 top_k: 5 }'), [blob(x)])
    layer = make('type: "ArgMax"')
    bottom = [blob(x)]
    top = run(layer, bottom)
    with pytest.raises(LayerError, match='no backward'):
        layer.backward(top, [True], bottom)


# -- BatchReindex / Filter / Parameter --------------------------------------------------------
def test_batch_reindex():
    x, idx = rand(4, 2, 3), np.array([3., 0., 3., 1., 3.])
    layer = make('type: "BatchReindex"')
    top = run(layer, [blob(x), blob(idx)])
    np.testing.assert_array_equal(top[0].data, x[[3, 0, 3, 1, 3]])
    check_layer_gradient(make('type: "BatchReindex"'), [blob(x), blob(idx)],
                         tops(), check_bottom=[0])
    with pytest.raises(LayerError, match='4.0'):
        run(make('type: "BatchReindex"'), [blob(x), blob([4.])])
    with pytest.raises(LayerError, match='1-D'):
        run(make('type: "BatchReindex"'), [blob(x), blob([[1.]])])
    bottom = [blob(x), blob(idx)]
    top = run(layer, bottom)
    with pytest.raises(LayerError, match='indices'):
        layer.backward(top, [True, True], bottom)
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


def test_filter():
    a, b = rand(4, 3), rand(4, 2, 2, seed=1)
    selector = np.array([[1.], [0.], [0.], [2.]])
    layer = make('type: "Filter"')
    pieces = run(layer, [blob(a), blob(b), blob(selector)], ntop=2)
    np.testing.assert_array_equal(pieces[0].data, a[[0, 3]])
    np.testing.assert_array_equal(pieces[1].data, b[[0, 3]])
    check_layer_gradient(make('type: "Filter"'), [blob(a), blob(b), blob(selector)],
                         tops(2), check_bottom=[0, 1])
    assert not layer.allow_force_backward(2) and layer.allow_force_backward(0)
    with pytest.raises(LayerError, match='singletons'):
        run(make('type: "Filter"'), [blob(a), blob(np.ones((4, 2)))])
    with pytest.raises(LayerError, match='first dimension'):
        run(make('type: "Filter"'), [blob(a), blob(np.ones(3))])


def test_parameter_layer():
    layer = make('type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }')
    top = run(layer, [])
    assert top[0].shape == (2, 3) and not top[0].data.any()
    layer.blobs[0].data[...] = rand(2, 3)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, layer.blobs[0].data)
    check_layer_gradient(make('type: "Parameter" parameter_param { shape { dim: 3 } }'), [],
                         tops())
    top[0].diff[...] = 1
    layer.backward(top, [], [])
    layer.backward(top, [], [])
    np.testing.assert_array_equal(layer.blobs[0].diff, 2 * np.ones((2, 3)))


def test_embed_in_a_force_backward_net():
    """force_backward does not ask Embed for a gradient to its indices (it cannot give one)."""
    import caffelite
    from google.protobuf import text_format as tf
    text = '''
    force_backward: true
    layer { name: "in" type: "Input" top: "w" top: "t"
            input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 dim: 4 } } }
    layer { name: "emb" type: "Embed" bottom: "w" top: "e"
            embed_param { num_output: 4 input_dim: 7 weight_filler { type: "gaussian" } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "e" bottom: "t" top: "l" }
    '''
    net = caffelite.Net(tf.Parse(text, pb.NetParameter()), caffelite.TRAIN)
    w = np.array([[0., 6., 0.], [2., 2., 2.]])
    net.forward(w=w, t=np.zeros((2, 3, 4)))
    net.backward()
    weight = net.params['emb'][0]
    # EuclideanLoss: d/de = e / N with N = 2; each row k collects its occurrences.
    counts = np.bincount(w.ravel().astype(int), minlength=7)[:, None]
    np.testing.assert_allclose(weight.diff, counts * weight.data / 2, rtol=1e-5)
