"""Convolution, Deconvolution, Pooling and LRN as ONNX nodes (Caffe 1.0 semantics, as in
caffelite/layers/vision.py)."""
from ..layers.vision import PoolGeometry, conv_geometry
from ..proto import caffelite_pb2 as pb
from .registry import converts


def _conv_attrs(ctx):
    """Conv/ConvTranspose attributes from convolution_param; channels must be axis 1."""
    cp = ctx.param.convolution_param
    rank = len(ctx.bottom_shapes[0])
    axis = cp.axis + rank if cp.axis < 0 else cp.axis
    if axis != 1:
        raise ctx.refuse(f'convolution over channel axis {cp.axis}: ONNX convolves N x C x ... '
                         f'(axis 1) only')
    kernel, stride, pad, dilation = conv_geometry(cp, rank - 2)
    return dict(kernel_shape=list(kernel), strides=list(stride), pads=list(pad) * 2,
                dilations=list(dilation), group=int(cp.group))


def _convolution(op):
    """Weight and bias as Caffe stores them; ONNX's layouts are the same (Conv: M x C/g x k,
    ConvTranspose: C x M/g x k). Each bottom i gives top i with the shared weights."""
    def convert(ctx, g):
        attrs = _conv_attrs(ctx)
        params = [g.const(ctx.blob(0), f'{ctx.name}/weight')]
        if ctx.param.convolution_param.bias_term:
            params.append(g.const(ctx.blob(1), f'{ctx.name}/bias'))
        for bottom, top in zip(ctx.bottoms, ctx.tops):
            g.op(op, [bottom] + params, ctx.name, top, **attrs)
    return convert


converts('Convolution')(_convolution('Conv'))
converts('Deconvolution')(_convolution('ConvTranspose'))


def _pool_fields(pp):
    """(kernel, pad, stride) as (h, w) pairs from the square or the _h/_w fields."""
    kernel = ((pp.kernel_size,) * 2 if pp.HasField('kernel_size')
              else (pp.kernel_h, pp.kernel_w))
    pad = (pp.pad_h, pp.pad_w) if pp.HasField('pad_h') else (pp.pad,) * 2
    stride = (pp.stride_h, pp.stride_w) if pp.HasField('stride_h') else (pp.stride,) * 2
    return kernel, pad, stride


@converts('Pooling')
def pooling(ctx, g):
    """MAX / AVE pooling with Caffe's output size (ceil or floor, and the last window
    starting inside the padded image), written as explicit pads that make ONNX's floor rule
    give the same size:

    - MAX: pads p before and ``after`` (the padding Caffe's windows reach past the image)
      after; padding never wins.
    - AVE: Caffe divides by the window clipped to the padded image (i + p), so the p zeros
      are a real Pad node and only the part of the last window beyond them is ONNX padding,
      not counted (count_include_pad = 0).
    """
    pp = ctx.param.pooling_param
    if len(ctx.tops) > 1:
        raise ctx.refuse('the argmax mask (second top) of MAX pooling has no ONNX equivalent')
    if pp.pool == pp.STOCHASTIC:
        raise ctx.refuse('STOCHASTIC pooling has no ONNX equivalent')
    x, top = ctx.bottoms[0], ctx.tops[0]
    if pp.global_pooling:
        g.op('GlobalMaxPool' if pp.pool == pp.MAX else 'GlobalAveragePool', [x], ctx.name, top)
        return
    kernel, pad, stride = _pool_fields(pp)
    in_hw = ctx.bottom_shapes[0][2:]
    geo = PoolGeometry(in_hw, kernel, stride, pad, pp.round_mode)
    if any(a >= k for a, k in zip(geo.after, kernel)):
        raise ctx.refuse(f'its last window (input {in_hw}, kernel {kernel}, stride {stride}) '
                         f'lies wholly outside the image; Caffe outputs -FLT_MAX or 0 there')
    size = tuple((i + p + a - k) // s + 1 for i, p, a, k, s in
                 zip(in_hw, pad, geo.after, kernel, stride))
    assert size == geo.out_hw, (size, geo.out_hw)
    attrs = dict(kernel_shape=list(kernel), strides=list(stride))
    if pp.pool == pp.MAX:
        g.op('MaxPool', [x], ctx.name, top, pads=list(pad) + list(geo.after), **attrs)
        return
    if any(pad):
        kept = [min(p, a) for p, a in zip(pad, geo.after)]
        x = g.op('Pad', [x, g.ints([0, 0, *pad, 0, 0, *kept], f'{ctx.name}/pads')], ctx.name)
        beyond = [a - k for a, k in zip(geo.after, kept)]
    else:
        beyond = list(geo.after)
    g.op('AveragePool', [x], ctx.name, top, pads=[0, 0] + beyond, count_include_pad=0, **attrs)


@converts('LRN')
def lrn(ctx, g):
    """ACROSS_CHANNELS is ONNX's LRN (both divide alpha by the window size and add k);
    WITHIN_CHANNEL: x * (1 + alpha / n^2 * boxsum_{n x n}(x^2))^-beta, the box mean of x^2
    being an AveragePool that counts the zero padding."""
    p = ctx.param.lrn_param
    x, n = ctx.bottoms[0], int(p.local_size)
    if p.norm_region == pb.LRNParameter.ACROSS_CHANNELS:
        g.op('LRN', [x], ctx.name, ctx.tops[0], alpha=float(p.alpha), beta=float(p.beta),
             bias=float(p.k), size=n)
        return
    half = (n - 1) // 2
    square = g.op('Mul', [x, x], ctx.name)
    mean = g.op('AveragePool', [square], ctx.name, kernel_shape=[n, n], pads=[half] * 4,
                count_include_pad=1)
    scale = g.scale_shift(mean, float(p.alpha), 1.0, ctx.name)
    factor = g.op('Pow', [scale, g.const(-float(p.beta), f'{ctx.name}/power')], ctx.name)
    g.op('Mul', [x, factor], ctx.name, ctx.tops[0])
