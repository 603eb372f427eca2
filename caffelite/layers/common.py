"""Structural layers: InnerProduct, Embed, Concat, Slice, Split, Flatten, Reshape, Eltwise,
Silence, Bias, Scale, Tile, Reduction, Crop, ArgMax, BatchReindex, Filter, Parameter.

Caffe 1.0 semantics; parameter blobs keep Caffe's shapes and order so .caffemodels load.
Shapes below use ``outer = count(0, axis)``, ``inner = count(axis + k)`` as Caffe does.
"""
import numpy as np

from ..backend import get_array_module
from ..blob import shape_count
from ..errors import LayerError
from ..proto import caffelite_pb2 as pb
from . import cpu_kernels
from .base import Layer, register
from .gemm import gemm_accumulate, output_array
from .im2col import workspace


# -- helpers ----------------------------------------------------------------------------------
def _canonical_axis(shape, axis, what='axis'):
    """Caffe's CanonicalAxisIndex with a LayerError instead of a crash."""
    n = len(shape)
    if not -n <= axis < n:
        raise LayerError(f'{what} {axis} is out of range for a bottom of shape {tuple(shape)} '
                         f'({n} axes)')
    return axis + n if axis < 0 else axis


def _scatter_add_rows(target, indices, rows):
    """target[indices[m]] += rows[m] for every m, repeated indices accumulating (in place)."""
    if (target.ndim == 2 and target.flags.c_contiguous and cpu_kernels.usable(target, rows)
            and rows.dtype == target.dtype and np.issubdtype(indices.dtype, np.integer)):
        cpu_kernels.scatter_add_rows(target, indices, rows)
    else:
        get_array_module(target).add.at(target, indices, rows)   # CuPy >= 13 has ufunc.at


def _checked_indices(values, limit, what):
    """Integer indices from a float blob; LayerError naming the first non-integer or
    out-of-range [0, limit) value."""
    xp = get_array_module(values)
    flat = values.reshape(-1)
    idx = flat.astype(np.int64)
    bad = (idx != flat) | (idx < 0) | (idx >= limit)
    if bool(bad.any()):
        pos = int(xp.argmax(bad))
        raise LayerError(f'{what} {float(flat[pos])!r} at position {pos} is not an integer '
                         f'in [0, {limit})')
    return idx


# -- fully connected ------------------------------------------------------------------------
@register('InnerProduct')
class InnerProductLayer(Layer):
    """Fully connected: bottom flattened from ``axis`` to (M, K), top (shape[:axis] + (N,)).

    y = x W^T + b with W: N x K (``transpose: false``, Caffe's default) or y = x W with W: K x N
    (``transpose: true``); b: (N,). Blobs: [weight, bias] (bias only with ``bias_term``).
    """
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        if p.num_output <= 0:
            raise LayerError('inner_product_param.num_output must be positive')
        self.num_output = int(p.num_output)
        self.bias_term = p.bias_term
        self.transpose = p.transpose
        axis = _canonical_axis(bottom[0].shape, p.axis)
        self.K = bottom[0].count_axes(axis)
        if not self.blobs:
            N, K = self.num_output, self.K
            self.blobs = [self.make_param_blob((K, N) if self.transpose else (N, K),
                                               p.weight_filler)]
            if self.bias_term:
                self.blobs.append(self.make_param_blob((N,), p.bias_filler))

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = _canonical_axis(shape, self.layer_param.inner_product_param.axis)
        if shape_count(shape, self.axis) != self.K:
            raise LayerError(f'input size incompatible with inner product parameters: bottom '
                             f'{shape} gives {shape_count(shape, self.axis)} inputs from axis '
                             f'{self.axis}, the weights expect {self.K}')
        self.M = shape_count(shape, 0, self.axis)
        top[0].reshape(shape[:self.axis] + (self.num_output,))

    def forward(self, bottom, top):
        """y^T = W x^T (the faster operand order for OpenBLAS when M is small), then one
        transposing pass y = y^T^T + b into the top."""
        x = bottom[0].xdata.reshape(self.M, self.K)
        w = self.blobs[0].xdata
        xp = get_array_module(w)
        y_t = workspace(xp, (self.num_output, self.M), w.dtype, 'inner_product.y')
        xp.matmul(w.T if self.transpose else w, x.T, out=y_t)
        y = output_array(top[0]).reshape(self.M, self.num_output)
        if self.bias_term:
            xp.add(y_t.T, self.blobs[1].xdata, out=y)
        else:
            y[...] = y_t.T

    def backward(self, top, propagate_down, bottom):
        dy = top[0].xdiff.reshape(self.M, self.num_output)
        x = bottom[0].xdata.reshape(self.M, self.K)
        w = self.blobs[0].xdata
        xp = get_array_module(w)
        if self.param_needs_grad(0):
            dw = self.blobs[0].xdiff
            if self.transpose:
                gemm_accumulate(x.T, dy, dw)
            else:
                gemm_accumulate(dy.T, x, dw)
        if self.bias_term and self.param_needs_grad(1):
            self.blobs[1].xdiff += dy.sum(axis=0)
        if propagate_down[0]:
            dx = output_array(bottom[0], diff=True).reshape(self.M, self.K)
            xp.matmul(dy, w.T if self.transpose else w, out=dx)


