"""Compiled CPU kernels (Numba) for the loops NumPy can only run as many strided passes.

Each kernel has an ``xp`` twin in vision.py / im2col.py: the twin is what CuPy runs, what
runs without Numba, and what the tests compare the kernel with. The kernels give the same
numbers bit for bit (same comparisons, same order of additions):

- ``max_pool``: each window's maximum and its argmax, one compiled loop per kernel and
  stride (``_specialized``: with the window's size known LLVM unrolls and vectorizes it);
- ``max_pool_backward``: scatters each top diff to its argmax cell, one pass over the top in
  row-major order, as Caffe does (the xp twin adds the window cells in descending order,
  which sums each input cell's contributions in the same order);
- ``im2col``: copies each window row of the input into the column buffer, one pass, zeros
  outside the input (no padded copy of the input first);
- ``col2im``: sums the column buffer back onto the input, one pass, kernel offsets outermost
  as in the xp twin;
- ``lstm_cell`` / ``lstm_step_backward``: one LSTM step's gate arithmetic after the tanh
  (recurrent._lstm_step_forward / _lstm_backward_factors + _lstm_step_backward are the
  twins, the same operations in the same order); the tanh stays NumPy's, as the power does
  for LRN. They save 2-3% of an LSTM's time and its T x N x 6H factor buffers, less than
  Numba's import costs in memory, so the LSTM runs them only where Numba is already loaded
  (``loaded``: by a convolution or pooling kernel, in LRCN's nets) and never imports it;
- ``scatter_add_rows``: target[indices[m]] += rows[m] in m order, as ``np.add.at`` (several
  times slower for rows) sums them;
- ``relu_forward``: ReLU's mask and output in one pass (NumPy needs two);
- ``lrn_scale`` / ``lrn_backward``: ACROSS_CHANNELS LRN's window sums over channels fused with
  the element-wise steps around them (vision.LRNLayer's NumPy code is the twin); the power
  scale^-beta stays NumPy's (its SIMD pow is not libm's).

Numba is optional and imported on first use (it costs ~60 MB of memory to import and
~50 MB more once a kernel has run): without it, for CuPy arrays, or with
``CAFFELITE_NUMBA=0``, ``usable`` is False and the layers run their xp code. Compiled code is
cached on disk (``cache=True``).
"""
import os

import numpy as np

_compiled = {}


def available():
    """True when Numba can be imported and is not disabled by ``CAFFELITE_NUMBA=0``."""
    if 'numba' not in _compiled:
        try:
            if os.environ.get('CAFFELITE_NUMBA', '1') == '0':
                raise ImportError('disabled by CAFFELITE_NUMBA=0')
            import numba
        except ImportError:
            numba = None
        _compiled['numba'] = numba
    return _compiled['numba'] is not None


def loaded():
    """True when Numba has already been imported here (by an earlier kernel's first use)."""
    return _compiled.get('numba') is not None


def usable(*arrays):
    """True when the kernels can run on ``arrays`` (NumPy, float32/float64, Numba present)."""
    return all(isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64)
               for a in arrays) and available()


def _jit(function):
    """``function`` compiled by Numba on its first call (callers check ``usable`` first)."""
    def compiled(*args):
        kernel = _compiled.get(function)
        if kernel is None:
            if not available():
                raise RuntimeError('cpu_kernels needs Numba (check usable() first)')
            kernel = _compiled[function] = _compiled['numba'].njit(
                cache=True, nogil=True)(function)
        return kernel(*args)
    return compiled


def _specialized(factory, *constants):
    """``factory(*constants)`` compiled by Numba, once per constants: the constants are the
    closure's, so LLVM unrolls the loops they bound (pooling's window: 2-6x faster than the
    same loops over run-time bounds). Numba caches each on disk apart."""
    key = (factory,) + constants
    kernel = _compiled.get(key)
    if kernel is None:
        if not available():
            raise RuntimeError('cpu_kernels needs Numba (check usable() first)')
        kernel = _compiled[key] = _compiled['numba'].njit(cache=True, nogil=True)(
            factory(*constants))
    return kernel


