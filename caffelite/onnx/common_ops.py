"""Structural and normalisation layers as ONNX nodes (Caffe 1.0 semantics, as in
caffelite/layers/common.py and normalization.py). The exporter knows every blob's shape, so
reshapes are written with the static shapes Caffe computed (its 0 and -1 already resolved)."""
import numpy as np

from ..proto import caffelite_pb2 as pb
from .registry import converts


def _axis(axis, rank):
    return axis + rank if axis < 0 else axis


def _legacy_axis(param, legacy_name, rank):
    """``axis`` or the deprecated ``concat_dim`` / ``slice_dim``."""
    return getattr(param, legacy_name) if param.HasField(legacy_name) else \
        _axis(param.axis, rank)


@converts('Split')
def split(ctx, g):
    """Copies (Caffe inserts these where a blob feeds several layers)."""
    for top in ctx.tops:
        g.op('Identity', ctx.bottoms, ctx.name, top)
        g.aliases[top] = g.source(ctx.bottoms[0])


@converts('Silence')
def silence(ctx, g):
    """Consumes its bottoms and outputs nothing: no node."""


@converts('Flatten', 'Reshape')
def reshape(ctx, g):
    g.reshape(ctx.bottoms[0], ctx.top_shapes[0], ctx.name, ctx.tops[0])


@converts('Concat')
def concat(ctx, g):
    if len(ctx.bottoms) == 1:
        g.op('Identity', ctx.bottoms, ctx.name, ctx.tops[0])
        return
    axis = _legacy_axis(ctx.param.concat_param, 'concat_dim', len(ctx.bottom_shapes[0]))
    g.op('Concat', ctx.bottoms, ctx.name, ctx.tops[0], axis=axis)


@converts('Slice')
def slice_(ctx, g):
    if len(ctx.tops) == 1:
        g.op('Identity', ctx.bottoms, ctx.name, ctx.tops[0])
        return
    axis = _legacy_axis(ctx.param.slice_param, 'slice_dim', len(ctx.bottom_shapes[0]))
    g.split(ctx.bottoms[0], axis, [s[axis] for s in ctx.top_shapes], ctx.name, ctx.tops)


@converts('Crop')
def crop(ctx, g):
    """bottom[0] cut to bottom[1]'s shape on the axes from ``axis``, at ``offset``."""
    p = ctx.param.crop_param
    shape, ref = ctx.bottom_shapes
    start = _axis(p.axis, len(shape))
    axes = list(range(start, len(shape)))
    offsets = [p.offset[0] if len(p.offset) == 1 else p.offset[a - start] if p.offset else 0
               for a in axes]
    ends = [o + ref[a] for o, a in zip(offsets, axes)]
    g.op('Slice', [ctx.bottoms[0], g.ints(offsets, f'{ctx.name}/starts'),
                   g.ints(ends, f'{ctx.name}/ends'), g.ints(axes, f'{ctx.name}/axes')],
         ctx.name, ctx.tops[0])


@converts('InnerProduct')
def inner_product(ctx, g):
    """x as M x K (axes before ``axis`` x the rest), Gemm with W (N x K, or K x N with
    ``transpose``) and b, then the top's shape."""
    p = ctx.param.inner_product_param
    shape = ctx.bottom_shapes[0]
    axis = _axis(p.axis, len(shape))
    m, k = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))
    x = ctx.bottoms[0] if shape == (m, k) else g.reshape(ctx.bottoms[0], (m, k), ctx.name)
    inputs = [x, g.const(ctx.blob(0), f'{ctx.name}/weight')]
    if p.bias_term:
        inputs.append(g.const(ctx.blob(1), f'{ctx.name}/bias'))
    flat = ctx.top_shapes[0] == (m, p.num_output)
    y = g.op('Gemm', inputs, ctx.name, ctx.tops[0] if flat else None,
             transB=0 if p.transpose else 1)
    if not flat:
        g.reshape(y, ctx.top_shapes[0], ctx.name, ctx.tops[0])