@register('Embed')
class EmbedLayer(Layer):
    """Lookup table: bottom holds integer indices (as floats) in [0, input_dim); top is
    bottom.shape + (num_output,) with top[..., :] = W[index] + b.

    Blobs: weight (input_dim x num_output), bias (num_output,). No gradient to the indices.
    """
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.embed_param
        if p.num_output <= 0:
            raise LayerError('embed_param.num_output must be positive')
        if p.input_dim <= 0:
            raise LayerError('embed_param.input_dim must be positive')
        self.N, self.K, self.bias_term = int(p.num_output), int(p.input_dim), p.bias_term
        if not self.blobs:
            self.blobs = [self.make_param_blob((self.K, self.N), p.weight_filler)]
            if self.bias_term:
                self.blobs.append(self.make_param_blob((self.N,), p.bias_filler))

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.N,))

    def forward(self, bottom, top):
        self._idx = _checked_indices(bottom[0].xdata, self.K, 'Embed index')
        y = self.blobs[0].xdata[self._idx]
        if self.bias_term:
            y = y + self.blobs[1].xdata
        top[0].xdata = y.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise LayerError("can't backpropagate to the Embed layer's input (indices)")
        dy = top[0].xdiff.reshape(-1, self.N)
        if self.param_needs_grad(0):
            _scatter_add_rows(self.blobs[0].xdiff, self._idx, dy)
        if self.bias_term and self.param_needs_grad(1):
            self.blobs[1].xdiff += dy.sum(axis=0)

    def allow_force_backward(self, bottom_index):
        return False


# -- joining and splitting ------------------------------------------------------------------
def _legacy_axis(param, legacy_name, shape):
    """axis, or the deprecated non-negative ``concat_dim`` / ``slice_dim``."""
    if param.HasField('axis') and param.HasField(legacy_name):
        raise LayerError(f'either axis or {legacy_name} should be specified; not both')
    if param.HasField(legacy_name):
        axis = getattr(param, legacy_name)
        if axis >= len(shape):
            raise LayerError(f'{legacy_name} {axis} out of range for a bottom of shape {shape}')
        return axis
    return _canonical_axis(shape, param.axis)


@register('Concat')
class ConcatLayer(Layer):
    """Joins the bottoms along ``axis`` (all other dims must agree); backward slices the diff."""
    min_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.concat_param
        if p.HasField('axis') and p.HasField('concat_dim'):
            raise LayerError('either axis or concat_dim should be specified; not both')

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = _legacy_axis(self.layer_param.concat_param, 'concat_dim', shape)
        total = 0
        for i, b in enumerate(bottom):
            if len(b.shape) != len(shape):
                raise LayerError(f'all inputs must have the same number of axes: bottom[0] is '
                                 f'{shape}, bottom[{i}] is {b.shape}')
            if b.shape[:self.axis] != shape[:self.axis] or \
                    b.shape[self.axis + 1:] != shape[self.axis + 1:]:
                raise LayerError(f'all inputs must have the same shape except at concat axis '
                                 f'{self.axis}: bottom[0] is {shape}, bottom[{i}] is {b.shape}')
            total += b.shape[self.axis]
        top[0].reshape(shape[:self.axis] + (total,) + shape[self.axis + 1:])

    def forward(self, bottom, top):
        if len(bottom) == 1:
            top[0].xdata = bottom[0].xdata
            return
        xp = get_array_module(bottom[0].xdata)
        top[0].xdata = xp.concatenate([b.xdata for b in bottom], axis=self.axis)

    def backward(self, top, propagate_down, bottom):
        dy = top[0].xdiff
        offset = 0
        for i, b in enumerate(bottom):
            size = b.shape[self.axis]
            if propagate_down[i]:
                index = (slice(None),) * self.axis + (slice(offset, offset + size),)
                b.xdiff = dy[index].copy()
            offset += size