def _cleared(out, shape, dtype):
    """``out`` seen as ``shape`` and zeroed, or a new zero array."""
    if out is None:
        return np.zeros(shape, dtype=dtype)
    out = out.reshape(shape)
    out.fill(0)
    return out


@_jit
def _max_pool_backward(dy, arg, dx, row_of, col_of, sh, sw, ph, pw):
    n, c, h, w = dx.shape
    oh, ow = dy.shape[2], dy.shape[3]
    for r in range(n * c):  # one loop over (image, channel), the form LLVM compiles best
        b = r // c
        ch = r - b * c
        src, cell, out = dy[b, ch], arg[b, ch], dx[b, ch]
        for i in range(oh):
            top = i * sh - ph
            for j in range(ow):
                a = cell[i, j]
                hh = top + row_of[a]
                ww = j * sw - pw + col_of[a]
                if 0 <= hh < h and 0 <= ww < w:
                    out[hh, ww] += src[i, j]


def max_pool_backward(dy, arg, kernel, stride, pad, x_shape, out=None):
    """The bottom diff of MAX pooling (N x C x H x W), into ``out`` (C-contiguous) if given;
    see vision.max_pool_backward_xp. The window cell's row and column come from two small
    tables (an integer division per element cost more than the rest of the pass)."""
    dx = _cleared(out, x_shape, dy.dtype)
    cells = np.arange(kernel[0] * kernel[1])
    _max_pool_backward(np.ascontiguousarray(dy), np.ascontiguousarray(arg), dx,
                       cells // kernel[1], cells % kernel[1], stride[0], stride[1],
                       pad[0], pad[1])
    return dx


# Windows of fewer cells than this get the compiled max pooling (their argmax is a uint8):
# LLVM's compile time grows steeply with the unrolled window (~0.4 s up to 20 x 20 cells here,
# 1.8 s at 24 x 24, 350 s at 32 x 32); larger windows run the NumPy twin.
MAX_POOL_CELLS = 256


def _max_pool_for(kh, kw, sh, sw):
    def pool(x, y, arg, lowest):
        planes, oh, ow = y.shape
        for r in range(planes * oh):  # one loop over (plane, output row)
            p = r // oh
            i = r - p * oh
            out, cell = y[p, i], arg[p, i]
            for j in range(ow):
                best, a = lowest, 0
                for u in range(kh):
                    row = x[p, i * sh + u]
                    for v in range(kw):
                        value = row[j * sw + v]
                        if value > best:
                            best, a = value, u * kw + v
                out[j], cell[j] = best, a
    return pool


def max_pool(xpad, kernel, stride, y, arg):
    """MAX pooling of ``xpad`` (N x C x H x W, already padded with -inf so that every window
    lies inside it) into y and arg (N x C x out_h x out_w, C-contiguous): y the largest cell
    of each window that is not NaN (-inf where there is none), arg the row-major index in the
    window of the first such cell (0 where there is none); vision.max_pool_xp is the twin.
    For windows of fewer than MAX_POOL_CELLS cells."""
    n, c, h, w = xpad.shape
    oh, ow = y.shape[2:]
    kernel_fn = _specialized(_max_pool_for, kernel[0], kernel[1], stride[0], stride[1])
    kernel_fn(np.ascontiguousarray(xpad).reshape(n * c, h, w), y.reshape(n * c, oh, ow),
              arg.reshape(n * c, oh, ow), xpad.dtype.type(-np.inf))
    return y, arg


