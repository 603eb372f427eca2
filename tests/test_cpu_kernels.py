"""The compiled CPU kernels (layers/cpu_kernels.py) against their xp twins, forward and
backward: the same numbers, bit for bit."""
import numpy as np
import pytest

from caffelite.layers import cpu_kernels
from caffelite.layers.im2col import col2im_xp, conv_output_shape, im2col
from caffelite.layers.vision import PoolGeometry, max_pool, max_pool_backward, \
    max_pool_backward_xp, max_pool_xp

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason='Numba is not installed')

POOLS = [  # (H, W), kernel, stride, pad
    ((55, 55), (3, 3), (2, 2), (0, 0)),     # CaffeNet pool1 (overlapping windows)
    ((24, 24), (2, 2), (2, 2), (0, 0)),     # LeNet
    ((13, 12), (3, 2), (2, 3), (1, 1)),     # padding, ceil mode, rectangular
    ((5, 7), (4, 4), (1, 3), (2, 0)),
]


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('hw, kernel, stride, pad', POOLS)
def test_max_pool_backward_kernel_matches_xp(dtype, hw, kernel, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    x[0, 0, :2, :2] = 1.5                    # ties: the first maximum in row-major order wins
    x[1, 2] = np.round(x[1, 2])              # many ties
    geo = PoolGeometry(hw, kernel, stride, pad)
    y, arg = max_pool(x, geo)
    assert cpu_kernels.usable(y)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref = max_pool_backward_xp(dy, arg, geo, x.shape)
    dx = max_pool_backward(dy, arg, geo, x.shape)
    assert dx.dtype == dx_ref.dtype and dx.flags.c_contiguous
    np.testing.assert_array_equal(dx, dx_ref)            # same sums in the same order
    out = np.full(x.size, 7, dtype)                      # into a given array, cleared first
    assert max_pool_backward(dy, arg, geo, x.shape, out).base is out
    np.testing.assert_array_equal(out.reshape(x.shape), dx_ref)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('hw, kernel, stride, pad', POOLS + [
    ((6, 40), (1, 17), (1, 1), (0, 8)),
    ((20, 21), (16, 16), (4, 5), (0, 0)),   # 256 window cells: int32 argmax, the twin runs
])
def test_max_pool_kernel_matches_xp(dtype, hw, kernel, stride, pad):
    """The compiled forward gives the twin's maxima and argmax, bit for bit, also where Caffe's
    rules decide: ties (the first wins), NaN (never wins), -inf (a window of -inf and NaN
    only: -inf, cell 0), signed zeros."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    x[0, 0, :2, :2] = 1.5
    x[1, 2] = np.round(x[1, 2])
    x[0, 1] = np.where(rng.random(hw) < 0.5, -0.0, 0.0)
    x[1, 0].flat[::3] = np.nan
    x[1, 1] = -np.inf
    x[1, 1].flat[::4] = np.nan
    x[0, 2].flat[::5] = np.inf
    geo = PoolGeometry(hw, kernel, stride, pad)
    out = np.full((2, 3) + geo.out_hw, 7, dtype)
    y, arg = max_pool(x, geo, out)
    assert y is out
    y_ref, arg_ref = max_pool_xp(geo.padded(x, -np.inf), geo, np.empty_like(y),
                                 np.empty_like(arg))
    assert arg.dtype == arg_ref.dtype == (np.uint8 if np.prod(kernel) < 256 else np.int32)
    np.testing.assert_array_equal(arg, arg_ref)
    assert y.tobytes() == y_ref.tobytes()                # -0 and +0 apart
    assert not np.isnan(y).any() and np.isneginf(y[1, 1]).any()
    compiled = any(isinstance(key, tuple) and key[1:3] == kernel
                   for key in cpu_kernels._compiled)
    assert compiled == (np.prod(kernel) < cpu_kernels.MAX_POOL_CELLS)


CONVS = [  # (H, W), kernel, stride, pad, dilation
    ((27, 27), (5, 5), (1, 1), (2, 2), (1, 1)),   # CaffeNet conv2
    ((31, 31), (11, 11), (4, 4), (0, 0), (1, 1)), # conv1-like
    ((9, 8), (3, 2), (2, 1), (1, 0), (2, 3)),     # dilation, rectangular
]


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('hw, kernel, stride, pad, dilation', CONVS)
def test_col2im_kernel_matches_xp(dtype, hw, kernel, stride, pad, dilation):
    rng = np.random.default_rng(1)
    out = conv_output_shape(hw, kernel, stride, pad, dilation)
    x_shape = (2, 3) + hw
    cols = rng.standard_normal((3,) + kernel + (2,) + out).astype(dtype)
    dx = cpu_kernels.col2im(cols, x_shape, stride, pad, dilation)
    ref = col2im_xp(cols, x_shape, kernel, stride, pad, dilation, out)
    np.testing.assert_array_equal(dx, ref)
    # The adjoint of im2col: <im2col(x), cols> == <x, col2im(cols)>.
    x = rng.standard_normal(x_shape).astype(np.float64)
    lhs = np.vdot(im2col(x, kernel, stride, pad, dilation, out), cols.astype(np.float64))
    np.testing.assert_allclose(lhs, np.vdot(x, dx.astype(np.float64)), rtol=1e-5)


def test_kernels_refuse_what_they_cannot_take():
    assert not cpu_kernels.usable(np.zeros(3, np.int32))
    assert not cpu_kernels.usable(np.zeros(3, np.float16))


def test_numba_is_imported_on_first_use_only():
    """Importing caffelite does not load Numba (it costs memory); a kernel's first use does."""
    import subprocess
    import sys
    code = ('import sys, numpy as np, caffelite\n'
            'from caffelite.layers import cpu_kernels\n'
            'assert "numba" not in sys.modules\n'
            'cpu_kernels.col2im(np.zeros((1, 1, 1, 1, 2, 2)), (1, 1, 2, 2), (1, 1), (0, 0), (1, 1))\n'
            'assert "numba" in sys.modules\n')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_col2im_into_a_given_array():
    rng = np.random.default_rng(2)
    kernel, stride, pad, dilation, hw = (3, 3), (2, 2), (1, 1), (1, 1), (7, 6)
    out_hw = conv_output_shape(hw, kernel, stride, pad, dilation)
    cols = rng.standard_normal((2,) + kernel + (3,) + out_hw)
    ref = col2im_xp(cols, (3, 2) + hw, kernel, stride, pad, dilation, out_hw)
    for col2im_fn in (lambda o: cpu_kernels.col2im(cols, (3, 2) + hw, stride, pad, dilation, o),
                      lambda o: col2im_xp(cols, (3, 2) + hw, kernel, stride, pad, dilation,
                                          out_hw, 'test.acc', o)):
        out = np.full(ref.size, 5.0)
        assert col2im_fn(out).base is out
        np.testing.assert_array_equal(out.reshape(ref.shape), ref)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('shape, size', [((2, 96, 7, 9), 5), ((3, 4, 5, 2), 5), ((1, 3, 4, 4), 7),
                                         ((2, 6, 3, 3), 1)])
def test_lrn_kernels_match_xp(dtype, shape, size):
    """ACROSS_CHANNELS LRN: the fused kernels give LRNLayer's NumPy numbers bit for bit
    (channel windows wider than C included)."""
    from caffelite.layers.vision import _window_sum_channels
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    alpha, beta, k = 1e-4 * 7, 0.75, 2.0
    dt = x.dtype.type
    scale_ref = _window_sum_channels(x * x, size)
    scale_ref *= dt(alpha / size)
    scale_ref += dt(k)
    scale = cpu_kernels.lrn_scale(x, size, alpha / size, k)
    np.testing.assert_array_equal(scale, scale_ref)
    scale_pow = scale ** dt(-beta)
    acc = _window_sum_channels(dy * x * scale_pow / scale, size)
    acc *= x
    acc *= dt(-2 * alpha * beta / size)
    acc += dy * scale_pow
    dx = cpu_kernels.lrn_backward(x, dy, scale, scale_pow, size, -2 * alpha * beta / size)
    assert dx.dtype == x.dtype
    np.testing.assert_array_equal(dx, acc)


IM2COLS = [  # (H, W), kernel, stride, pad, dilation: the compiled im2col takes any of them
    ((27, 27), (5, 5), (1, 1), (2, 2), (1, 1)),   # CaffeNet conv2
    ((12, 12), (5, 5), (1, 1), (0, 0), (1, 1)),   # LeNet conv2
    ((31, 31), (11, 11), (4, 4), (0, 0), (1, 1)), # strided
    ((9, 8), (3, 2), (2, 1), (1, 3), (2, 3)),     # dilation, rectangular, pad wider than kernel
    ((4, 5), (3, 3), (1, 1), (4, 4), (1, 1)),     # rows and columns entirely in the padding
]


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('hw, kernel, stride, pad, dilation', IM2COLS)
def test_im2col_kernel_matches_xp(dtype, hw, kernel, stride, pad, dilation):
    """The compiled im2col copies exactly what im2col's padded window view holds, for any
    range of images (the convolution's chunks)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3) + hw).astype(dtype)
    out = conv_output_shape(hw, kernel, stride, pad, dilation)
    ref = im2col(x, kernel, stride, pad, dilation, out)
    cols = np.full(ref.shape, np.nan, dtype)
    np.testing.assert_array_equal(cpu_kernels.im2col(x, 0, cols, stride, pad, dilation), ref)
    part = np.full((3,) + kernel + (2,) + out, np.nan, dtype)      # images 2 and 3
    cpu_kernels.im2col(x, 2, part, stride, pad, dilation)
    np.testing.assert_array_equal(part, ref[:, :, :, 2:4])


def _lstm_arrays(rng, dtype, streams=3, hidden=5):
    cont = np.repeat(rng.integers(0, 2, (streams, 1)), hidden, axis=1).astype(dtype)
    z = rng.standard_normal((streams, 4 * hidden)).astype(dtype)
    c_prev = rng.standard_normal((streams, hidden)).astype(dtype)
    return z, c_prev, cont


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_lstm_kernels_match_xp(dtype, monkeypatch):
    """One LSTM step forward and backward: the compiled kernels give the numbers of the
    NumPy twins (recurrent._lstm_step_forward without the kernel, _lstm_backward_factors
    + _lstm_step_backward) bit for bit; cont holds a sequence start (0) and continuations."""
    from caffelite.layers import recurrent
    rng = np.random.default_rng(5)
    z, c_prev, cont = _lstm_arrays(rng, dtype)
    streams, hidden = c_prev.shape
    scale = recurrent._gate_scale(hidden, dtype, np)

    def step(fused):
        monkeypatch.setattr(recurrent, '_fused', lambda *a: fused)
        acts = z.copy()
        cp, c, tc, h, tmp = (np.empty_like(c_prev) for _ in range(5))
        recurrent._lstm_step_forward(np, acts, scale, c_prev, cont, cp, c, tc, h, tmp)
        return acts, cp, c, tc, h

    fused, twin = step(True), step(False)
    for a, b in zip(fused, twin):
        np.testing.assert_array_equal(a, b)
    acts, cp, _, tc, _ = twin
    acts4 = acts.reshape(streams, 4, hidden)
    dh = rng.standard_normal((streams, hidden)).astype(dtype)
    dc = rng.standard_normal((streams, hidden)).astype(dtype)
    q = np.empty((1, streams, 4, hidden), dtype)
    po, fc = np.empty((1, streams, hidden), dtype), np.empty((1, streams, hidden), dtype)
    recurrent._lstm_backward_factors(np, acts4[None], cp[None], tc[None], cont[None], q, po, fc)
    dz_ref, dc_ref = np.empty((streams, 4, hidden), dtype), dc.copy()
    recurrent._lstm_step_backward(np, dh.copy(), dc_ref, q[0], po[0], fc[0], dz_ref,
                                  np.empty_like(dh))
    dz, dc_kernel = np.empty_like(dz_ref), dc.copy()
    cpu_kernels.lstm_step_backward(dh, dc_kernel, acts4, cp, tc, cont, dz)
    np.testing.assert_array_equal(dz, dz_ref)
    np.testing.assert_array_equal(dc_kernel, dc_ref)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('in_place', [False, True])
def test_relu_forward_kernel_matches_numpy(dtype, in_place):
    x = np.random.default_rng(6).standard_normal((3, 4, 5)).astype(dtype)
    x.flat[:4] = [np.nan, -0.0, 0.0, -np.inf]
    y_ref, mask_ref = np.maximum(x, 0), x > 0
    y = x if in_place else np.full_like(x, 7)
    mask = np.zeros(x.shape, bool)
    cpu_kernels.relu_forward(x, y, mask)
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_array_equal(y, y_ref)                   # NaN where x is NaN
    assert not np.signbit(y).any()                            # -0 becomes +0, as np.maximum



@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_scatter_add_rows_matches_add_at(dtype):
    """Embed's weight gradient: repeated indices accumulate in the order np.add.at uses."""
    rng = np.random.default_rng(8)
    target = rng.standard_normal((6, 4)).astype(dtype)
    indices = rng.integers(0, 6, size=(5, 7))
    rows = rng.standard_normal((35, 4)).astype(dtype)
    ref = target.copy()
    np.add.at(ref, indices.reshape(-1), rows)
    cpu_kernels.scatter_add_rows(target, indices, rows)
    np.testing.assert_array_equal(target, ref)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_lstm_layer_gives_the_same_numbers_with_and_without_kernels(dtype, monkeypatch):
    """A whole LSTM layer (a sequence restarting mid-batch, carried state, a second pass):
    the compiled step kernels and the NumPy path give identical outputs and gradients."""
    from backend_testing import use_backend
    from layer_testing import blob, make, tops
    from caffelite.layers import recurrent
    rng = np.random.default_rng(9)
    steps, streams, dim = 5, 3, 4
    x = rng.standard_normal((steps, streams, dim))
    cont = np.ones((steps, streams))
    cont[0] = 0
    cont[2, 1] = 0                                   # stream 1 starts a new sequence at t = 2
    dtop = rng.standard_normal((steps, streams, 6))

    calls = []
    for name in ('lstm_cell', 'lstm_step_backward'):
        kernel = getattr(cpu_kernels, name)
        monkeypatch.setattr(cpu_kernels, name,
                            lambda *a, _k=kernel, _n=name: (calls.append(_n), _k(*a))[1])

    def run(fused):
        monkeypatch.setattr(cpu_kernels, 'loaded', lambda: fused)
        monkeypatch.setattr(recurrent, '_fused', recurrent._fused if fused else lambda *a: False)
        layer = make('type: "LSTM" recurrent_param { num_output: 6 '
                     'weight_filler { type: "uniform" min: -0.5 max: 0.5 } }', dtype=dtype)
        bottom, top = [blob(x, dtype), blob(cont, dtype)], tops(1, dtype)
        layer.set_up(bottom, top)
        for blob_ in layer.blobs:
            blob_.data[...] = np.random.default_rng(10).standard_normal(blob_.shape)
        out = []
        for _ in range(2):                           # the second pass starts from h_T, c_T
            layer.forward(bottom, top)
            top[0].diff[...] = dtop
            for blob_ in layer.blobs:
                blob_.diff[...] = 0
            layer.backward(top, [True, False], bottom)
            out += [top[0].data.copy(), bottom[0].diff.copy()] + [b.diff.copy()
                                                                 for b in layer.blobs]
        return out

    assert cpu_kernels.available()
    with use_backend('numpy'):                       # CPU mode, also under CAFFELITE_FAKE_GPU=1
        with_kernels = run(True)
        assert calls.count('lstm_cell') == calls.count('lstm_step_backward') == 2 * steps
        without = run(False)
    for a, b in zip(with_kernels, without):
        np.testing.assert_array_equal(a, b)
    assert len(calls) == 4 * steps                   # the second run used none
