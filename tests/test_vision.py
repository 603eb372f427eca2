"""Vision layers: Convolution, Deconvolution, Im2col, Pooling, SPP, LRN.

Forward values are compared with direct (loop) references written here from Caffe's
definitions; backward with float64 finite differences.
"""
import itertools
import math

import numpy as np
import pytest

from caffelite import backend
from caffelite.errors import LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.layers import vision
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, forward_once, make, tops

pytestmark = pytest.mark.usefixtures('array_backend')

F64 = np.float64


def run(layer, bottom, top):
    """set_up + forward; returns copies of the top data."""
    return [t.data.copy() for t in forward_once(layer, bottom, top)]


def distinct(shape, seed=0, scale=0.1):
    """Values pairwise at least ``scale`` apart (no max-pooling ties within eps)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * scale


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


FILLERS = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 }'


# --------------------------------------------------------------------------------------------
# Direct references
# --------------------------------------------------------------------------------------------
def conv_reference(x, w, b, stride, pad, dilation, group):
    """y[n, m, o] = b[m] + sum_{c in group(m), t} w[m, c, t] x[n, c, o s - p + t d]."""
    n_, c_ = x.shape[:2]
    m_ = w.shape[0]
    spatial = x.shape[2:]
    kernel = w.shape[2:]
    out = tuple((i + 2 * p - (d * (k - 1) + 1)) // s + 1
                for i, k, s, p, d in zip(spatial, kernel, stride, pad, dilation))
    cg, mg = c_ // group, m_ // group
    y = np.zeros((n_, m_) + out)
    for n, m in itertools.product(range(n_), range(m_)):
        g = m // mg
        for o in itertools.product(*(range(v) for v in out)):
            total = 0.0 if b is None else b[m]
            for cl in range(cg):
                for t in itertools.product(*(range(k) for k in kernel)):
                    pos = tuple(oi * s - p + ti * d for oi, ti, s, p, d in
                                zip(o, t, stride, pad, dilation))
                    if all(0 <= q < i for q, i in zip(pos, spatial)):
                        total += w[(m, cl) + t] * x[(n, g * cg + cl) + pos]
            y[(n, m) + o] = total
    return y


def deconv_reference(x, w, b, stride, pad, dilation, group):
    """Scatter form: y[n, m, i s - p + t d] += w[c, m, t] x[n, c, i]."""
    n_, c_ = x.shape[:2]
    spatial = x.shape[2:]
    kernel = w.shape[2:]
    mg = w.shape[1]
    m_ = mg * group
    cg = c_ // group
    out = tuple(s * (i - 1) + d * (k - 1) + 1 - 2 * p
                for i, k, s, p, d in zip(spatial, kernel, stride, pad, dilation))
    y = np.zeros((n_, m_) + out)
    for n, c in itertools.product(range(n_), range(c_)):
        g = c // cg
        for i in itertools.product(*(range(v) for v in spatial)):
            for ml in range(mg):
                for t in itertools.product(*(range(k) for k in kernel)):
                    pos = tuple(ii * s - p + ti * d for ii, ti, s, p, d in
                                zip(i, t, stride, pad, dilation))
                    if all(0 <= q < o for q, o in zip(pos, out)):
                        y[(n, g * mg + ml) + pos] += w[(c, ml) + t] * x[(n, c) + i]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(spatial))
    return y


def caffe_pooled(size, k, s, p, floor=False):
    span = (size + 2 * p - k) / s
    out = (math.floor(span) if floor else math.ceil(span)) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_reference(x, kernel, stride, pad, method, floor=False):
    """Caffe's pooling_layer.cpp loops: returns (top, mask) (mask only for MAX)."""
    n_, c_, h_, w_ = x.shape
    oh = caffe_pooled(h_, kernel[0], stride[0], pad[0], floor)
    ow = caffe_pooled(w_, kernel[1], stride[1], pad[1], floor)
    y = np.zeros((n_, c_, oh, ow))
    mask = -np.ones((n_, c_, oh, ow))
    for n, c, ph, pw in itertools.product(range(n_), range(c_), range(oh), range(ow)):
        hs, ws = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
        he, we = min(hs + kernel[0], h_ + pad[0]), min(ws + kernel[1], w_ + pad[1])
        pool_size = (he - hs) * (we - ws)
        hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h_), min(we, w_)
        window = x[n, c, hs:he, ws:we]
        if method == 'MAX':
            best, idx = -np.inf, -1
            for h in range(hs, he):
                for w in range(ws, we):
                    if x[n, c, h, w] > best:
                        best, idx = x[n, c, h, w], h * w_ + w
            y[n, c, ph, pw], mask[n, c, ph, pw] = best, idx
        else:
            y[n, c, ph, pw] = window.sum() / pool_size
    return y, mask


