"""im2col / col2im for any number of spatial axes, written once against ``xp``.

Shapes (S spatial axes, ``k`` the kernel shape, ``o`` the output shape)::

    x     : N x C x i_1 x ... x i_S
    cols  : C x k_1 x ... x k_S x N x o_1 x ... x o_S      (contiguous)

so ``cols.reshape(C * prod(k), N * prod(o))`` is Caffe's column buffer for the whole batch at
once (Caffe's rows are ordered channel, then kernel offsets; its columns are output positions,
here with the batch folded in), and a convolution is one GEMM per group over the whole batch.

Output positions along an axis: ``o = (i + 2 p - (d (k - 1) + 1)) // s + 1``; the window of
output ``j`` reads input ``j s - p + t d`` for kernel offset ``t`` (positions outside the input
read zero).

``im2col`` copies one strided view of the zero-padded input (no Python loop); ``col2im``
accumulates into the padded input with one strided add per kernel offset (windows overlap, so
the offsets must be summed one at a time).

Column buffers are large (C k^2 times the input) and short-lived, so the convolution layers
keep them in ``workspace`` buffers reused from call to call (Caffe's col_buffer_, but shared
by all layers of a thread):
freshly allocated arrays of that size cost more in page faults than the copy itself.
"""
import itertools
import threading

import numpy as np

from ..backend import get_array_module
from . import cpu_kernels

_workspaces = threading.local()


def workspace(xp, shape, dtype, slot):
    """A scratch array of ``shape`` whose memory is reused by the next call for the same
    ``slot`` (per thread, backend and dtype). Its contents are garbage; the caller must be
    done with it before the slot is requested again."""
    cache = getattr(_workspaces, 'buffers', None)
    if cache is None:
        cache = _workspaces.buffers = {}
    dtype = np.dtype(dtype)
    device = xp.cuda.runtime.getDevice() if xp.__name__ == 'cupy' else None
    key = (xp.__name__, device, dtype.str, slot)
    size = int(np.prod(shape, dtype=np.int64))
    buf = cache.get(key)
    if buf is None or buf.size < size:
        cache.pop(key, None)  # free the old one first
        buf = cache[key] = xp.empty(max(size, 1), dtype=dtype)
    return buf[:size].reshape(shape)


def clear_workspaces():
    """Release this thread's scratch buffers."""
    _workspaces.buffers = {}


def conv_output_shape(in_shape, kernel, stride, pad, dilation):
    """Caffe's convolution output size per spatial axis (floor division); may be <= 0."""
    return tuple((i + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for i, k, s, p, d in zip(in_shape, kernel, stride, pad, dilation))


def deconv_output_shape(in_shape, kernel, stride, pad, dilation):
    """Caffe's deconvolution output size: ``s (i - 1) + d (k - 1) + 1 - 2 p``."""
    return tuple(s * (i - 1) + d * (k - 1) + 1 - 2 * p
                 for i, k, s, p, d in zip(in_shape, kernel, stride, pad, dilation))


def pad_spatial(x, pad, value=0, after=None, slot=None):
    """``x`` (N x C x spatial) with ``pad[a]`` cells of ``value`` before each spatial axis and
    ``after[a]`` (default ``pad[a]``) after it. Returns ``x`` itself when nothing is added;
    with ``slot``, the result lives in that workspace."""
    after = pad if after is None else after
    if not any(pad) and not any(after):
        return x
    xp = get_array_module(x)
    lead = x.shape[:2]
    shape = lead + tuple(i + p + q for i, p, q in zip(x.shape[2:], pad, after))
    if slot is None:
        out = xp.full(shape, value, dtype=x.dtype)
    else:
        out = workspace(xp, shape, x.dtype, slot)
        out.fill(value)
    out[(Ellipsis,) + tuple(slice(p, p + i) for p, i in zip(pad, x.shape[2:]))] = x
    return out


def window_view(xpad, kernel, stride, dilation, out_shape, channel_first=True):
    """A strided view of the padded input holding every window.

    ``xpad``: N x C x (padded spatial). Returns C x k... x N x o... (``channel_first``) or
    N x C x o... x k... . No copy.
    """
    xp = get_array_module(xpad)
    sn, sc = xpad.strides[:2]
    sp = xpad.strides[2:]
    k_strides = tuple(st * d for st, d in zip(sp, dilation))
    o_strides = tuple(st * s for st, s in zip(sp, stride))
    if channel_first:
        shape = (xpad.shape[1],) + tuple(kernel) + (xpad.shape[0],) + tuple(out_shape)
        strides = (sc,) + k_strides + (sn,) + o_strides
    else:
        shape = xpad.shape[:2] + tuple(out_shape) + tuple(kernel)
        strides = (sn, sc) + o_strides + k_strides
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


def offset_slices(offset, stride, dilation, out_shape):
    """Slices of the padded spatial axes read by kernel offset ``offset`` at every output."""
    return tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                 for t, s, d, o in zip(offset, stride, dilation, out_shape))


def im2col(x, kernel, stride, pad, dilation, out_shape, slot=None):
    """x: N x C x spatial -> cols: C x k... x N x o... (contiguous, a copy; in workspace
    ``slot`` when given)."""
    xp = get_array_module(x)
    xpad = pad_spatial(x, pad, slot=None if slot is None else slot + '.pad')
    view = window_view(xpad, kernel, stride, dilation, out_shape)
    if slot is None:
        return xp.ascontiguousarray(view)
    cols = workspace(xp, view.shape, x.dtype, slot)
    cols[...] = view
    return cols


def col2im(cols, x_shape, kernel, stride, pad, dilation, out_shape, slot=None, out=None):
    """The adjoint of ``im2col``: sums each column entry back onto the input cell it was read
    from. cols: C x k... x N x o...; returns a contiguous N x C x spatial array: ``out``
    (C-contiguous, x_shape's size) when given, else a new one (the accumulator lives in
    workspace ``slot`` when given). 2-D on NumPy: one compiled pass (cpu_kernels.col2im, the
    same sums in the same order), else ``col2im_xp``."""
    if len(kernel) == 2 and cpu_kernels.usable(cols):
        return cpu_kernels.col2im(cols, x_shape, stride, pad, dilation, out)
    return col2im_xp(cols, x_shape, kernel, stride, pad, dilation, out_shape, slot, out)


def col2im_xp(cols, x_shape, kernel, stride, pad, dilation, out_shape, slot=None, out=None):
    """``col2im`` as one strided add per kernel offset (any backend, any dimension)."""
    xp = get_array_module(cols)
    n, c = x_shape[:2]
    spatial = tuple(x_shape[2:])
    padded = tuple(i + 2 * p for i, p in zip(spatial, pad))
    # Accumulate in C x N layout (the order of cols), transpose once at the end.
    if slot is None:
        acc = xp.zeros((c, n) + padded, dtype=cols.dtype)
    else:
        acc = workspace(xp, (c, n) + padded, cols.dtype, slot)
        acc.fill(0)
    full = (slice(None), slice(None))
    for offset in kernel_offsets(kernel):
        acc[full + offset_slices(offset, stride, dilation, out_shape)] += cols[(slice(None),) + offset]
    crop = tuple(slice(p, p + i) for p, i in zip(pad, spatial))
    cropped = acc[full + crop].swapaxes(0, 1)
    if out is None:
        return cropped.copy()  # always a copy: acc may be a workspace
    out = out.reshape(x_shape)
    out[...] = cropped
    return out


def kernel_offsets(kernel):
    """All kernel offsets in row-major order (Caffe's order within a window)."""
    return itertools.product(*(range(k) for k in kernel))