@register('Slice')
class SliceLayer(Layer):
    """Cuts the bottom along ``axis`` at ``slice_point``s (or into equal parts when none are
    given) into the tops; backward writes each top's diff back into its range."""
    exact_num_bottom = 1
    min_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.slice_param
        if p.HasField('axis') and p.HasField('slice_dim'):
            raise LayerError('either axis or slice_dim should be specified; not both')
        self.slice_points = [int(s) for s in p.slice_point]

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = _legacy_axis(self.layer_param.slice_param, 'slice_dim', shape)
        dim = shape[self.axis]
        if self.slice_points:
            if len(self.slice_points) != len(top) - 1:
                raise LayerError(f'{len(self.slice_points)} slice_point(s) for {len(top)} tops: '
                                 f'need exactly one fewer than the tops')
            bounds = [0] + self.slice_points + [dim]
            if any(b <= a for a, b in zip(bounds[:-2], bounds[1:-1])) or bounds[-2] > dim:
                raise LayerError(f'slice_point {self.slice_points} must be strictly increasing '
                                 f'and within the slice axis size {dim}')
            sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            if dim % len(top):
                raise LayerError(f'number of top blobs ({len(top)}) should evenly divide the '
                                 f'input slice axis ({dim})')
            sizes = [dim // len(top)] * len(top)
        self.sizes = sizes
        for t, size in zip(top, sizes):
            t.reshape(shape[:self.axis] + (size,) + shape[self.axis + 1:])

    def _ranges(self):
        offset = 0
        for size in self.sizes:
            yield (slice(None),) * self.axis + (slice(offset, offset + size),)
            offset += size

    def forward(self, bottom, top):
        x = bottom[0].xdata
        if len(top) == 1:
            top[0].xdata = x
            return
        for t, index in zip(top, self._ranges()):
            t.xdata = x[index].copy()

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if len(top) == 1:
            bottom[0].xdiff = top[0].xdiff.copy()
            return
        xp = get_array_module(top[0].xdiff)
        bottom[0].xdiff = xp.concatenate([t.xdiff for t in top], axis=self.axis)


@register('Split')
class SplitLayer(Layer):
    """Copies its bottom to every top; backward sums the top diffs (Caffe inserts these
    automatically where one blob feeds several layers)."""
    exact_num_bottom = 1
    min_top = 1

    def reshape(self, bottom, top):
        for t in top:
            t.reshape(bottom[0].shape)

    def forward(self, bottom, top):
        for t in top:
            t.xdata = bottom[0].xdata

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            total = top[0].xdiff.copy()
            for t in top[1:]:
                total += t.xdiff
            bottom[0].xdiff = total


# -- reshaping (data shared with the bottom, as Caffe's ShareData/ShareDiff) ----------------
class _ViewLayer(Layer):
    """Top is the bottom's data under another shape; backward is the same for the diff."""
    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError(f'{self.type} layer does not allow in-place computation')
        top[0].reshape(self.top_shape(bottom[0]))

    def forward(self, bottom, top):
        top[0].xdata = bottom[0].xdata.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].xdiff = top[0].xdiff.reshape(bottom[0].shape)