def lrn_reference(x, size, alpha, beta, k, region):
    n_, c_, h_, w_ = x.shape
    half = (size - 1) // 2
    scale = np.zeros_like(x)
    for c in range(c_):
        if region == 'ACROSS_CHANNELS':
            lo, hi = max(0, c - half), min(c_, c + half + 1)
            scale[:, c] = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        else:
            for h, w in itertools.product(range(h_), range(w_)):
                win = x[:, c, max(0, h - half):h + half + 1, max(0, w - half):w + half + 1]
                scale[:, c, h, w] = 1 + alpha / size ** 2 * (win ** 2).sum(axis=(1, 2))
    return x * scale ** -beta


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------
CONV_CASES = [
    # (convolution_param body, bottom shape)
    ('num_output: 3 kernel_size: 3', (2, 2, 5, 6)),
    ('num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2', (2, 4, 7, 6)),
    ('num_output: 2 kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0',
     (2, 3, 5, 6)),
    ('num_output: 3 kernel_size: 3 dilation: 2 pad: 2', (1, 2, 6, 5)),
    ('num_output: 6 kernel_size: 2 kernel_size: 3 stride: 2 stride: 1 pad: 0 pad: 1 '
     'dilation: 1 dilation: 2 group: 3', (2, 3, 5, 6)),
    ('num_output: 2 kernel_size: 3 bias_term: false', (2, 2, 4, 4)),
    ('num_output: 3 kernel_size: 1', (2, 4, 3, 3)),
    # more outputs than weight columns: the weight gradient's product keeps its orientation
    ('num_output: 5 kernel_size: 1 stride: 2', (2, 2, 5, 4)),
]


@pytest.mark.parametrize('body,shape', CONV_CASES)
def test_convolution_forward_matches_direct(body, shape):
    layer = make(f'type: "Convolution" convolution_param {{ {body} {FILLERS} }}')
    x = gaussian(shape)
    (y,) = run(layer, [blob(x)], tops())
    w = layer.blobs[0].data
    b = layer.blobs[1].data if layer.bias_term else None
    ref = conv_reference(x, w, b, layer.stride, layer.pad, layer.dilation, layer.group)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('rows,cols', [(3, 7), (7, 3), (4, 4)])
def test_weight_gradient_sums_chunks_in_either_orientation(rows, cols):
    """_WeightGradient adds every chunk's a @ b^T onto the gradient, per group, whichever way
    round it computes the products."""
    rng = np.random.default_rng(1)
    dw = rng.standard_normal((2, rows, cols)).astype(np.float32)
    expected = dw.copy()
    grad = vision._WeightGradient(dw)
    assert grad.transposed == (cols > rows)
    for _chunk in range(3):
        for j in range(2):
            a = rng.standard_normal((rows, 11)).astype(np.float32)
            b = rng.standard_normal((cols, 11)).astype(np.float32)
            grad.add(j, a, b)
            expected[j] += a @ b.T
    grad.finish()
    np.testing.assert_allclose(dw, expected, rtol=1e-5, atol=1e-5)


def test_convolution_param_shapes_follow_caffe():
    layer = make('type: "Convolution" convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 '
                 'group: 2 }')
    run(layer, [blob(gaussian((1, 4, 5, 5)))], tops())
    assert [p.shape for p in layer.blobs] == [(6, 2, 3, 2), (6,)]
    # Caffe's default fillers are constant 0.
    assert not layer.blobs[0].data.any() and not layer.blobs[1].data.any()