@_jit
def _im2col(x, cols, first, sh, sw, ph, pw, dh, dw):
    c, kh, kw, n, oh, ow = cols.shape
    h, w = x.shape[2], x.shape[3]
    # One loop over (channel, kernel row), not two: LLVM vectorizes the row copy below
    # (3-5x faster here) in this form and not in the nested one.
    for r in range(c * kh):
        ch = r // kh
        u = r - ch * kh
        for v in range(kw):
            for b in range(n):
                src = x[first + b, ch]
                dst = cols[ch, u, v, b]
                for i in range(oh):
                    hh = i * sh - ph + u * dh
                    row = dst[i]
                    if hh < 0 or hh >= h:
                        for j in range(ow):
                            row[j] = 0
                        continue
                    zz = src[hh]
                    for j in range(ow):
                        ww = j * sw - pw + v * dw
                        row[j] = zz[ww] if 0 <= ww < w else 0


def im2col(x, first, cols, stride, pad, dilation):
    """2-D im2col of images first.. of x (N x C x H x W, C-contiguous) into ``cols``
    (C x kh x kw x n x oh x ow, C-contiguous), zero outside the input, in one pass
    (im2col.im2col's copy of the zero-padded window view is the twin)."""
    _im2col(x, cols, first, stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1])
    return cols


@_jit
def _col2im(cols, dx, sh, sw, ph, pw, dh, dw):
    c, kh, kw, n, oh, ow = cols.shape
    h, w = dx.shape[2], dx.shape[3]
    for r in range(c * n):  # one loop, not two: the form LLVM vectorizes (as in _im2col)
        ch = r // n
        b = r - ch * n
        out = dx[b, ch]
        for u in range(kh):
            for v in range(kw):
                src = cols[ch, u, v, b]
                for i in range(oh):
                    hh = i * sh - ph + u * dh
                    if hh < 0 or hh >= h:
                        continue
                    zz = out[hh]
                    row = src[i]
                    for j in range(ow):
                        ww = j * sw - pw + v * dw
                        if 0 <= ww < w:
                            zz[ww] += row[j]


def col2im(cols, x_shape, stride, pad, dilation, out=None):
    """2-D col2im: cols C x kh x kw x N x oh x ow -> N x C x H x W, into ``out``
    (C-contiguous, cleared first) when given, else a new array (im2col.col2im)."""
    dx = _cleared(out, x_shape, cols.dtype)
    _col2im(cols, dx, stride[0], stride[1], pad[0], pad[1],
            dilation[0], dilation[1])
    return dx


@_jit
def _lrn_scale(x, scale, size, coeff, k):
    n, c, m = x.shape
    half = (size - 1) // 2
    for b in range(n):
        for ch in range(c):
            row = scale[b, ch]
            row[:] = 0
            for cc in range(max(0, ch - half), min(c, ch - half + size)):
                src = x[b, cc]
                for s in range(m):
                    row[s] += src[s] * src[s]
            for s in range(m):
                row[s] = row[s] * coeff + k


def lrn_scale(x, size, coeff, k):
    """ACROSS_CHANNELS LRN's scale = k + coeff * (sum of x^2 over ``size`` centred channels,
    zero padded) for x N x C x ... (C-contiguous), one pass."""
    scale = np.empty_like(x)
    n, c = x.shape[:2]
    _lrn_scale(x.reshape(n, c, -1), scale.reshape(n, c, -1), size, x.dtype.type(coeff),
               x.dtype.type(k))
    return scale