@register('Flatten')
class FlattenLayer(_ViewLayer):
    """Merges axes [axis, end_axis] into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def top_shape(self, bottom):
        p = self.layer_param.flatten_param
        shape = bottom.shape
        start = _canonical_axis(shape, p.axis)
        end = _canonical_axis(shape, p.end_axis, 'end_axis')
        if end < start:
            raise LayerError(f'flatten end_axis {p.end_axis} comes before axis {p.axis} '
                             f'for a bottom of shape {shape}')
        return shape[:start] + (shape_count(shape, start, end + 1),) + shape[end + 1:]


@register('Reshape')
class ReshapeLayer(_ViewLayer):
    """Replaces bottom axes [axis, axis + num_axes) by ``shape``: 0 copies the bottom's dim at
    that position, -1 (at most one) is inferred from the count. Negative ``axis`` counts from
    the end with -1 meaning after the last axis; ``num_axes: -1`` means all remaining axes."""

    def setup(self, bottom, top):
        dims = [int(d) for d in self.layer_param.reshape_param.shape.dim]
        self.copy_axes = [i for i, d in enumerate(dims) if d == 0]
        inferred = [i for i, d in enumerate(dims) if d == -1]
        if len(inferred) > 1:
            raise LayerError(f'new shape {dims} contains multiple -1 dims: at most one can be '
                             f'inferred')
        if any(d < -1 for d in dims):
            raise LayerError(f'new shape {dims} contains a negative dim other than -1')
        self.inferred_axis = inferred[0] if inferred else None
        self.dims = dims
        self.constant_count = int(np.prod([d for d in dims if d > 0], dtype=np.int64))

    def top_shape(self, bottom):
        p = self.layer_param.reshape_param
        shape, n = bottom.shape, len(bottom.shape)
        start = p.axis if p.axis >= 0 else n + p.axis + 1
        if not 0 <= start <= n:
            raise LayerError(f'reshape axis {p.axis} out of range for a bottom of shape {shape}')
        if p.num_axes < -1:
            raise LayerError(f'reshape num_axes must be >= 0, or -1 for all, got {p.num_axes}')
        end = n if p.num_axes == -1 else start + p.num_axes
        if end > n:
            raise LayerError(f'reshape axis {p.axis} + num_axes {p.num_axes} goes past the '
                             f'{n} axes of the bottom {shape}')
        new = list(self.dims)
        for i in self.copy_axes:
            if start + i >= n:
                raise LayerError(f'new shape {self.dims} contains a 0 at position {i}, but '
                                 f'there is no corresponding bottom axis to copy in {shape}')
            new[i] = shape[start + i]
        if self.inferred_axis is not None:
            explicit = (self.constant_count * shape_count(shape, 0, start) * shape_count(shape, end) *
                        int(np.prod([shape[start + i] for i in self.copy_axes], dtype=np.int64)))
            if explicit == 0 or bottom.count % explicit:
                raise LayerError(f'bottom count {bottom.count} of {shape} is not divisible by '
                                 f'the product {explicit} of the specified dims {self.dims}')
            new[self.inferred_axis] = bottom.count // explicit
        top = shape[:start] + tuple(new) + shape[end:]
        if shape_count(top) != bottom.count:
            raise LayerError(f'output count must match input count: reshape of {shape} '
                             f'({bottom.count}) to {top} ({shape_count(top)})')
        return top


# -- element-wise -------------------------------------------------------------------------------
@register('Eltwise')
class EltwiseLayer(Layer):
    """Element-wise over bottoms of one shape: SUM (sum_i coeff_i x_i), PROD (prod_i x_i) or
    MAX (ties go to the lowest bottom index; backward routes the diff to the argmax)."""
    min_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = p.operation
        if p.coeff and len(p.coeff) != len(bottom):
            raise LayerError(f'Eltwise takes one coefficient per bottom blob: {len(p.coeff)} '
                             f'coeff(s) for {len(bottom)} bottoms')
        if self.op == pb.EltwiseParameter.PROD and p.coeff:
            raise LayerError('Eltwise only takes coefficients for summation (SUM)')
        self.coeffs = [float(c) for c in p.coeff] or [1.0] * len(bottom)
        self.stable_prod_grad = p.stable_prod_grad

    def reshape(self, bottom, top):
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != bottom[0].shape:
                raise LayerError(f'Eltwise bottoms must have one shape: bottom[0] is '
                                 f'{bottom[0].shape}, bottom[{i}] is {b.shape}')
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        xp = get_array_module(bottom[0].xdata)
        xs = [b.xdata for b in bottom]
        if self.op == pb.EltwiseParameter.SUM:
            y = xs[0] * self.coeffs[0] if self.coeffs[0] != 1 else xs[0].copy()
            for c, x in zip(self.coeffs[1:], xs[1:]):
                y += c * x if c != 1 else x
        elif self.op == pb.EltwiseParameter.PROD:
            y = xs[0] * xs[1]
            for x in xs[2:]:
                y *= x
            self._prod = y
        elif self.op == pb.EltwiseParameter.MAX:
            y = xs[0]
            argmax = xp.zeros(y.shape, dtype=np.int32)
            for i, x in enumerate(xs[1:], 1):
                greater = x > y
                argmax[greater] = i
                y = xp.where(greater, x, y)
            self._argmax = argmax
        else:
            raise LayerError(f'unknown Eltwise operation {self.op}')
        top[0].xdata = y

    def backward(self, top, propagate_down, bottom):
        dy = top[0].xdiff
        xs = [b.xdata for b in bottom]
        grads = {}
        for i in range(len(bottom)):
            if not propagate_down[i]:
                continue
            if self.op == pb.EltwiseParameter.SUM:
                grads[i] = dy * self.coeffs[i] if self.coeffs[i] != 1 else dy.copy()
            elif self.op == pb.EltwiseParameter.PROD:
                if self.stable_prod_grad:
                    others = [x for j, x in enumerate(xs) if j != i]
                    g = dy * others[0]
                    for x in others[1:]:
                        g *= x
                else:  # Caffe's fast path: top / x_i (inf/nan where x_i == 0, as in Caffe)
                    g = dy * (self._prod / xs[i])
                grads[i] = g
            else:
                grads[i] = dy * (self._argmax == i)
        for i, g in grads.items():
            bottom[i].xdiff = g


@register('Silence')
class SilenceLayer(Layer):
    """Consumes its bottoms and outputs nothing; backward gives them zero diffs."""
    min_bottom = 1
    exact_num_top = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for b, down in zip(bottom, propagate_down):
            if down:
                xp = get_array_module(b.xdata)
                b.xdiff = xp.zeros(b.shape, dtype=b.dtype)


# -- broadcast Bias / Scale -----------------------------------------------------------------
class _BroadcastLayer(Layer):
    """Shared geometry of Bias and Scale: a blob p (learned, or bottom[1]) with shape
    bottom[0].shape[axis : axis + p.ndim] broadcast over bottom[0], viewed as
    (outer, dim, inner) with dim = p.count."""
    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1

    def learned_shape(self, bottom, param):
        """Shape of the learned blob of the one-bottom form: bottom[0].shape[axis:axis+num_axes]."""
        shape = bottom[0].shape
        axis = _canonical_axis(shape, param.axis)
        if param.num_axes < -1:
            raise LayerError(f'num_axes must be non-negative, or -1 to extend to the end of '
                             f'bottom[0], got {param.num_axes}')
        end = len(shape) if param.num_axes == -1 else axis + param.num_axes
        if end > len(shape):
            raise LayerError(f'blob shape extends past bottom[0] shape {shape} when applied '
                             f'starting with bottom[0] axis {axis} over {param.num_axes} axes')
        return shape[axis:end]

    def set_geometry(self, bottom, operand_shape, param):
        shape = bottom[0].shape
        k = len(operand_shape)
        axis = 0 if k == 0 else _canonical_axis(shape, param.axis)
        if shape[axis:axis + k] != tuple(operand_shape):
            raise LayerError(f'{self.type} blob of shape {tuple(operand_shape)} does not match '
                             f'bottom[0] shape {shape} from axis {axis}')
        self.outer = shape_count(shape, 0, axis)
        self.dim = shape_count(operand_shape)
        self.inner = shape_count(shape, axis + k)

    def split3(self, array):
        return array.reshape(self.outer, self.dim, self.inner)

    def column(self, array):
        return array.reshape(1, self.dim, 1)


@register('Bias')
class BiasLayer(_BroadcastLayer):
    """y = x + b, b broadcast from ``axis`` (b = bottom[1], or a learned blob of shape
    bottom[0].shape[axis:axis+num_axes] filled by ``filler``, default zeros). In place allowed."""

    def setup(self, bottom, top):
        p = self.layer_param.bias_param
        if len(bottom) == 1 and not self.blobs:
            self.blobs = [self.make_param_blob(self.learned_shape(bottom, p), p.filler)]

    def reshape(self, bottom, top):
        bias = bottom[1] if len(bottom) > 1 else self.blobs[0]
        self.set_geometry(bottom, bias.shape, self.layer_param.bias_param)
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        bias = bottom[1] if len(bottom) > 1 else self.blobs[0]
        y = self.split3(bottom[0].xdata) + self.column(bias.xdata)
        top[0].xdata = y.reshape(bottom[0].shape)

    def backward(self, top, propagate_down, bottom):
        dy = top[0].xdiff
        if len(bottom) > 1 and propagate_down[1]:
            bottom[1].xdiff = self.split3(dy).sum(axis=(0, 2)).reshape(bottom[1].shape)
        elif len(bottom) == 1 and self.param_needs_grad(0):
            self.blobs[0].xdiff += self.split3(dy).sum(axis=(0, 2)).reshape(self.blobs[0].shape)
        if propagate_down[0] and bottom[0] is not top[0]:
            bottom[0].xdiff = dy.copy()


@register('Scale')
class ScaleLayer(_BroadcastLayer):
    """y = x * s (+ b), s broadcast from ``axis`` (s = bottom[1], or a learned blob of shape
    bottom[0].shape[axis:axis+num_axes] filled by ``filler``, default ones); with
    ``bias_term`` a learned bias b of s's shape (``bias_filler``, default zeros).
    Blobs: [scale, bias] (one bottom) or [bias] (two bottoms). In place allowed."""

    def setup(self, bottom, top):
        p = self.layer_param.scale_param
        if self.blobs:
            return
        if len(bottom) == 1:
            filler = p.filler
            if not p.HasField('filler'):
                filler = pb.FillerParameter(type='constant', value=1.0)
            self.blobs.append(self.make_param_blob(self.learned_shape(bottom, p), filler))
            operand_shape = self.blobs[0].shape
        else:
            operand_shape = bottom[1].shape
        if p.bias_term:
            self.blobs.append(self.make_param_blob(operand_shape, p.bias_filler))

    def _operands(self, bottom):
        scale = bottom[1] if len(bottom) > 1 else self.blobs[0]
        bias = self.blobs[-1] if self.layer_param.scale_param.bias_term else None
        return scale, bias

    def reshape(self, bottom, top):
        scale, bias = self._operands(bottom)
        self.set_geometry(bottom, scale.shape, self.layer_param.scale_param)
        if bias is not None and bias.shape != scale.shape:
            raise LayerError(f'Scale bias blob {bias.shape} does not match the scale {scale.shape}')
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        scale, bias = self._operands(bottom)
        # kept for backward: in place, the top overwrites the bottom's storage
        self._x = bottom[0].xdata.copy() if top[0] is bottom[0] else bottom[0].xdata
        y = self.split3(self._x) * self.column(scale.xdata)
        if bias is not None:
            y += self.column(bias.xdata)
        top[0].xdata = y.reshape(bottom[0].shape)

    def backward(self, top, propagate_down, bottom):
        scale, bias = self._operands(bottom)
        two_bottoms = len(bottom) > 1
        dy3 = self.split3(top[0].xdiff)
        bias_index = len(self.blobs) - 1
        if bias is not None and self.param_needs_grad(bias_index):
            bias.xdiff += dy3.sum(axis=(0, 2)).reshape(bias.shape)
        want_scale = propagate_down[1] if two_bottoms else self.param_needs_grad(0)
        if want_scale:
            ds = (dy3 * self.split3(self._x)).sum(axis=(0, 2)).reshape(scale.shape)
            if two_bottoms:
                dx_scale = ds
            else:
                scale.xdiff += ds
        if propagate_down[0]:
            bottom[0].xdiff = (dy3 * self.column(scale.xdata)).reshape(bottom[0].shape)
        if two_bottoms and want_scale:
            bottom[1].xdiff = dx_scale


# -- other shape layers ---------------------------------------------------------------------
@register('Tile')
class TileLayer(Layer):
    """Repeats the bottom ``tiles`` times along ``axis`` (whole blocks, like np.tile):
    top.shape[axis] = tiles * bottom.shape[axis]; backward sums the copies."""
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.tile_param
        if not p.HasField('tiles'):
            raise LayerError('number of tiles (tile_param.tiles) must be specified')
        if p.tiles <= 0:
            raise LayerError(f'number of tiles must be positive, got {p.tiles}')
        self.tiles = int(p.tiles)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = _canonical_axis(shape, self.layer_param.tile_param.axis)
        self.outer, self.inner = shape_count(shape, 0, self.axis), shape_count(shape, self.axis)
        top[0].reshape(shape[:self.axis] + (shape[self.axis] * self.tiles,) + shape[self.axis + 1:])

    def forward(self, bottom, top):
        xp = get_array_module(bottom[0].xdata)
        x = bottom[0].xdata.reshape(self.outer, 1, self.inner)
        top[0].xdata = xp.tile(x, (1, self.tiles, 1)).reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dy = top[0].xdiff.reshape(self.outer, self.tiles, self.inner)
            bottom[0].xdiff = dy.sum(axis=1).reshape(bottom[0].shape)


@register('Reduction')
class ReductionLayer(Layer):
    """Reduces all axes from ``axis`` on: top.shape = bottom.shape[:axis] (a scalar for axis 0);
    top = coeff * SUM x | ASUM |x| | SUMSQ x^2 | MEAN x (MEAN = SUM * coeff / dim)."""
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self.op = self.layer_param.reduction_param.operation
        if self.op not in (pb.ReductionParameter.SUM, pb.ReductionParameter.ASUM,
                           pb.ReductionParameter.SUMSQ, pb.ReductionParameter.MEAN):
            raise LayerError(f'unknown reduction operation {self.op}')

    def reshape(self, bottom, top):
        p = self.layer_param.reduction_param
        shape = bottom[0].shape
        axis = _canonical_axis(shape, p.axis)
        self.num, self.dim = shape_count(shape, 0, axis), shape_count(shape, axis)
        self.coeff = p.coeff / self.dim if self.op == pb.ReductionParameter.MEAN else p.coeff
        top[0].reshape(shape[:axis])

    def forward(self, bottom, top):
        xp = get_array_module(bottom[0].xdata)
        x = bottom[0].xdata.reshape(self.num, self.dim)
        if self.op == pb.ReductionParameter.ASUM:
            x = xp.abs(x)
        elif self.op == pb.ReductionParameter.SUMSQ:
            x = x * x
        y = x.sum(axis=1)
        if self.coeff != 1:
            y = y * self.coeff
        top[0].xdata = y.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        xp = get_array_module(bottom[0].xdata)
        g = top[0].xdiff.reshape(self.num, 1) * self.coeff
        x = bottom[0].xdata.reshape(self.num, self.dim)
        if self.op == pb.ReductionParameter.ASUM:
            dx = xp.sign(x) * g
        elif self.op == pb.ReductionParameter.SUMSQ:
            dx = 2 * x * g
        else:
            dx = xp.broadcast_to(g, (self.num, self.dim)).copy()
        bottom[0].xdiff = dx.reshape(bottom[0].shape)


@register('Crop')
class CropLayer(Layer):
    """Crops bottom[0] to bottom[1]'s shape on axes >= ``axis``, starting at ``offset`` (one
    for all cropped axes, or one per cropped axis; default 0). Backward pads with zeros;
    bottom[1] only gives a shape (its diff is zero)."""
    exact_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        if len(bottom[0].shape) != len(bottom[1].shape):
            raise LayerError(f'number of axes of bottom {bottom[0].shape} and reference '
                             f'{bottom[1].shape} must match')
        p = self.layer_param.crop_param
        start = _canonical_axis(bottom[0].shape, p.axis)
        if len(p.offset) > 1 and start + len(p.offset) != len(bottom[0].shape):
            raise LayerError(f'number of offset values ({len(p.offset)}) must be equal to the '
                             f'number of dimensions from axis {start} on '
                             f'({len(bottom[0].shape) - start})')

    def reshape(self, bottom, top):
        p = self.layer_param.crop_param
        shape, ref = bottom[0].shape, bottom[1].shape
        if len(shape) != len(ref):
            raise LayerError(f'number of axes of bottom {shape} and reference {ref} must match')
        start = _canonical_axis(shape, p.axis)
        new_shape, self.index = list(shape), []
        for i in range(len(shape)):
            offset = 0
            if i >= start:
                new_shape[i] = ref[i]
                if len(p.offset) == 1:
                    offset = p.offset[0]
                elif len(p.offset) > 1:
                    offset = p.offset[i - start]
                if shape[i] - offset < ref[i]:
                    raise LayerError(f'the crop for dimension {i} is out-of-bounds with size '
                                     f'{ref[i]} and offset {offset} (bottom size {shape[i]})')
            self.index.append(slice(offset, offset + new_shape[i]))
        self.index = tuple(self.index)
        top[0].reshape(tuple(new_shape))

    def forward(self, bottom, top):
        top[0].xdata = bottom[0].xdata[self.index].copy()

    def backward(self, top, propagate_down, bottom):
        xp = get_array_module(top[0].xdiff)
        if propagate_down[0]:
            dx = xp.zeros(bottom[0].shape, dtype=top[0].xdiff.dtype)
            dx[self.index] = top[0].xdiff
            bottom[0].xdiff = dx
        if propagate_down[1]:
            bottom[1].xdiff = xp.zeros(bottom[1].shape, dtype=bottom[1].dtype)


@register('ArgMax')
class ArgMaxLayer(Layer):
    """Indices (or values) of the ``top_k`` largest entries, largest first; ties go to the
    larger index (Caffe sorts (value, index) pairs descending).

    With ``axis``: top = bottom.shape with shape[axis] = top_k, holding indices, or the max
    values when ``out_max_val``. Without: each item's flattened count(1) entries; top is
    (N, 1, top_k) padded with 1s to the bottom's rank, or (N, 2, top_k) holding
    [indices; values] when ``out_max_val``. No backward."""
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.argmax_param
        self.top_k, self.out_max_val = int(p.top_k), p.out_max_val
        self.has_axis = p.HasField('axis')
        if self.top_k < 1:
            raise LayerError('top_k must not be less than 1')

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if self.has_axis:
            self.axis = _canonical_axis(shape, self.layer_param.argmax_param.axis)
            dim = shape[self.axis]
            top_shape = shape[:self.axis] + (self.top_k,) + shape[self.axis + 1:]
        else:
            dim = shape_count(shape, 1)
            top_shape = [1] * max(len(shape), 3)
            top_shape[0], top_shape[1], top_shape[2] = shape[0], 2 if self.out_max_val else 1, \
                self.top_k
            top_shape = tuple(top_shape)
        if self.top_k > dim:
            raise LayerError(f'top_k ({self.top_k}) must be less than or equal to the dimension '
                             f'being searched ({dim})')
        top[0].reshape(top_shape)

    def forward(self, bottom, top):
        xp = get_array_module(bottom[0].xdata)
        x = bottom[0].xdata
        x = xp.moveaxis(x, self.axis, -1) if self.has_axis else x.reshape(x.shape[0], -1)
        # Stable ascending sort, reversed: descending values, equal values by descending index.
        # (CuPy's argsort is always stable and accepts no ``kind``.)
        stable = {'kind': 'stable'} if xp is np else {}
        order = xp.argsort(x, axis=-1, **stable)[..., ::-1][..., :self.top_k]
        values = xp.take_along_axis(x, order, axis=-1)
        if self.has_axis:
            out = values if self.out_max_val else order.astype(top[0].dtype)
            out = xp.moveaxis(out, -1, self.axis)
        else:
            parts = [order.astype(values.dtype)] + ([values] if self.out_max_val else [])
            out = xp.stack(parts, axis=1)
        top[0].xdata = xp.ascontiguousarray(out).reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise LayerError('ArgMax has no backward')


# -- batch selection ------------------------------------------------------------------------
@register('BatchReindex')
class BatchReindexLayer(Layer):
    """top[i] = bottom[0][idx[i]] with idx = bottom[1] (1-D, integers in [0, N)); backward
    sums the diffs of repeated indices. No gradient to the indices."""
    exact_num_bottom = 2
    exact_num_top = 1

    def reshape(self, bottom, top):
        if len(bottom[1].shape) != 1:
            raise LayerError(f'BatchReindex indices (bottom[1]) must be 1-D, got shape '
                             f'{bottom[1].shape}')
        top[0].reshape(bottom[1].shape[:1] + bottom[0].shape[1:])

    def forward(self, bottom, top):
        self._idx = _checked_indices(bottom[1].xdata, bottom[0].shape[0],
                                     'BatchReindex index (bottom[1])')
        top[0].xdata = bottom[0].xdata[self._idx]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError('cannot backpropagate to the BatchReindex indices (bottom[1])')
        if propagate_down[0]:
            xp = get_array_module(top[0].xdiff)
            dx = xp.zeros(bottom[0].shape, dtype=top[0].xdiff.dtype)
            _scatter_add_rows(dx, self._idx, top[0].xdiff)
            bottom[0].xdiff = dx

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1


@register('Filter')
class FilterLayer(Layer):
    """Keeps the items (rows along axis 0) whose selector (the last bottom, shape (N,) or
    (N, 1, ...)) is non-zero: top[t] = bottom[t][selector != 0]. Backward scatters the diffs
    back, zeros elsewhere. No gradient to the selector."""
    min_bottom = 2
    min_top = 1

    def setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            raise LayerError(f'Filter needs one top per bottom except the selector: '
                             f'{len(bottom)} bottoms, {len(top)} tops')
        self._selector_index = len(bottom) - 1
        self._first_reshape = True

    def _selected(self, bottom):
        xp = get_array_module(bottom[-1].xdata)
        return xp.nonzero(bottom[-1].xdata.reshape(-1) != 0)[0]

    def reshape(self, bottom, top):
        selector = bottom[-1].shape
        if any(d != 1 for d in selector[1:]):
            raise LayerError(f'selector blob dimensions must be singletons (1), except the '
                             f'first: got {selector}')
        for i, b in enumerate(bottom[:-1]):
            if not b.shape or b.shape[0] != selector[0]:
                raise LayerError(f'each bottom should have the same first dimension as the '
                                 f'selector: bottom[{i}] is {b.shape}, selector is {selector}')
        # Caffe sizes the tops from the whole batch the first time (data may not exist yet).
        num = bottom[0].shape[0] if self._first_reshape else int(self._selected(bottom).size)
        self._first_reshape = False
        for t, b in zip(top, bottom):
            t.reshape((num,) + b.shape[1:])

    def forward(self, bottom, top):
        self._idx = self._selected(bottom)
        for t, b in zip(top, bottom):
            t.reshape((int(self._idx.size),) + b.shape[1:])
            t.xdata = b.xdata[self._idx]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[-1]:
            raise LayerError('Filter cannot backpropagate to the selector (last bottom)')
        for t, b, down in zip(top, bottom, propagate_down):
            if down:
                xp = get_array_module(t.xdiff)
                dx = xp.zeros(b.shape, dtype=t.xdiff.dtype)
                dx[self._idx] = t.xdiff
                b.xdiff = dx

    def allow_force_backward(self, bottom_index):
        return bottom_index != getattr(self, '_selector_index', None)


@register('Parameter')
class ParameterLayer(Layer):
    """Outputs its one learned blob (shape ``parameter_param.shape``, zero-initialised, as
    Caffe); backward accumulates the top diff into the blob's diff."""
    exact_num_bottom = 0
    exact_num_top = 1

    def setup(self, bottom, top):
        shape = tuple(int(d) for d in self.layer_param.parameter_param.shape.dim)
        if not self.blobs:
            self.blobs = [self.make_param_blob(shape)]

    def reshape(self, bottom, top):
        top[0].reshape(self.blobs[0].shape)

    def forward(self, bottom, top):
        top[0].xdata = self.blobs[0].xdata

    def backward(self, top, propagate_down, bottom):
        if self.param_needs_grad(0):
            self.blobs[0].xdiff += top[0].xdiff