def test_convolution_output_size_rule():
    # (11 + 2*1 - (2*(3-1)+1)) // 3 + 1 = 3
    layer = make('type: "Convolution" convolution_param { num_output: 1 kernel_size: 3 '
                 'dilation: 2 pad: 1 stride: 3 }')
    t = tops()
    run(layer, [blob(gaussian((1, 1, 11, 10)))], t)
    assert t[0].shape == (1, 1, 3, 3)


@pytest.mark.parametrize('body,shape', CONV_CASES[1:])
def test_convolution_gradient(body, shape):
    layer = make(f'type: "Convolution" convolution_param {{ {body} {FILLERS} }}')
    check_layer_gradient(layer, [blob(gaussian(shape))], tops(), max_checks=120)


@pytest.mark.parametrize('body,shape', [CONV_CASES[1], CONV_CASES[4],
                                        ('num_output: 2 kernel_size: 2 pad: 1', (3, 2, 3, 4, 3))])
def test_convolution_in_chunks_of_one_image(body, shape):
    """Convolution works through the batch in chunks of images (CHUNK_BYTES of columns): one
    image per chunk gives the whole-batch numbers and gradients."""
    whole = make(f'type: "Convolution" convolution_param {{ {body} {FILLERS} }}')
    chunked = make(f'type: "Convolution" convolution_param {{ {body} {FILLERS} }}')
    chunked.CHUNK_BYTES = 1
    x = gaussian(shape)
    (y_whole,) = run(whole, [blob(x)], tops())
    bottom, t = [blob(x)], tops()
    run(chunked, bottom, t)
    for mine, theirs in zip(chunked.blobs, whole.blobs):
        mine.data[...] = theirs.data
    chunked.forward(bottom, t)
    y = t[0].data
    assert len(chunked._chunks(1, 1, 8)) == shape[0]
    np.testing.assert_allclose(y, y_whole, rtol=1e-12, atol=1e-12)
    check_layer_gradient(chunked, [blob(x)], tops(), max_checks=80)


def test_convolution_two_bottoms_share_weights():
    layer = make(f'type: "Convolution" convolution_param {{ num_output: 2 kernel_size: 2 '
                 f'pad: 1 {FILLERS} }}')
    x0, x1 = gaussian((2, 2, 3, 4), 1), gaussian((2, 2, 3, 4), 2)
    y0, y1 = run(layer, [blob(x0), blob(x1)], tops(2))
    w, b = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(y0, conv_reference(x0, w, b, (1, 1), (1, 1), (1, 1), 1))
    np.testing.assert_allclose(y1, conv_reference(x1, w, b, (1, 1), (1, 1), (1, 1), 1))
    layer = make(f'type: "Convolution" convolution_param {{ num_output: 2 kernel_size: 2 '
                 f'pad: 1 {FILLERS} }}')
    check_layer_gradient(layer, [blob(x0), blob(x1)], tops(2), max_checks=100)


