"""Vision layers: Convolution, Deconvolution, Im2col, Pooling, SPP, LRN (Caffe 1.0 semantics).

Convolution runs im2col and one GEMM per group for each chunk of images (a few MB of columns,
still in cache for the GEMM); Deconvolution runs im2col over the whole batch and one GEMM per
group (see ``im2col.py`` for the column layout); Pooling and LRN loop over kernel (window)
offsets only, each step a vectorised operation over the whole batch.
"""
import math

import numpy as np

from .. import backend
from ..backend import get_array_module
from ..errors import LayerError
from ..proto import caffelite_pb2 as pb
from . import cpu_kernels
from .base import Layer, register
from .gemm import gemm_accumulate, output_array
from .im2col import (col2im, conv_output_shape, deconv_output_shape, im2col, kernel_offsets,
                     pad_spatial, window_view, workspace)


# ------------------------------------------------------------------------------------------
# Convolution geometry (Caffe's BaseConvolutionLayer::LayerSetUp rules)
# ------------------------------------------------------------------------------------------
def _per_axis(values, num_axes, name, default):
    """A repeated field given 0 (default), 1 (all axes) or ``num_axes`` times."""
    values = list(values)
    if not values:
        if default is None:
            raise LayerError(f'{name} must be specified')
        return (default,) * num_axes
    if len(values) == 1:
        return (int(values[0]),) * num_axes
    if len(values) == num_axes:
        return tuple(int(v) for v in values)
    raise LayerError(f'{name} must be specified once, or once per spatial dimension '
                     f'({name} specified {len(values)} times; {num_axes} spatial dims)')


def _hw_or_repeated(cp, name, repeated, num_axes, default):
    """``name`` from ``name_h``/``name_w`` (2-D only) or the ``repeated`` field."""
    has_h, has_w = cp.HasField(name + '_h'), cp.HasField(name + '_w')
    if has_h or has_w:
        if num_axes != 2:
            raise LayerError(f'{name}_h & {name}_w can only be used for 2D convolution')
        if len(getattr(cp, repeated)):
            raise LayerError(f'Either {repeated} or {name}_h/w should be specified; not both')
        if name != 'pad' and not (has_h and has_w):
            # Caffe reads both; the unset one is 0, which it then rejects.
            raise LayerError(f'both {name}_h and {name}_w are required')
        return (int(getattr(cp, name + '_h')), int(getattr(cp, name + '_w')))
    return _per_axis(getattr(cp, repeated), num_axes, repeated, default)


def conv_geometry(cp, num_axes):
    """(kernel, stride, pad, dilation) tuples for ``num_axes`` spatial axes."""
    kernel = _hw_or_repeated(cp, 'kernel', 'kernel_size', num_axes, None if num_axes else 1)
    if any(k <= 0 for k in kernel):
        raise LayerError('Filter dimensions must be nonzero')
    stride = _hw_or_repeated(cp, 'stride', 'stride', num_axes, 1)
    if any(s <= 0 for s in stride):
        raise LayerError('Stride dimensions must be nonzero')
    pad = _hw_or_repeated(cp, 'pad', 'pad', num_axes, 0)
    dilation = _per_axis(cp.dilation, num_axes, 'dilation', 1)
    if any(d <= 0 for d in dilation):
        raise LayerError('Dilation dimensions must be nonzero')
    return kernel, stride, pad, dilation


class _SpatialLayout:
    """Reads a blob as N x C x spatial, where N folds the axes before the channel axis."""

    def __init__(self, blob_shape, channel_axis):
        self.outer = tuple(blob_shape[:channel_axis])
        self.num = int(np.prod(self.outer, dtype=np.int64))
        self.channels = blob_shape[channel_axis]
        self.spatial = tuple(blob_shape[channel_axis + 1:])

    def as_ncs(self, array):
        return array.reshape((self.num, self.channels) + self.spatial)

    def blob_shape(self, channels, spatial):
        return self.outer + (channels,) + tuple(spatial)