@converts('Embed')
def embed(ctx, g):
    """top[..., :] = W[index] (+ b): Gather of W's rows by the (float) indices cast to int64."""
    p = ctx.param.embed_param
    idx = g.op('Cast', ctx.bottoms, ctx.name, to=7)              # 7 = INT64
    weight = g.const(ctx.blob(0), f'{ctx.name}/weight')
    if not p.bias_term:
        g.op('Gather', [weight, idx], ctx.name, ctx.tops[0], axis=0)
        return
    rows = g.op('Gather', [weight, idx], ctx.name, axis=0)
    g.op('Add', [rows, g.const(ctx.blob(1), f'{ctx.name}/bias')], ctx.name, ctx.tops[0])


@converts('Eltwise')
def eltwise(ctx, g):
    """SUM (sum_i coeff_i x_i), PROD, MAX over bottoms of one shape."""
    p = ctx.param.eltwise_param
    xs = list(ctx.bottoms)
    if p.operation == pb.EltwiseParameter.SUM:
        terms = [x if c == 1 else g.op('Mul', [x, g.const(c, f'{ctx.name}/coeff')], ctx.name)
                 for x, c in zip(xs, list(p.coeff) or [1.0] * len(xs))]
        g.op('Sum', terms, ctx.name, ctx.tops[0])
    elif p.operation == pb.EltwiseParameter.PROD:
        y = xs[0]
        for k, x in enumerate(xs[1:], 2):
            y = g.op('Mul', [y, x], ctx.name, ctx.tops[0] if k == len(xs) else None)
    else:
        g.op('Max', xs, ctx.name, ctx.tops[0])


def _broadcast_shape(ctx, operand_shape, axis_field):
    """Operand shape padded with 1s so it broadcasts against bottom[0] from ``axis``."""
    rank, k = len(ctx.bottom_shapes[0]), len(operand_shape)
    axis = 0 if k == 0 else _axis(axis_field, rank)
    return (1,) * axis + tuple(operand_shape) + (1,) * (rank - axis - k)


def _operand(ctx, g, array_or_bottom, operand_shape, axis_field, hint):
    shape = _broadcast_shape(ctx, operand_shape, axis_field)
    if isinstance(array_or_bottom, str):          # a second bottom, reshaped at run time
        return g.reshape(array_or_bottom, shape, hint)
    return g.const(array_or_bottom.reshape(shape), hint)


@converts('Scale')
def scale(ctx, g):
    """x * s (+ b), s the learned blob 0 or bottom[1], broadcast from ``axis``."""
    p = ctx.param.scale_param
    two = len(ctx.bottoms) > 1
    s_shape = ctx.bottom_shapes[1] if two else ctx.blob(0).shape
    s = _operand(ctx, g, ctx.bottoms[1] if two else ctx.blob(0), s_shape, p.axis,
                 f'{ctx.name}/scale')
    if not p.bias_term:
        g.op('Mul', [ctx.bottoms[0], s], ctx.name, ctx.tops[0])
        return
    y = g.op('Mul', [ctx.bottoms[0], s], ctx.name)
    b = _operand(ctx, g, ctx.blob(ctx.num_blobs - 1), s_shape, p.axis, f'{ctx.name}/bias')
    g.op('Add', [y, b], ctx.name, ctx.tops[0])


@converts('Bias')
def bias(ctx, g):
    """x + b, b the learned blob or bottom[1], broadcast from ``axis``."""
    p = ctx.param.bias_param
    two = len(ctx.bottoms) > 1
    b = _operand(ctx, g, ctx.bottoms[1] if two else ctx.blob(0),
                 ctx.bottom_shapes[1] if two else ctx.blob(0).shape, p.axis, f'{ctx.name}/bias')
    g.op('Add', [ctx.bottoms[0], b], ctx.name, ctx.tops[0])