def test_convolution_3d_and_axis():
    # Three spatial axes.
    layer = make(f'type: "Convolution" convolution_param {{ num_output: 2 kernel_size: 2 '
                 f'stride: 1 stride: 2 stride: 1 pad: 1 pad: 0 pad: 0 {FILLERS} }}')
    x = gaussian((2, 2, 3, 4, 3))
    (y,) = run(layer, [blob(x)], tops())
    ref = conv_reference(x, layer.blobs[0].data, layer.blobs[1].data, (1, 2, 1), (1, 0, 0),
                         (1, 1, 1), 1)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=60, setup=False)
    # axis: 2 -> axes 0 and 1 are both "num".
    layer = make(f'type: "Convolution" convolution_param {{ num_output: 2 kernel_size: 3 '
                 f'axis: 2 {FILLERS} }}')
    x = gaussian((2, 3, 2, 4, 4))
    (y,) = run(layer, [blob(x)], tops())
    assert y.shape == (2, 3, 2, 2, 2)
    ref = conv_reference(x.reshape(6, 2, 4, 4), layer.blobs[0].data, layer.blobs[1].data,
                         (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-10, atol=1e-10)


def test_convolution_results_do_not_alias_scratch_buffers():
    """Column buffers are reused between calls; tops and bottom diffs must not be."""
    text = f'type: "Convolution" convolution_param {{ num_output: 1 kernel_size: 1 {FILLERS} }}'
    first, second = make(text), make(text)
    x1, x2 = blob(gaussian((1, 1, 3, 3), 1)), blob(gaussian((1, 1, 3, 3), 2))
    t1, t2 = tops(), tops()
    run(first, [x1], t1)
    y1 = t1[0].data.copy()
    t1[0].diff[...] = 1
    first.backward(t1, [True], [x1])
    dx1 = x1.diff.copy()
    run(second, [x2], t2)
    t2[0].diff[...] = 2
    second.backward(t2, [True], [x2])
    np.testing.assert_array_equal(t1[0].data, y1)
    np.testing.assert_array_equal(x1.diff, dx1)
    deconv = make(text.replace('Convolution', 'Deconvolution'))
    t3 = tops()
    run(deconv, [x1], t3)
    y3 = t3[0].data.copy()
    run(make(text.replace('Convolution', 'Deconvolution')), [x2], tops())
    np.testing.assert_array_equal(t3[0].data, y3)


def test_convolution_without_spatial_axes_is_inner_product():
    layer = make(f'type: "Convolution" convolution_param {{ num_output: 3 {FILLERS} }}')
    x = gaussian((4, 5))
    (y,) = run(layer, [blob(x)], tops())
    np.testing.assert_allclose(y, x @ layer.blobs[0].data.T + layer.blobs[1].data)
    check_layer_gradient(layer, [blob(x)], tops(), setup=False)


def test_convolution_float32_matches_float64():
    text = f'type: "Convolution" convolution_param {{ num_output: 4 kernel_size: 3 group: 2 {FILLERS} }}'
    layer = make(text, dtype=np.float32)
    x = gaussian((2, 4, 6, 6)).astype(np.float32)
    (t,) = tops(1, np.float32)
    run(layer, [blob(x, np.float32)], [t])
    assert t.data.dtype == np.float32
    ref = conv_reference(x.astype(F64), layer.blobs[0].data.astype(F64),
                         layer.blobs[1].data.astype(F64), (1, 1), (0, 0), (1, 1), 2)
    np.testing.assert_allclose(t.data, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('body,shape,message', [
    ('num_output: 4 kernel_size: 3 group: 2', (1, 3, 5, 5), 'multiple of group'),
    ('num_output: 3 kernel_size: 3 group: 2', (1, 4, 5, 5), 'multiple of group'),
    ('num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3', (1, 2, 5, 5), 'not both'),
    ('num_output: 2 kernel_h: 3', (1, 2, 5, 5), 'kernel_h and kernel_w'),
    ('num_output: 2', (1, 2, 5, 5), 'kernel_size'),
    ('num_output: 2 kernel_size: 2 kernel_size: 2 kernel_size: 2', (1, 2, 5, 5), 'once per'),
    ('num_output: 2 kernel_size: 3 stride: 0', (1, 2, 5, 5), 'Stride'),
    ('num_output: 2 kernel_size: 3 stride_h: 2 stride_w: 2', (1, 2, 5, 5, 5), '2D'),
    ('kernel_size: 3', (1, 2, 5, 5), 'num_output'),
    ('num_output: 2 kernel_size: 7', (1, 2, 5, 5), 'empty'),
])
def test_convolution_bad_parameters(body, shape, message):
    layer = make(f'type: "Convolution" convolution_param {{ {body} }}')
    with pytest.raises(LayerError, match=message):
        run(layer, [blob(gaussian(shape))], tops())


def test_convolution_rejects_mismatched_bottoms_and_channel_change():
    layer = make('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 }')
    with pytest.raises(LayerError, match='same shape'):
        run(layer, [blob(gaussian((1, 2, 3, 3))), blob(gaussian((1, 2, 3, 4)))], tops(2))
    layer = make('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 }')
    with pytest.raises(LayerError, match='must match'):
        run(layer, [blob(gaussian((1, 2, 3, 3)))], tops(2))
    layer = make('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 }')
    b, t = blob(gaussian((1, 2, 3, 3))), tops()
    run(layer, [b], t)
    b.reshape(1, 3, 3, 3)
    with pytest.raises(LayerError, match='incompatible'):
        layer.reshape([b], t)


# --------------------------------------------------------------------------------------------
# Deconvolution and Im2col
# --------------------------------------------------------------------------------------------
DECONV_CASES = [
    ('num_output: 3 kernel_size: 3', (2, 2, 3, 4)),
    ('num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2', (2, 4, 3, 3)),
    ('num_output: 2 kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 dilation: 2 '
     'bias_term: false', (1, 3, 3, 2)),
    ('num_output: 2 kernel_size: 1', (2, 5, 3, 3)),
]


@pytest.mark.parametrize('body,shape', DECONV_CASES)
def test_deconvolution_forward_and_gradient(body, shape):
    layer = make(f'type: "Deconvolution" convolution_param {{ {body} {FILLERS} }}')
    x = gaussian(shape)
    (y,) = run(layer, [blob(x)], tops())
    w = layer.blobs[0].data
    assert w.shape[:2] == (shape[1], layer.num_output // layer.group)
    b = layer.blobs[1].data if layer.bias_term else None
    ref = deconv_reference(x, w, b, layer.stride, layer.pad, layer.dilation, layer.group)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=100, setup=False)


def test_deconvolution_is_convolution_transpose():
    """<conv(x), y> == <x, deconv(y)> with the same weights (no bias)."""
    conv = make('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 '
                'stride: 2 pad: 1 group: 2 bias_term: false weight_filler { type: "gaussian" } }')
    x = gaussian((2, 2, 7, 5), 3)
    (cx,) = run(conv, [blob(x)], tops())
    deconv = make('type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 3 '
                  'stride: 2 pad: 1 group: 2 bias_term: false }')
    y = gaussian(cx.shape, 4)
    t = tops()
    deconv.set_up([blob(y)], t)
    deconv.blobs[0].data[...] = conv.blobs[0].data
    deconv.forward([blob(y)], t)
    # The deconvolution of a 4x3 map is 7x5 here (2*(4-1)+3-2).
    assert t[0].shape == x.shape
    assert np.isclose((cx * y).sum(), (x * t[0].data).sum())


def test_im2col_layer():
    layer = make('type: "Im2col" convolution_param { kernel_h: 2 kernel_w: 3 stride: 2 pad: 1 }')
    x = gaussian((2, 3, 5, 4))
    (y,) = run(layer, [blob(x)], tops())
    assert y.shape == (2, 3 * 2 * 3, 3, 2)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for c, i, j in itertools.product(range(3), range(2), range(3)):
        row = (c * 2 + i) * 3 + j
        np.testing.assert_array_equal(y[:, row], xpad[:, c, i:i + 5:2, j:j + 3:2])
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=100, setup=False)


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('h,k,s,p,floor,expected', [
    (6, 3, 2, 0, False, 3),   # ceil((6-3)/2)+1 = 3 (floor would give 2)
    (6, 3, 2, 0, True, 2),
    (5, 3, 3, 1, False, 2),   # ceil(4/3)+1 = 3, last window starts in the padding -> 2
    (5, 3, 2, 1, False, 3),
    (7, 2, 2, 1, False, 4),   # ceil(7/2)+1 = 5, (5-1)*2 >= 7+1 -> 4
    (2, 3, 2, 0, False, 1),   # kernel larger than the map
])
def test_pooling_output_size_rounding(h, k, s, p, floor, expected):
    mode = 'round_mode: FLOOR' if floor else ''
    layer = make(f'type: "Pooling" pooling_param {{ pool: MAX kernel_size: {k} stride: {s} '
                 f'pad: {p} {mode} }}')
    t = tops()
    run(layer, [blob(distinct((1, 1, h, h)))], t)
    assert t[0].shape == (1, 1, expected, expected)


POOL_CASES = [
    # kernel, stride, pad, shape
    ((3, 3), (2, 2), (0, 0), (2, 3, 6, 7)),
    ((3, 3), (2, 2), (1, 1), (2, 2, 7, 6)),
    ((2, 3), (1, 2), (1, 0), (1, 2, 5, 6)),
    ((3, 2), (3, 2), (1, 1), (2, 2, 5, 5)),
    ((2, 2), (2, 2), (0, 0), (1, 2, 4, 6)),
]


def _pool_text(method, kernel, stride, pad, extra=''):
    return (f'type: "Pooling" pooling_param {{ pool: {method} kernel_h: {kernel[0]} '
            f'kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]} '
            f'pad_h: {pad[0]} pad_w: {pad[1]} {extra} }}')


@pytest.mark.parametrize('kernel,stride,pad,shape', POOL_CASES)
def test_max_pooling(kernel, stride, pad, shape):
    layer = make(_pool_text('MAX', kernel, stride, pad))
    x = distinct(shape)
    y, mask = run(layer, [blob(x)], tops(2))
    ref, ref_mask = pool_reference(x, kernel, stride, pad, 'MAX')
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(mask, ref_mask)
    check_layer_gradient(layer, [blob(x)], tops(1), max_checks=150)


def test_max_pooling_ties_pick_first_and_padding_never_wins():
    layer = make(_pool_text('MAX', (2, 2), (1, 1), (1, 1)))
    x = -np.ones((1, 1, 2, 2))  # all negative: a zero pad would win if it were read
    y, mask = run(layer, [blob(x)], tops(2))
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))
    ref_y, ref_mask = pool_reference(x, (2, 2), (1, 1), (1, 1), 'MAX')
    np.testing.assert_array_equal(mask, ref_mask)
    assert mask[0, 0, 1, 1] == 0  # the first of four tied cells
    # Backward sends each gradient to the first maximum only.
    t = tops()
    layer = make(_pool_text('MAX', (2, 2), (1, 1), (1, 1)))
    run(layer, [blob(x)], t)
    t[0].diff[...] = 1
    b = blob(x)
    layer.backward(t, [True], [b])
    np.testing.assert_array_equal(b.diff[0, 0], [[4, 2], [2, 1]])