class _BaseConvolution(Layer):
    """Shared by Convolution and Deconvolution: parameters, weights, reshape.

    Parameter blobs (Caffe's order and shapes): weight ``conv_out x conv_in / group x k...``
    (Convolution: conv_out = num_output, conv_in = C; Deconvolution the reverse) and, with
    ``bias_term``, bias ``num_output``. Each bottom i gives top i with the same weights.
    """
    min_bottom = 1
    min_top = 1
    reverse_dimensions = False

    def setup(self, bottom, top):
        if len(bottom) != len(top):
            raise LayerError(f'Number of bottom and top blobs must match '
                             f'({len(bottom)} bottoms, {len(top)} tops)')
        cp = self.layer_param.convolution_param
        try:
            self.channel_axis = bottom[0].canonical_axis(cp.axis)
        except IndexError as err:
            raise LayerError(str(err)) from None
        self.num_spatial_axes = bottom[0].num_axes - self.channel_axis - 1
        self.kernel, self.stride, self.pad, self.dilation = \
            conv_geometry(cp, self.num_spatial_axes)
        self.channels = bottom[0].shape[self.channel_axis]
        self.num_output = int(cp.num_output)
        if self.num_output <= 0:
            raise LayerError('num_output must be positive')
        self.group = int(cp.group)
        if self.group <= 0:
            raise LayerError('group must be positive')
        if self.channels % self.group:
            raise LayerError(f'Number of input channels ({self.channels}) should be a '
                             f'multiple of group ({self.group})')
        if self.num_output % self.group:
            raise LayerError(f'Number of output ({self.num_output}) should be a multiple '
                             f'of group ({self.group})')
        if self.reverse_dimensions:
            conv_out, conv_in = self.channels, self.num_output
        else:
            conv_out, conv_in = self.num_output, self.channels
        self.bias_term = bool(cp.bias_term)
        weight_shape = (conv_out, conv_in // self.group) + self.kernel
        self.blobs = [self.make_param_blob(weight_shape, cp.weight_filler)]
        if self.bias_term:
            self.blobs.append(self.make_param_blob((self.num_output,), cp.bias_filler))

    def reshape(self, bottom, top):
        first_spatial = self.channel_axis + 1
        if bottom[0].num_axes != first_spatial + self.num_spatial_axes:
            raise LayerError('bottom num_axes may not change')
        if bottom[0].shape[self.channel_axis] != self.channels:
            raise LayerError(f'Input size incompatible with convolution kernel: bottom has '
                             f'{bottom[0].shape[self.channel_axis]} channels, the layer was '
                             f'set up for {self.channels}')
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != bottom[0].shape:
                raise LayerError(f'All inputs must have the same shape: bottom[0] '
                                 f'{bottom[0].shape} vs bottom[{i}] {b.shape}')
        self.layout = _SpatialLayout(bottom[0].shape, self.channel_axis)
        self.out_spatial = self.compute_output_shape(self.layout.spatial)
        if any(o <= 0 for o in self.out_spatial):
            raise LayerError(f'output spatial shape {self.out_spatial} is empty for input '
                             f'{self.layout.spatial} (kernel {self.kernel}, stride '
                             f'{self.stride}, pad {self.pad}, dilation {self.dilation})')
        top_shape = self.layout.blob_shape(self.num_output, self.out_spatial)
        for t in top:
            t.reshape(top_shape)

    def _geometry(self):
        return self.kernel, self.stride, self.pad, self.dilation

    @staticmethod
    def _batch_major(y, bias, out):
        """y: channels x (num * spatial_count) (any leading split of channels) -> ``out``
        (contiguous, num x channels x spatial_count), plus ``bias`` per channel if given, in
        one pass."""
        xp = get_array_module(y)
        num, channels, spatial_count = out.shape
        src = y.reshape(channels, num, spatial_count).transpose(1, 0, 2)
        if bias is None:
            out[...] = src
        else:
            xp.add(src, bias.reshape(channels, 1), out=out)
        return out

    def _accumulate_bias_grad(self, dy_ncs):
        if self.bias_term and self.param_needs_grad(1):
            n, c = dy_ncs.shape[:2]
            self.blobs[1].xdiff += dy_ncs.reshape(n, c, -1).sum(axis=(0, 2)).astype(
                self.blobs[1].dtype, copy=False)


class _WeightGradient:
    """A convolution weight gradient dw (g x R x S) += a_j @ b_j^T per group j, summed over
    the chunks of a backward pass (a_j: R x L, b_j: S x L, L the chunk's images times output
    or input positions).

    Where S > R the chunks' products are summed the other way round, b_j @ a_j^T (S x R), in a
    workspace that is added transposed onto dw once, at ``finish``: OpenBLAS runs this
    long-inner product 5-40% faster when its output has more rows than columns, and up to
    1.5x slower the other way (LeNet's, CaffeNet's and the main job's convolutions, 1 and 2
    threads; benchmarks/README.md)."""

    def __init__(self, dw):
        self.dw = dw
        groups, rows, cols = dw.shape
        self.transposed = cols > rows
        if self.transposed:
            xp = get_array_module(dw)
            self.sum_t = workspace(xp, (groups, cols, rows), dw.dtype, 'conv.dw_t')
            self.sum_t.fill(0)

    def add(self, j, a, b):
        if self.transposed:
            gemm_accumulate(b, a.T, self.sum_t[j])
        else:
            gemm_accumulate(a, b.T, self.dw[j])

    def finish(self):
        if self.transposed:
            self.dw += self.sum_t.transpose(0, 2, 1)


@register('Convolution')
class ConvolutionLayer(_BaseConvolution):
    """y[n, m, o] = sum_{c in group(m), t} W[m, c, t] x_pad[n, c, o*s + t*d] + b[m].

    bottom: outer... x C x spatial; top: outer... x num_output x out_spatial with
    out = (in + 2 p - (d (k - 1) + 1)) // s + 1 per axis.
    """

    # Images per chunk: about this many bytes of column buffer, so that each chunk's im2col
    # copy is still in cache when its GEMMs read it (4 MB: the fastest of 0.25-16 MB on a
    # 2 MB-L2 core, forward and backward, for LeNet, CaffeNet and LRCN's convolutions).
    CHUNK_BYTES = 4 << 20

    def compute_output_shape(self, in_spatial):
        return conv_output_shape(in_spatial, *self._geometry())

    def _windows(self, b):
        """The bottom itself (N x C x H x W) where the compiled im2col reads it (2-D, NumPy,
        unit column stride: with a wider stride NumPy's strided copy is the faster one), else
        every window of the padded bottom: C x k... x N x o... (a view, im2col's order)."""
        x = self.layout.as_ncs(b.xdata)
        if (self.num_spatial_axes == 2 and self.stride[1] == 1 and cpu_kernels.usable(x)
                and x.flags.c_contiguous):
            return x
        xpad = pad_spatial(x, self.pad, slot='conv.pad')
        return window_view(xpad, self.kernel, self.stride, self.dilation, self.out_spatial)

    def _chunks(self, col_rows, out_count, itemsize):
        """(first, end) image ranges of about CHUNK_BYTES of columns each."""
        n = self.layout.num
        size = max(1, min(n, self.CHUNK_BYTES // max(1, col_rows * out_count * itemsize)))
        return [(first, min(n, first + size)) for first in range(0, n, size)]

    def _columns(self, windows, first, end):
        """Images first..end of ``windows`` copied into the column workspace:
        g x K/g x (images * O), the chunk's im2col."""
        xp = get_array_module(windows)
        shape = ((self.channels,) + self.kernel + (end - first,) + self.out_spatial)
        cols = workspace(xp, shape, windows.dtype, 'conv.cols')
        if self.num_spatial_axes == 2 and windows.ndim == 4:  # the bottom itself (_windows)
            cpu_kernels.im2col(windows, first, cols, self.stride, self.pad, self.dilation)
        else:
            cols[...] = windows[(slice(None),) * (self.num_spatial_axes + 1)
                                + (slice(first, end),)]
        rows = self.channels // self.group * int(np.prod(self.kernel, dtype=np.int64))
        return cols.reshape(self.group, rows, -1)

    def forward(self, bottom, top):
        """Per chunk of images: y^T = W cols (one GEMM per group, M x images*O), then one
        pass into the top (batch major, bias added)."""
        g, m = self.group, self.num_output
        weight = self.blobs[0].xdata
        w = weight.reshape(g, m // g, -1)                     # g x M/g x K/g
        xp = get_array_module(weight)
        n = self.layout.num
        out_count = int(np.prod(self.out_spatial, dtype=np.int64))
        bias = self.blobs[1].xdata if self.bias_term else None
        for b, t in zip(bottom, top):
            windows = self._windows(b)
            y = output_array(t).reshape(n, m, out_count)
            for first, end in self._chunks(g * w.shape[2], out_count, weight.itemsize):
                cols = self._columns(windows, first, end)
                y_t = workspace(xp, (g, m // g, cols.shape[2]), w.dtype, 'conv.y')
                xp.matmul(w, cols, out=y_t)
                self._batch_major(y_t, bias, y[first:end])

    def backward(self, top, propagate_down, bottom):
        """Per chunk of images, with dy^T (M x images*O): dW += dy^T cols^T (one GEMM per
        group, accumulated in place; im2col recomputed, as Caffe does) and dcols = W^T dy^T,
        summed back onto the bottom diff by col2im."""
        g, m = self.group, self.num_output
        weight = self.blobs[0].xdata
        w = weight.reshape(g, m // g, -1)
        want_w = self.param_needs_grad(0)
        n = self.layout.num
        out_count = int(np.prod(self.out_spatial, dtype=np.int64))
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.xdiff.reshape(n, m, out_count)
            xp = get_array_module(dy)
            self._accumulate_bias_grad(dy)
            if not (want_w or propagate_down[i]):
                continue
            if want_w:
                windows = self._windows(b)
                dw = _WeightGradient(output_array(self.blobs[0], diff=True).reshape(w.shape))
            if propagate_down[i]:
                dx = output_array(b, diff=True).reshape(
                    (n, self.channels) + self.layout.spatial)
            for first, end in self._chunks(g * w.shape[2], out_count, weight.itemsize):
                images = end - first
                dy_t = workspace(xp, (m, images, out_count), dy.dtype, 'conv.dy')
                dy_t[...] = dy[first:end].transpose(1, 0, 2)
                dy_t = dy_t.reshape(g, m // g, -1)
                if want_w:
                    cols = self._columns(windows, first, end)
                    for j in range(g):
                        dw.add(j, dy_t[j], cols[j])
                if propagate_down[i]:
                    dcols = workspace(xp, w.shape[:1] + (w.shape[2], dy_t.shape[2]), w.dtype,
                                      'conv.dcols')
                    xp.matmul(w.transpose(0, 2, 1), dy_t, out=dcols)  # g x K/g x (n*O)
                    dcols = dcols.reshape((self.channels,) + self.kernel + (images,)
                                          + self.out_spatial)
                    col2im(dcols, dx[first:end].shape, *self._geometry(), self.out_spatial,
                           slot='conv.acc', out=dx[first:end])
            if want_w:
                dw.finish()


@register('Deconvolution')
class DeconvolutionLayer(_BaseConvolution):
    """The transpose of Convolution (Caffe's Deconvolution): its forward is Convolution's
    backward-data pass. Weight: C x num_output / group x k...; bias num_output.
    out = s (in - 1) + d (k - 1) + 1 - 2 p per axis.
    """
    reverse_dimensions = True

    def compute_output_shape(self, in_spatial):
        return deconv_output_shape(in_spatial, *self._geometry())

    def _w(self):
        """Weight as g x C/g x (M/g * prod(k))."""
        g = self.group
        return self.blobs[0].xdata.reshape(g, self.channels // g, -1)

    def _x_t(self, b):
        """Bottom as g x C/g x (N * prod(in)), contiguous."""
        x = self.layout.as_ncs(b.xdata)
        xp = get_array_module(x)
        return xp.ascontiguousarray(x.swapaxes(0, 1)).reshape(
            self.group, self.channels // self.group, -1)

    def forward(self, bottom, top):
        w = self._w()
        bias = self.blobs[1].xdata if self.bias_term else None
        n = self.layout.num
        in_spatial = self.layout.spatial
        out_shape = (n, self.num_output) + self.out_spatial
        xp = get_array_module(w)
        for b, t in zip(bottom, top):
            x_t = self._x_t(b)
            cols = workspace(xp, (self.group, w.shape[2], x_t.shape[2]), x_t.dtype, 'conv.dcols')
            xp.matmul(w.transpose(0, 2, 1), x_t, out=cols)  # g x (M/g*K) x (N*I)
            cols = cols.reshape((self.num_output,) + self.kernel + (n,) + in_spatial)
            y = col2im(cols, out_shape, *self._geometry(), in_spatial, slot='conv.acc')
            if bias is not None:
                y += bias.reshape((1, -1) + (1,) * self.num_spatial_axes)
            t.xdata = y.reshape(t.shape)

    def backward(self, top, propagate_down, bottom):
        w = self._w()
        want_w = self.param_needs_grad(0)
        n = self.layout.num
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.xdiff.reshape((n, self.num_output) + self.out_spatial)
            xp = get_array_module(dy)
            self._accumulate_bias_grad(dy)
            if not (want_w or propagate_down[i]):
                continue
            dcols = im2col(dy, *self._geometry(), self.layout.spatial, slot='conv.cols')
            dcols = dcols.reshape(self.group, w.shape[2], -1)  # g x (M/g*K) x (N*I)
            if want_w:
                x_t = self._x_t(b)
                dw = _WeightGradient(output_array(self.blobs[0], diff=True).reshape(w.shape))
                for j in range(self.group):
                    dw.add(j, x_t[j], dcols[j])
                dw.finish()
            if propagate_down[i]:
                dx = xp.matmul(w, dcols)  # g x C/g x (N*I)
                self._batch_major(dx, None, output_array(b, diff=True).reshape(
                    n, self.channels, -1))


@register('Im2col')
class Im2colLayer(Layer):
    """Caffe's Im2col: bottom outer... x C x spatial -> top outer... x (C * prod(k)) x out,
    channel rows ordered (c, k_1, ..., k_S) as in the convolution's column buffer."""
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        cp = self.layer_param.convolution_param
        try:
            self.channel_axis = bottom[0].canonical_axis(cp.axis)
        except IndexError as err:
            raise LayerError(str(err)) from None
        self.num_spatial_axes = bottom[0].num_axes - self.channel_axis - 1
        self.geometry = conv_geometry(cp, self.num_spatial_axes)

    def reshape(self, bottom, top):
        if bottom[0].num_axes != self.channel_axis + 1 + self.num_spatial_axes:
            raise LayerError('bottom num_axes may not change')
        self.layout = _SpatialLayout(bottom[0].shape, self.channel_axis)
        self.out_spatial = conv_output_shape(self.layout.spatial, *self.geometry)
        if any(o <= 0 for o in self.out_spatial):
            raise LayerError(f'output spatial shape {self.out_spatial} is empty for input '
                             f'{self.layout.spatial}')
        rows = self.layout.channels * int(np.prod(self.geometry[0], dtype=np.int64))
        top[0].reshape(self.layout.blob_shape(rows, self.out_spatial))

    def forward(self, bottom, top):
        x = self.layout.as_ncs(bottom[0].xdata)
        xp = get_array_module(x)
        cols = im2col(x, *self.geometry, self.out_spatial)
        rows = cols.size // (self.layout.num * int(np.prod(self.out_spatial, dtype=np.int64)))
        y = cols.reshape(rows, self.layout.num, -1).swapaxes(0, 1)
        top[0].xdata = xp.ascontiguousarray(y).reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].xdiff
        xp = get_array_module(dy)
        n = self.layout.num
        rows = top[0].shape[self.channel_axis]
        dcols = xp.ascontiguousarray(dy.reshape(n, rows, -1).swapaxes(0, 1))
        dcols = dcols.reshape((self.layout.channels,) + self.geometry[0] + (n,) + self.out_spatial)
        nc_shape = (n, self.layout.channels) + self.layout.spatial
        dx = col2im(dcols, nc_shape, *self.geometry, self.out_spatial)
        bottom[0].xdiff = dx.reshape(bottom[0].shape)


# ------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------
def pooled_size(size, kernel, stride, pad, round_mode=pb.PoolingParameter.CEIL):
    """Caffe's pooled extent: ceil (or floor) of (size + 2 pad - kernel) / stride, plus one;
    with padding, a last window starting inside the padding is dropped."""
    span = (size + 2 * pad - kernel) / stride
    out = (math.floor(span) if round_mode == pb.PoolingParameter.FLOOR else math.ceil(span)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class PoolGeometry:
    """One 2-D pooling configuration for an input of ``in_hw``.

    Window (ph, pw) covers rows ph*s_h - p_h ... + k_h - 1 (and likewise columns), clipped to
    the image; ``pool_size`` (AVE divisor) clips only to the padded extent (Caffe's rule).
    """

    def __init__(self, in_hw, kernel, stride, pad, round_mode=pb.PoolingParameter.CEIL):
        self.in_hw = tuple(in_hw)
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.pad = tuple(pad)
        self.out_hw = tuple(pooled_size(i, k, s, p, round_mode) for i, k, s, p in
                            zip(self.in_hw, self.kernel, self.stride, self.pad))
        if any(o <= 0 for o in self.out_hw):
            raise LayerError(f'pooled output {self.out_hw} is empty for input {self.in_hw} '
                             f'(kernel {self.kernel}, stride {self.stride}, pad {self.pad})')
        # Padding after each axis so that every window lies inside the padded array.
        self.after = tuple(max(0, (o - 1) * s + k - p - i) for o, s, k, p, i in
                           zip(self.out_hw, self.stride, self.kernel, self.pad, self.in_hw))

    def padded(self, x, value):
        return pad_spatial(x, self.pad, value, self.after)

    def offset_view(self, xpad, offset):
        """xpad[..., window cell ``offset`` of every window] (N x C x out_h x out_w view)."""
        sl = tuple(slice(t, t + s * (o - 1) + 1, s) for t, s, o in
                   zip(offset, self.stride, self.out_hw))
        return xpad[(Ellipsis,) + sl]

    def crop(self, xpad):
        return xpad[(Ellipsis,) + tuple(slice(p, p + i) for p, i in zip(self.pad, self.in_hw))]

    def pool_size(self, xp, dtype):
        """AVE divisor per output position, out_h x out_w."""
        sizes = []
        for o, s, k, p, i in zip(self.out_hw, self.stride, self.kernel, self.pad, self.in_hw):
            start = np.arange(o) * s - p
            sizes.append(np.minimum(start + k, i + p) - start)
        return xp.asarray(np.outer(sizes[0], sizes[1]).astype(dtype))

    def offsets(self):
        return list(kernel_offsets(self.kernel))

    def scatter(self, xp, shape, dtype, contributions):
        """Sum ``contributions(idx, offset)`` (N x C x out, or None) onto the padded input;
        return the cropped, contiguous N x C x H x W result. Window cells are added in
        descending order: each input cell then sums its windows in Caffe's order (Caffe walks
        the top in row-major order, and a later window holds a cell at a smaller index)."""
        acc = xp.zeros(shape[:2] + tuple(i + p + a for i, p, a in
                                         zip(self.in_hw, self.pad, self.after)), dtype=dtype)
        for idx, offset in reversed(list(enumerate(self.offsets()))):
            c = contributions(idx, offset)
            if c is not None:
                self.offset_view(acc, offset)[...] += c
        return xp.ascontiguousarray(self.crop(acc))


def max_pool(x, geo, y=None):
    """x: N x C x H x W -> (y, arg): y the largest cell of each window that is not NaN (as
    in Caffe, NaN never wins; -inf where a window has nothing else), arg the row-major index
    inside its window of the first such cell (uint8, or int32 for windows of 256+ cells; 0
    where there is none). Padding never wins (-inf). ``y``: where to write the maxima (the
    top's storage; C-contiguous), else a new array."""
    xp = get_array_module(x)
    if y is None:
        y = xp.empty(x.shape[:2] + geo.out_hw, dtype=x.dtype)
    cells = len(geo.offsets())
    arg = xp.empty(y.shape, dtype=np.uint8 if cells < 256 else np.int32)
    xpad = geo.padded(x, -np.inf)
    if cpu_kernels.usable(x) and cells < cpu_kernels.MAX_POOL_CELLS:
        return cpu_kernels.max_pool(xpad, geo.kernel, geo.stride, y, arg)
    return max_pool_xp(xpad, geo, y, arg)


def max_pool_xp(xpad, geo, y, arg):
    """``max_pool``'s passes over the window cells, one strided pass per step (any backend;
    the twin of cpu_kernels.max_pool)."""
    xp = get_array_module(xpad)
    y.fill(-np.inf)
    arg.fill(0)
    better = xp.empty(y.shape, dtype=bool)
    for idx, offset in enumerate(geo.offsets()):
        v = geo.offset_view(xpad, offset)
        # Strict: the first maximum in row-major order wins, and NaN never does, as in Caffe.
        xp.greater(v, y, out=better)
        xp.copyto(y, v, where=better)
        # Offsets come in increasing order, so the last improvement is the largest index:
        # arg = max(arg, idx * better) (a masked assignment is slower).
        if arg.dtype == np.uint8:
            step = better.view(np.uint8)
            xp.multiply(step, idx, out=step)
        else:
            step = better * np.int32(idx)
        xp.maximum(arg, step, out=arg)
    return y, arg


def global_max_pool(x):
    """Max over each whole map: (y N x C x 1 x 1, arg the flat index of the first maximum)."""
    xp = get_array_module(x)
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    arg = flat.argmax(axis=2).reshape(n, c, 1, 1)
    return xp.take_along_axis(flat, arg.reshape(n, c, 1), axis=2).reshape(n, c, 1, 1), arg


def max_pool_backward(dy, arg, geo, x_shape, out=None):
    """The bottom diff of ``max_pool``: each top diff added onto its argmax cell; written into
    ``out`` (a C-contiguous array of x_shape's size) by the compiled kernel where it runs."""
    if cpu_kernels.usable(dy):
        return cpu_kernels.max_pool_backward(dy, arg, geo.kernel, geo.stride, geo.pad,
                                             x_shape, out)
    return max_pool_backward_xp(dy, arg, geo, x_shape)


def max_pool_backward_xp(dy, arg, geo, x_shape):
    """``max_pool_backward`` as one masked strided add per window cell (any backend)."""
    xp = get_array_module(dy)
    return geo.scatter(xp, x_shape, dy.dtype, lambda idx, offset: (arg == idx) * dy)


def max_pool_mask(arg, geo):
    """Caffe's top mask: the flat index h * W + w of each maximum in its input map."""
    xp = get_array_module(arg)
    kw = geo.kernel[1]
    oh, ow = geo.out_hw
    h = (xp.arange(oh) * geo.stride[0] - geo.pad[0]).reshape(-1, 1) + arg // kw
    w = (xp.arange(ow) * geo.stride[1] - geo.pad[1]) + arg % kw
    return h * geo.in_hw[1] + w


def ave_pool(x, geo):
    """Window sums over the zero-padded input divided by Caffe's pool_size."""
    xp = get_array_module(x)
    xpad = geo.padded(x, 0)
    offsets = geo.offsets()
    y = geo.offset_view(xpad, offsets[0]).copy()
    for offset in offsets[1:]:
        y += geo.offset_view(xpad, offset)
    y /= geo.pool_size(xp, x.dtype)
    return y


def ave_pool_backward(dy, geo, x_shape):
    xp = get_array_module(dy)
    g = dy / geo.pool_size(xp, dy.dtype)
    return geo.scatter(xp, x_shape, dy.dtype, lambda idx, offset: g)


def stochastic_pool_train(x, geo, rand):
    """Sample one cell per window with probability x / sum(window) (x >= 0): the first cell
    whose running sum reaches ``rand * sum``. Returns (y, arg)."""
    xp = get_array_module(x)
    xpad = geo.padded(x, 0)
    offsets = geo.offsets()
    total = geo.offset_view(xpad, offsets[0]).copy()
    for offset in offsets[1:]:
        total += geo.offset_view(xpad, offset)
    threshold = rand * total
    running = xp.zeros_like(total)
    y = xp.zeros_like(total)
    arg = xp.zeros(total.shape, dtype=np.int32)
    done = xp.zeros(total.shape, dtype=bool)
    for idx, offset in enumerate(offsets):
        v = geo.offset_view(xpad, offset)
        running += v
        pick = (running >= threshold) & ~done
        xp.copyto(y, v, where=pick)
        xp.copyto(arg, idx, where=pick)
        done |= pick
    return y, arg


def stochastic_pool_test(x, geo):
    """Caffe's test-time stochastic pooling: sum(x^2) / (FLT_MIN + sum(x)) per window."""
    xpad = geo.padded(x, 0)
    offsets = geo.offsets()
    total = None
    squares = None
    for offset in offsets:
        v = geo.offset_view(xpad, offset)
        total = v.copy() if total is None else total + v
        squares = v * v if squares is None else squares + v * v
    return squares / (total + np.finfo(np.float32).tiny)


def _pool_field(pp, name):
    """(h, w) of kernel/pad/stride: the square field or both of the _h/_w pair."""
    square = pp.HasField(name if name != 'kernel' else 'kernel_size')
    has_h, has_w = pp.HasField(name + '_h'), pp.HasField(name + '_w')
    return square, has_h, has_w


@register('Pooling')
class PoolingLayer(Layer):
    """MAX, AVE and STOCHASTIC pooling of N x C x H x W maps (Caffe's PoolingLayer).

    top[0]: N x C x out_h x out_w, out = ceil((H + 2 p - k) / s) + 1 (then one less if the
    last window would start in the padding); MAX may have top[1], the argmax mask
    (flat index h * W + w as a float). STOCHASTIC: TRAIN samples a cell per window with
    probability proportional to its (non-negative) value, TEST returns sum x^2 / sum x.
    """
    exact_num_bottom = 1
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        pp = self.layer_param.pooling_param
        self.method = pp.pool
        if len(top) > 1 and self.method != pp.MAX:
            raise LayerError('only MAX pooling can have a second top (the mask)')
        self.global_pooling = pp.global_pooling
        has_k, has_kh, has_kw = _pool_field(pp, 'kernel')
        if self.global_pooling:
            if has_k or has_kh or has_kw:
                raise LayerError('With Global_pooling: true Filter size cannot specified')
        else:
            if has_k and (has_kh or has_kw):
                raise LayerError('Filter size is kernel_size OR kernel_h and kernel_w; not both')
            if not (has_k or (has_kh and has_kw)):
                raise LayerError('Filter size is kernel_size, or both kernel_h and kernel_w')
        has_p, has_ph, has_pw = _pool_field(pp, 'pad')
        if not ((not has_p and has_ph and has_pw) or (not has_ph and not has_pw)):
            raise LayerError('pad is pad OR pad_h and pad_w are required')
        has_s, has_sh, has_sw = _pool_field(pp, 'stride')
        if not ((not has_s and has_sh and has_sw) or (not has_sh and not has_sw)):
            raise LayerError('Stride is stride OR stride_h and stride_w are required')
        if not self.global_pooling:
            self.kernel = ((pp.kernel_size,) * 2 if has_k else (pp.kernel_h, pp.kernel_w))
            if min(self.kernel) <= 0:
                raise LayerError('Filter dimensions cannot be zero')
        self.pad = (pp.pad_h, pp.pad_w) if has_ph else (pp.pad,) * 2
        self.stride = (pp.stride_h, pp.stride_w) if has_sh else (pp.stride,) * 2
        if min(self.stride) <= 0:
            raise LayerError('Stride dimensions cannot be zero')
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise LayerError('With Global_pooling: true; only pad = 0 and stride = 1')
        if any(self.pad):
            if self.method not in (pp.AVE, pp.MAX):
                raise LayerError('Padding implemented only for average and max pooling')
            if not self.global_pooling and (self.pad[0] >= self.kernel[0]
                                            or self.pad[1] >= self.kernel[1]):
                raise LayerError(f'pad {self.pad} must be smaller than the kernel {self.kernel}')
        self.round_mode = pp.round_mode

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            raise LayerError('Input must have 4 axes, corresponding to (num, channels, height, '
                             f'width); got shape {bottom[0].shape}')
        n, c, h, w = bottom[0].shape
        kernel = (h, w) if self.global_pooling else self.kernel
        self.geo = PoolGeometry((h, w), kernel, self.stride, self.pad, self.round_mode)
        for t in top:
            t.reshape((n, c) + self.geo.out_hw)

    def forward(self, bottom, top):
        out = None if top[0] is bottom[0] else output_array(top[0])
        y, self.arg = pool_forward(bottom[0].xdata, self.geo, self.method, self.phase,
                                   self.global_pooling, out)
        top[0].xdata = y
        if len(top) > 1:
            top[1].xdata = max_pool_mask(self.arg, self.geo).astype(top[1].dtype)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].xdiff = pool_backward(top[0].xdiff, self.arg, self.geo, self.method,
                                            bottom[0].shape, self.global_pooling,
                                            output_array(bottom[0], diff=True))


def pool_forward(x, geo, method, phase, global_pooling=False, out=None):
    """One pooling of N x C x H x W: (y, arg), arg the window index picked (MAX and
    STOCHASTIC in TRAIN) or None. MAX may write y into ``out`` (C-contiguous)."""
    xp = get_array_module(x)
    pp = pb.PoolingParameter
    if method == pp.MAX:
        return global_max_pool(x) if global_pooling else max_pool(x, geo, out)
    if method == pp.AVE:
        return (x.mean(axis=(2, 3), keepdims=True) if global_pooling else ave_pool(x, geo)), None
    if phase == pb.TRAIN:
        rand = backend.random_uniform(x.shape[:2] + geo.out_hw, x.dtype, xp)
        return stochastic_pool_train(x, geo, rand)
    return stochastic_pool_test(x, geo), None


def pool_backward(dy, arg, geo, method, x_shape, global_pooling=False, out=None):
    """The bottom gradient of ``pool_forward`` (MAX may write it into ``out``)."""
    xp = get_array_module(dy)
    if method == pb.PoolingParameter.AVE:
        if global_pooling:
            return xp.broadcast_to(dy / dy.dtype.type(x_shape[2] * x_shape[3]), x_shape).copy()
        return ave_pool_backward(dy, geo, x_shape)
    if arg is None:
        raise LayerError('STOCHASTIC pooling has no backward in the TEST phase')
    if global_pooling:
        n, c, h, w = x_shape
        hit = xp.arange(h * w).reshape(1, 1, -1) == arg.reshape(n, c, 1)
        return (hit * dy.reshape(n, c, 1)).reshape(x_shape)
    return max_pool_backward(dy, arg, geo, x_shape, out)


@register('SPP')
class SPPLayer(Layer):
    """Spatial pyramid pooling (Caffe's SPPLayer): level l pools N x C x H x W into about
    2^l x 2^l bins with kernel ceil(H / 2^l), stride = kernel, pad (kernel 2^l - H + 1) // 2
    (likewise for W), flattens each level and concatenates: top N x sum_l C * bins_l.
    With pyramid_height 1 the top is the single N x C x 1 x 1 pooling."""
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.spp_param
        self.height = int(p.pyramid_height)
        if self.height <= 0:
            raise LayerError('pyramid_height must be positive')
        self.method = p.pool

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            raise LayerError('Input must have 4 axes, corresponding to (num, channels, height, '
                             f'width); got shape {bottom[0].shape}')
        n, c, h, w = bottom[0].shape
        self.geos = []
        for level in range(self.height):
            bins = 2 ** level
            kernel = tuple(-(-size // bins) for size in (h, w))
            pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, (h, w)))
            if any(pd >= k for pd, k in zip(pad, kernel)):
                raise LayerError(f'pyramid level {level} needs pad {pad} >= kernel {kernel} '
                                 f'for a {h}x{w} input: the input is too small')
            if any(pad) and self.method == pb.SPPParameter.STOCHASTIC:
                raise LayerError('Padding implemented only for average and max pooling '
                                 f'(pyramid level {level} of a {h}x{w} input needs pad {pad})')
            self.geos.append(PoolGeometry((h, w), kernel, kernel, pad))
        if self.height == 1:
            top[0].reshape((n, c) + self.geos[0].out_hw)
        else:
            top[0].reshape((n, sum(c * g.out_hw[0] * g.out_hw[1] for g in self.geos)))

    def forward(self, bottom, top):
        x = bottom[0].xdata
        xp = get_array_module(x)
        n = x.shape[0]
        outs, self.args = [], []
        for geo in self.geos:
            y, arg = pool_forward(x, geo, self.method, self.phase)
            outs.append(y.reshape(n, -1))
            self.args.append(arg)
        top[0].xdata = outs[0].reshape(top[0].shape) if len(outs) == 1 else \
            xp.concatenate(outs, axis=1)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].xdiff.reshape(bottom[0].shape[0], -1)
        n, c = bottom[0].shape[:2]
        dx, start = None, 0
        for geo, arg in zip(self.geos, self.args):
            size = c * geo.out_hw[0] * geo.out_hw[1]
            part = dy[:, start:start + size].reshape((n, c) + geo.out_hw)
            start += size
            g = pool_backward(part, arg, geo, self.method, bottom[0].shape)
            dx = g if dx is None else dx + g
        bottom[0].xdiff = dx


# ------------------------------------------------------------------------------------------
# LRN
# ------------------------------------------------------------------------------------------
def _window_sum_channels(a, size):
    """Sum over a centred window of ``size`` (odd) channels, zero padded: N x C x ... ."""
    xp = get_array_module(a)
    half = (size - 1) // 2
    c = a.shape[1]
    padded = xp.zeros((a.shape[0], c + size - 1) + a.shape[2:], dtype=a.dtype)
    padded[:, half:half + c] = a
    out = padded[:, 0:c].copy()
    for t in range(1, size):
        out += padded[:, t:t + c]
    return out


def _box_sum_spatial(a, size):
    """Sum over a centred size x size window of each map (zero padded): N x C x H x W."""
    xp = get_array_module(a)
    half = (size - 1) // 2
    h, w = a.shape[2:]
    padded = pad_spatial(a, (half, half))
    rows = padded[:, :, :, 0:w].copy()
    for t in range(1, size):
        rows += padded[:, :, :, t:t + w]
    out = rows[:, :, 0:h].copy()
    for t in range(1, size):
        out += rows[:, :, t:t + h]
    return xp.ascontiguousarray(out)


@register('LRN')
class LRNLayer(Layer):
    """Local response normalisation of N x C x H x W (Caffe's LRNLayer).

    ACROSS_CHANNELS: scale = k + alpha / n * sum_{c' in [c - (n-1)/2, c + (n-1)/2]} x[c']^2;
    WITHIN_CHANNEL (Caffe builds it from AVE pooling and Power): scale = 1 + alpha / n^2 *
    sum over the n x n zero-padded neighbourhood of x^2 (k is not used).
    y = x * scale^-beta. Backward:
    dx = dy * scale^-beta - 2 alpha beta / |window| * x * windowsum(dy * y / scale).
    On the CPU, ACROSS_CHANNELS runs the window sums and the steps around them as compiled
    kernels (cpu_kernels.lrn_scale / lrn_backward, the same numbers as this NumPy code).
    """
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.lrn_param
        self.size = int(p.local_size)
        if self.size % 2 != 1:
            raise LayerError(f'LRN only supports odd values for local_size (got {self.size})')
        self.alpha, self.beta, self.k = float(p.alpha), float(p.beta), float(p.k)
        self.region = p.norm_region

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            raise LayerError('Input must have 4 axes, corresponding to (num, channels, height, '
                             f'width); got shape {bottom[0].shape}')
        top[0].reshape(bottom[0].shape)

    def _across(self):
        return self.region == pb.LRNParameter.ACROSS_CHANNELS

    def forward(self, bottom, top):
        x = bottom[0].xdata
        dt = x.dtype.type
        if self._across() and cpu_kernels.usable(x):
            scale = cpu_kernels.lrn_scale(np.ascontiguousarray(x), self.size,
                                          self.alpha / self.size, self.k)
        elif self._across():
            scale = _window_sum_channels(x * x, self.size)
            scale *= dt(self.alpha / self.size)
            scale += dt(self.k)
        else:
            scale = _box_sum_spatial(x * x, self.size)
            scale *= dt(self.alpha / (self.size * self.size))
            scale += dt(1)
        self.scale = scale
        self.scale_pow = scale ** dt(-self.beta)
        top[0].xdata = x * self.scale_pow

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = bottom[0].xdata
        dy = top[0].xdiff
        dt = x.dtype.type
        if self._across() and cpu_kernels.usable(x, dy):
            bottom[0].xdiff = cpu_kernels.lrn_backward(
                x, dy, self.scale, self.scale_pow, self.size,
                -2 * self.alpha * self.beta / self.size)
            return
        # dy * y / scale, with y recomputed (an in-place layer above may have changed top).
        ratio = dy * x * self.scale_pow / self.scale
        if self._across():
            acc = _window_sum_channels(ratio, self.size)
            coeff = 2 * self.alpha * self.beta / self.size
        else:
            acc = _box_sum_spatial(ratio, self.size)
            coeff = 2 * self.alpha * self.beta / (self.size * self.size)
        acc *= x
        acc *= dt(-coeff)
        acc += dy * self.scale_pow
        bottom[0].xdiff = acc