@_jit
def _lrn_backward(x, dy, scale, scale_pow, dx, size, coeff):
    n, c, m = x.shape
    half = (size - 1) // 2
    ratio = np.empty((c, m), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            for s in range(m):
                ratio[ch, s] = dy[b, ch, s] * x[b, ch, s] * scale_pow[b, ch, s] / scale[b, ch, s]
        for ch in range(c):
            row = dx[b, ch]
            row[:] = 0
            for cc in range(max(0, ch - half), min(c, ch - half + size)):
                src = ratio[cc]
                for s in range(m):
                    row[s] += src[s]
            for s in range(m):
                row[s] = row[s] * x[b, ch, s] * coeff + dy[b, ch, s] * scale_pow[b, ch, s]


def lrn_backward(x, dy, scale, scale_pow, size, coeff):
    """ACROSS_CHANNELS LRN's bottom diff, dy * scale_pow + coeff * x * (window sum over
    ``size`` channels of dy * x * scale_pow / scale), with coeff = -2 alpha beta / size; x, dy,
    scale, scale_pow N x C x ... (C-contiguous)."""
    dx = np.empty_like(x)
    n, c = x.shape[:2]
    flat = [np.ascontiguousarray(a).reshape(n, c, -1) for a in (x, dy, scale, scale_pow)]
    _lrn_backward(*flat, dx.reshape(n, c, -1), size, x.dtype.type(coeff))
    return dx


@_jit
def _lstm_cell(z, c_prev, cont, cp, c, half):
    n, hidden = c.shape
    for s in range(n):
        for k in range(3 * hidden):
            z[s, k] = z[s, k] * half + half
        for k in range(hidden):
            p = c_prev[s, k] * cont[s, k]
            cp[s, k] = p
            c[s, k] = z[s, hidden + k] * p + z[s, k] * z[s, 3 * hidden + k]


def lstm_cell(z, c_prev, cont, cp, c):
    """One LSTM step after ``z`` (N x 4H) went through tanh (pre-activations of i, f, o
    scaled by 1/2, see recurrent._gate_scale): the sigmoid gates i, f, o = z / 2 + 1/2 in
    place, cp = cont * c_prev, c = f cp + i g; all N x H arrays C-contiguous."""
    _lstm_cell(z, c_prev, cont, cp, c, z.dtype.type(0.5))


@_jit
def _lstm_step_backward(dh, dc, acts, cp, tc, cont, dz, one):
    n, hidden = dh.shape
    for s in range(n):
        for k in range(hidden):
            i, f, o, g = acts[s, 0, k], acts[s, 1, k], acts[s, 2, k], acts[s, 3, k]
            t, d = tc[s, k], dh[s, k]
            c = dc[s, k] + d * ((one - t * t) * o)
            dz[s, 0, k] = ((one - i) * i * g) * c
            dz[s, 1, k] = ((one - f) * f * cp[s, k]) * c
            dz[s, 2, k] = ((one - o) * o * t) * d
            dz[s, 3, k] = ((one - g * g) * i) * c
            dc[s, k] = c * (f * cont[s, k])


def lstm_step_backward(dh, dc, acts, cp, tc, cont, dz):
    """One reverse LSTM step: from dh (the gradient reaching h_t) and dc (the one reaching c_t
    from later steps), with this step's activations ``acts`` (N x 4 x H: i, f, o, g),
    cp = cont c_{t-1} and tc = tanh(c_t): dz (N x 4 x H) = the gradient of the gate
    pre-activations; dc becomes the gradient reaching c_{t-1}. All arrays C-contiguous."""
    _lstm_step_backward(dh, dc, acts, cp, tc, cont, dz, dh.dtype.type(1))


@_jit
def _relu_forward(x, y, mask, zero):
    for k in range(x.size):
        v = x[k]
        positive = v > 0
        mask[k] = positive
        y[k] = v if positive or v != v else zero     # NaN stays NaN, as in np.maximum


def relu_forward(x, y, mask):
    """ReLU with slope 0 in one pass: mask = x > 0 and y = max(x, 0) (NaN kept, -0 -> +0, as
    np.maximum(x, 0)); x, y (may be x itself) and mask (bool) C-contiguous, of one size."""
    _relu_forward(x.reshape(-1), y.reshape(-1), mask.reshape(-1), x.dtype.type(0))


@_jit
def _scatter_add_rows(target, indices, rows):
    for m in range(indices.size):
        out, src = target[indices[m]], rows[m]
        for k in range(src.size):
            out[k] += src[k]


def scatter_add_rows(target, indices, rows):
    """target (V x D, C-contiguous)[indices[m]] += rows[m] (M x D) for m = 0, 1, ...: repeated
    indices accumulate in order; indices are integers in [0, V)."""
    _scatter_add_rows(target, np.ascontiguousarray(indices).reshape(-1),
                      np.ascontiguousarray(rows).reshape(indices.size, -1))