@pytest.mark.parametrize('kernel,stride,pad,shape', POOL_CASES)
def test_ave_pooling(kernel, stride, pad, shape):
    layer = make(_pool_text('AVE', kernel, stride, pad))
    x = gaussian(shape)
    (y,) = run(layer, [blob(x)], tops())
    ref, _ = pool_reference(x, kernel, stride, pad, 'AVE')
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=150, setup=False)


def test_ave_pooling_divisor_counts_padding_but_not_overhang():
    # H=W=3, k=3, s=2, p=1: windows start at -1 and 1; the second ends at min(4, 3+1) = 4.
    layer = make('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }')
    (y,) = run(layer, [blob(np.ones((1, 1, 3, 3)))], tops())
    np.testing.assert_allclose(y[0, 0], [[4 / 9, 4 / 9], [4 / 9, 4 / 9]])
    # H=W=4, k=3, s=2, p=0, ceil: the last window overhangs the map; no padding, so the
    # divisor is the clipped window (Caffe clips to H + pad = H).
    layer = make('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 }')
    (y,) = run(layer, [blob(np.ones((1, 1, 4, 4)))], tops())
    np.testing.assert_allclose(y[0, 0], [[1, 1], [1, 1]])
    layer = make('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }')
    (y,) = run(layer, [blob(np.ones((1, 1, 4, 4)))], tops())
    ref, _ = pool_reference(np.ones((1, 1, 4, 4)), (3, 3), (2, 2), (1, 1), 'AVE')
    np.testing.assert_allclose(y, ref)
    assert y[0, 0, 2, 2] == 0.25  # window [3, 6) clipped to H+p=5: divisor 2x2, one real cell


