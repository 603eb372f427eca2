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
"""
import itertools

from ..backend import get_array_module


def conv_output_shape(in_shape, kernel, stride, pad, dilation):
    """Caffe's convolution output size per spatial axis (floor division); may be <= 0."""
    return tuple((i + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for i, k, s, p, d in zip(in_shape, kernel, stride, pad, dilation))


def deconv_output_shape(in_shape, kernel, stride, pad, dilation):
    """Caffe's deconvolution output size: ``s (i - 1) + d (k - 1) + 1 - 2 p``."""
    return tuple(s * (i - 1) + d * (k - 1) + 1 - 2 * p
                 for i, k, s, p, d in zip(in_shape, kernel, stride, pad, dilation))


def pad_spatial(x, pad, value=0, after=None):
    """``x`` (N x C x spatial) with ``pad[a]`` cells of ``value`` before each spatial axis and
    ``after[a]`` (default ``pad[a]``) after it. Returns ``x`` itself when nothing is added."""
    after = pad if after is None else after
    if not any(pad) and not any(after):
        return x
    xp = get_array_module(x)
    lead = x.shape[:2]
    shape = lead + tuple(i + p + q for i, p, q in zip(x.shape[2:], pad, after))
    out = xp.full(shape, value, dtype=x.dtype)
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


def im2col(x, kernel, stride, pad, dilation, out_shape):
    """x: N x C x spatial -> cols: C x k... x N x o... (contiguous, a copy)."""
    xp = get_array_module(x)
    xpad = pad_spatial(x, pad)
    return xp.ascontiguousarray(window_view(xpad, kernel, stride, dilation, out_shape))


def col2im(cols, x_shape, kernel, stride, pad, dilation, out_shape):
    """The adjoint of ``im2col``: sums each column entry back onto the input cell it was read
    from. cols: C x k... x N x o...; returns a contiguous N x C x spatial array."""
    xp = get_array_module(cols)
    n, c = x_shape[:2]
    spatial = tuple(x_shape[2:])
    padded = tuple(i + 2 * p for i, p in zip(spatial, pad))
    # Accumulate in C x N layout (the order of cols), transpose once at the end.
    acc = xp.zeros((c, n) + padded, dtype=cols.dtype)
    full = (slice(None), slice(None))
    for offset in kernel_offsets(kernel):
        acc[full + offset_slices(offset, stride, dilation, out_shape)] += cols[(slice(None),) + offset]
    crop = tuple(slice(p, p + i) for p, i in zip(pad, spatial))
    return xp.ascontiguousarray(acc[full + crop].swapaxes(0, 1))


def kernel_offsets(kernel):
    """All kernel offsets in row-major order (Caffe's order within a window)."""
    return itertools.product(*(range(k) for k in kernel))