@converts('BatchNorm')
def batch_norm(ctx, g):
    """With the stored statistics (use_global_stats, the TEST default): mean = blobs[0] / s,
    var = blobs[1] / s, s = blobs[2][0] (Caffe's scale factor; 0 stays 0); ONNX's
    BatchNormalization with unit scale and zero shift."""
    p = ctx.param.batch_norm_param
    global_stats = p.use_global_stats if p.HasField('use_global_stats') else \
        ctx.layer.phase == pb.TEST
    if not global_stats:
        raise ctx.refuse('use_global_stats is false: it normalises by the statistics of each '
                         'batch; export the TEST phase or set use_global_stats: true')
    if len(ctx.bottom_shapes[0]) < 2:
        raise ctx.refuse('ONNX BatchNormalization needs a bottom of at least 2 axes (N x C)')
    factor = float(ctx.blob(2)[0])
    inv = 0.0 if factor == 0 else 1.0 / factor
    mean, var = inv * ctx.blob(0), inv * ctx.blob(1)
    channels = mean.shape[0]
    g.op('BatchNormalization',
         [ctx.bottoms[0], g.const(np.ones(channels), f'{ctx.name}/gamma'),
          g.const(np.zeros(channels), f'{ctx.name}/beta'), g.const(mean, f'{ctx.name}/mean'),
          g.const(var, f'{ctx.name}/var')], ctx.name, ctx.tops[0], epsilon=float(p.eps))


@converts('ArgMax')
def argmax(ctx, g):
    """TopK (largest first) along ``axis``, or over each item's flattened values; indices as
    floats, or the values (``out_max_val``), or [indices; values] without an axis."""
    p = ctx.param.argmax_param
    shape = ctx.bottom_shapes[0]
    k = g.ints([int(p.top_k)], f'{ctx.name}/k')
    if p.HasField('axis'):
        axis = _axis(p.axis, len(shape))
        values, indices = g.node('TopK', [ctx.bottoms[0], k], 2, ctx.name, axis=axis)
        if p.out_max_val:
            g.op('Identity', [values], ctx.name, ctx.tops[0])
        else:
            g.op('Cast', [indices], ctx.name, ctx.tops[0], to=1)
        return
    flat = g.reshape(ctx.bottoms[0], (shape[0], -1), ctx.name)
    values, indices = g.node('TopK', [flat, k], 2, ctx.name, axis=1)
    parts = [g.op('Cast', [indices], ctx.name, to=1)] + ([values] if p.out_max_val else [])
    stacked = g.op('Concat', [g.reshape(x, (shape[0], 1, p.top_k), ctx.name) for x in parts],
                   ctx.name, axis=1)
    g.reshape(stacked, ctx.top_shapes[0], ctx.name, ctx.tops[0])


@converts('Reduction')
def reduction(ctx, g):
    """coeff * SUM | ASUM | SUMSQ | MEAN over all axes from ``axis`` (MEAN: coeff / dim)."""
    p = ctx.param.reduction_param
    shape = ctx.bottom_shapes[0]
    axis = _axis(p.axis, len(shape))
    num, dim = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:],
                                                                       dtype=np.int64))
    ops = {pb.ReductionParameter.SUM: 'ReduceSum', pb.ReductionParameter.MEAN: 'ReduceSum',
           pb.ReductionParameter.ASUM: 'ReduceL1', pb.ReductionParameter.SUMSQ: 'ReduceSumSquare'}
    coeff = float(p.coeff) / dim if p.operation == pb.ReductionParameter.MEAN else float(p.coeff)
    rows = g.reshape(ctx.bottoms[0], (num, dim), ctx.name)
    total = g.reduce(ops[p.operation], rows, [1], ctx.name)
    scaled = g.scale_shift(total, coeff, 0.0, ctx.name)
    g.reshape(scaled, ctx.top_shapes[0], ctx.name, ctx.tops[0])


@converts('Tile')
def tile(ctx, g):
    """The bottom as outer x 1 x inner (inner = count from ``axis``), repeated ``tiles``
    times along the middle axis, then the top's shape."""
    p = ctx.param.tile_param
    shape = ctx.bottom_shapes[0]
    axis = _axis(p.axis, len(shape))
    outer, inner = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:],
                                                                           dtype=np.int64))
    x = g.reshape(ctx.bottoms[0], (outer, 1, inner), ctx.name)
    tiled = g.op('Tile', [x, g.ints([1, p.tiles, 1], f'{ctx.name}/repeats')], ctx.name)
    g.reshape(tiled, ctx.top_shapes[0], ctx.name, ctx.tops[0])