@pytest.mark.parametrize('method', ['MAX', 'AVE'])
def test_global_pooling(method):
    layer = make(f'type: "Pooling" pooling_param {{ pool: {method} global_pooling: true }}')
    x = distinct((2, 3, 4, 5))
    out = run(layer, [blob(x)], tops(2 if method == 'MAX' else 1))
    ref, mask = pool_reference(x, (4, 5), (1, 1), (0, 0), method)
    np.testing.assert_allclose(out[0], ref, rtol=1e-12)
    assert out[0].shape == (2, 3, 1, 1)
    if method == 'MAX':
        np.testing.assert_array_equal(out[1], mask)
    layer = make(f'type: "Pooling" pooling_param {{ pool: {method} global_pooling: true }}')
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=120)


def test_stochastic_pooling():
    x = np.abs(gaussian((2, 2, 5, 5))) + 0.1
    # TEST: sum(x^2) / sum(x) per window.
    layer = make('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }',
                 pb.TEST)
    (y,) = run(layer, [blob(x)], tops())
    ref = np.zeros((2, 2, 2, 2))
    for ph, pw in itertools.product(range(2), range(2)):
        win = x[:, :, 2 * ph:2 * ph + 3, 2 * pw:2 * pw + 3]
        ref[:, :, ph, pw] = (win ** 2).sum(axis=(2, 3)) / win.sum(axis=(2, 3))
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    # TRAIN: every output is one of its window's values; gradients go to that cell.
    layer = make('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }')
    backend.set_random_seed(3)
    t = tops()
    (y,) = run(layer, [blob(x)], t)
    for ph, pw in itertools.product(range(2), range(2)):
        win = x[:, :, 2 * ph:2 * ph + 3, 2 * pw:2 * pw + 3].reshape(2, 2, -1)
        assert np.all(np.any(win == y[:, :, ph, pw, None], axis=2))
    t[0].diff[...] = 1
    b = blob(x)
    layer.backward(t, [True], [b])
    assert np.isclose(b.diff.sum(), 2 * 2 * 4)
    assert np.isclose((b.diff * x).sum(), y.sum())  # each output routed to the cell it copied
    # A window with one non-zero cell always samples it.
    z = np.zeros((1, 1, 3, 3))
    z[0, 0, 1, 2] = 2.0
    layer = make('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 }')
    (y,) = run(layer, [blob(z)], tops())
    assert y[0, 0, 0, 0] == 2.0
    layer = make('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }')
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=60)


