"""Compiled CPU kernels (Numba) for the loops NumPy can only run as many strided passes.

Each kernel has an ``xp`` twin in vision.py / im2col.py: the twin is what CuPy runs, what
runs without Numba, and what the tests compare the kernel with. The kernels give the same
numbers bit for bit (same comparisons, same order of additions):

- ``max_pool_backward``: scatters each top diff to its argmax cell, one pass; outputs are
  visited in reverse row-major order so that every input cell sums its contributions in the
  xp twin's order (ascending window cell index);
- ``col2im``: sums the column buffer back onto the input, one pass, kernel offsets outermost
  as in the xp twin;
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
    for b in range(n):
        for ch in range(c):
            src, cell, out = dy[b, ch], arg[b, ch], dx[b, ch]
            for i in range(oh - 1, -1, -1):
                top = i * sh - ph
                for j in range(ow - 1, -1, -1):
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


@_jit
def _col2im(cols, dx, sh, sw, ph, pw, dh, dw):
    c, kh, kw, n, oh, ow = cols.shape
    h, w = dx.shape[2], dx.shape[3]
    for ch in range(c):
        for b in range(n):
            for u in range(kh):
                for v in range(kw):
                    for i in range(oh):
                        hh = i * sh - ph + u * dh
                        if hh < 0 or hh >= h:
                            continue
                        for j in range(ow):
                            ww = j * sw - pw + v * dw
                            if 0 <= ww < w:
                                dx[b, ch, hh, ww] += cols[ch, u, v, b, i, j]


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