@pytest.mark.parametrize('body,ntop,message', [
    ('pool: MAX kernel_size: 3 pad: 3', 1, 'smaller than the kernel'),
    ('pool: MAX kernel_size: 3 kernel_h: 3 kernel_w: 3', 1, 'not both'),
    ('pool: MAX kernel_h: 3', 1, 'both kernel_h and kernel_w'),
    ('pool: MAX global_pooling: true kernel_size: 2', 1, 'Global_pooling'),
    ('pool: MAX global_pooling: true stride: 2', 1, 'Global_pooling'),
    ('pool: AVE kernel_size: 2', 2, 'second top'),
    ('pool: STOCHASTIC kernel_size: 3 pad: 1', 1, 'Padding'),
    ('pool: MAX kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1', 1, 'pad'),
    ('pool: MAX kernel_size: 0', 1, 'Filter'),
])
def test_pooling_bad_parameters(body, ntop, message):
    layer = make(f'type: "Pooling" pooling_param {{ {body} }}')
    with pytest.raises(LayerError, match=message):
        run(layer, [blob(gaussian((1, 1, 6, 6)))], tops(ntop))


def test_pooling_needs_4_axes():
    layer = make('type: "Pooling" pooling_param { pool: MAX kernel_size: 2 }')
    with pytest.raises(LayerError, match='4 axes'):
        run(layer, [blob(gaussian((1, 6, 6)))], tops())


# --------------------------------------------------------------------------------------------
# SPP
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('method', ['MAX', 'AVE'])
def test_spp(method):
    layer = make(f'type: "SPP" spp_param {{ pyramid_height: 3 pool: {method} }}')
    x = distinct((2, 3, 8, 7))
    (y,) = run(layer, [blob(x)], tops())
    assert y.shape == (2, 3 * (1 + 4 + 16))
    parts = []
    for level in range(3):
        bins = 2 ** level
        kh, kw = math.ceil(8 / bins), math.ceil(7 / bins)
        ph, pw = (kh * bins - 8 + 1) // 2, (kw * bins - 7 + 1) // 2
        ref, _ = pool_reference(x, (kh, kw), (kh, kw), (ph, pw), method)
        assert ref.shape[2:] == (bins, bins)
        parts.append(ref.reshape(2, -1))
    np.testing.assert_allclose(y, np.concatenate(parts, axis=1), rtol=1e-12)
    check_layer_gradient(layer, [blob(x)], tops(), max_checks=120, setup=False)
    single = make('type: "SPP" spp_param { pyramid_height: 1 }')
    (y1,) = run(single, [blob(x)], tops())
    np.testing.assert_array_equal(y1, x.max(axis=(2, 3), keepdims=True))


# --------------------------------------------------------------------------------------------
# LRN
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('region,size', [('ACROSS_CHANNELS', 3), ('ACROSS_CHANNELS', 5),
                                         ('WITHIN_CHANNEL', 3)])
def test_lrn(region, size):
    text = (f'type: "LRN" lrn_param {{ local_size: {size} alpha: 0.5 beta: 0.75 k: 1.5 '
            f'norm_region: {region} }}')
    layer = make(text)
    x = gaussian((2, 7, 4, 5))
    (y,) = run(layer, [blob(x)], tops())
    np.testing.assert_allclose(y, lrn_reference(x, size, 0.5, 0.75, 1.5, region), rtol=1e-12)
    check_layer_gradient(make(text), [blob(x)], tops(), max_checks=150)


def test_lrn_defaults_and_bad_size():
    layer = make('type: "LRN"')
    x = gaussian((1, 6, 3, 3))
    (y,) = run(layer, [blob(x)], tops())
    np.testing.assert_allclose(y, lrn_reference(x, 5, 1.0, 0.75, 1.0, 'ACROSS_CHANNELS'))
    with pytest.raises(LayerError, match='odd'):
        run(make('type: "LRN" lrn_param { local_size: 4 }'), [blob(x)], tops())


@pytest.mark.parametrize('numba', [True, False])
def test_pooling_backward_sums_in_caffes_order(numba, monkeypatch):
    """Overlapping windows (3/2, padded): every input cell sums its windows' diffs in the order
    of Caffe's CPU loop (top in row-major order), so the float32 sums are Caffe's bit for bit,
    MAX (compiled kernel and NumPy twin) and AVE."""
    from caffelite.layers import cpu_kernels
    from caffelite.layers.vision import (PoolGeometry, ave_pool_backward, max_pool,
                                         max_pool_backward)
    if not numba:
        monkeypatch.setattr(cpu_kernels, 'usable', lambda *a: False)
    rng = np.random.default_rng(11)
    h, w, k, s, p = 9, 8, 3, 2, 1
    x = rng.standard_normal((1, 2, h, w)).astype(np.float32)
    x[0, 1] = 0                                    # all ties: argmax is each window's first cell
    geo = PoolGeometry((h, w), (k, k), (s, s), (p, p))
    _, arg = max_pool(x, geo)
    dy = (rng.standard_normal(arg.shape) * 10.0 ** rng.integers(-4, 4, arg.shape)).astype(
        np.float32)
    max_ref, ave_ref = np.zeros_like(x), np.zeros_like(x)
    for c in range(2):
        for ph in range(geo.out_hw[0]):
            for pw in range(geo.out_hw[1]):
                hs, ws = ph * s - p, pw * s - p
                u, v = divmod(int(arg[0, c, ph, pw]), k)
                max_ref[0, c, hs + u, ws + v] += dy[0, c, ph, pw]
                # Caffe's AVE divisor counts the padded cells, not the ones past the padding
                size = ((min(hs + k, h + p) - hs) * (min(ws + k, w + p) - ws))
                for hh in range(max(hs, 0), min(hs + k, h)):
                    for ww in range(max(ws, 0), min(ws + k, w)):
                        ave_ref[0, c, hh, ww] += dy[0, c, ph, pw] / np.float32(size)
    np.testing.assert_array_equal(max_pool_backward(dy, arg, geo, x.shape), max_ref)
    np.testing.assert_array_equal(ave_pool_backward(dy, geo, x.shape), ave_ref)
