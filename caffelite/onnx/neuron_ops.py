"""Element-wise layers (Caffe's neuron layers) as ONNX nodes; formulas as in
caffelite/layers/neuron.py. Every one maps its one bottom to its one top of the same shape."""
import math

from ..proto import caffelite_pb2 as pb
from .registry import converts


def _unary(op, **attrs):
    def convert(ctx, g):
        g.op(op, ctx.bottoms, ctx.name, ctx.tops[0], **attrs)
    return convert


converts('Sigmoid')(_unary('Sigmoid'))
converts('TanH')(_unary('Tanh'))
converts('AbsVal')(_unary('Abs'))
converts('BNLL')(_unary('Softplus'))          # log(1 + exp(x))


@converts('Dropout')
def dropout(ctx, g):
    """Identity at test time (Caffe scales during training, not at test)."""
    if ctx.layer.phase == pb.TRAIN:
        raise ctx.refuse('Dropout in the TRAIN phase draws random masks; export the TEST '
                         'phase (deploy net)')
    g.op('Identity', ctx.bottoms, ctx.name, ctx.tops[0])


@converts('ReLU')
def relu(ctx, g):
    slope = float(ctx.param.relu_param.negative_slope)
    if slope == 0:
        g.op('Relu', ctx.bottoms, ctx.name, ctx.tops[0])
    else:
        g.op('LeakyRelu', ctx.bottoms, ctx.name, ctx.tops[0], alpha=slope)


@converts('ELU')
def elu(ctx, g):
    g.op('Elu', ctx.bottoms, ctx.name, ctx.tops[0], alpha=float(ctx.param.elu_param.alpha))


@converts('PReLU')
def prelu(ctx, g):
    """Slopes per channel (axis 1) broadcast as C x 1 x ..., or one shared slope."""
    slope = ctx.blob(0)
    rank = len(ctx.bottom_shapes[0])
    if ctx.param.prelu_param.channel_shared:
        slope = slope.reshape(())
    else:
        slope = slope.reshape((-1,) + (1,) * (rank - 2))
    g.op('PRelu', [ctx.bottoms[0], g.const(slope, f'{ctx.name}/slope')], ctx.name, ctx.tops[0])


@converts('Power')
def power(ctx, g):
    """(shift + scale x)^power; power * scale == 0 gives the constant shift^power."""
    p = ctx.param.power_param
    pw, scale, shift = float(p.power), float(p.scale), float(p.shift)
    if pw * scale == 0:
        value = 1.0 if pw == 0 else shift ** pw
        g.op('Expand', [g.const(value, f'{ctx.name}/value'),
                        g.ints(ctx.top_shapes[0], f'{ctx.name}/shape')], ctx.name, ctx.tops[0])
        return
    if pw == 1:
        g.scale_shift(ctx.bottoms[0], scale, shift, ctx.name, ctx.tops[0])
        return
    inner = g.scale_shift(ctx.bottoms[0], scale, shift, ctx.name)
    g.op('Pow', [inner, g.const(pw, f'{ctx.name}/power')], ctx.name, ctx.tops[0])


@converts('Exp')
def exp(ctx, g):
    """base^(shift + scale x) = outer * exp(inner x), inner = scale ln(base), outer = base^shift."""
    p = ctx.param.exp_param
    log_base = 1.0 if p.base == -1 else math.log(p.base)
    inner, outer = log_base * float(p.scale), math.exp(log_base * float(p.shift))
    z = g.scale_shift(ctx.bottoms[0], inner, 0.0, ctx.name)
    if outer == 1:
        g.op('Exp', [z], ctx.name, ctx.tops[0])
    else:
        g.scale_shift(g.op('Exp', [z], ctx.name), outer, 0.0, ctx.name, ctx.tops[0])


@converts('Log')
def log(ctx, g):
    """log(shift + scale x) / ln(base)."""
    p = ctx.param.log_param
    base_scale = 1.0 if p.base == -1 else 1.0 / math.log(p.base)
    inner = g.scale_shift(ctx.bottoms[0], float(p.scale), float(p.shift), ctx.name)
    if base_scale == 1:
        g.op('Log', [inner], ctx.name, ctx.tops[0])
    else:
        g.scale_shift(g.op('Log', [inner], ctx.name), base_scale, 0.0, ctx.name, ctx.tops[0])


@converts('Threshold')
def threshold(ctx, g):
    """1 where x > threshold, else 0 (as float)."""
    t = g.const(float(ctx.param.threshold_param.threshold), f'{ctx.name}/threshold')
    above = g.op('Greater', [ctx.bottoms[0], t], ctx.name)
    g.op('Cast', [above], ctx.name, ctx.tops[0], to=1)          # 1 = FLOAT


@converts('Clip')
def clip(ctx, g):
    p = ctx.param.clip_param
    g.op('Clip', [ctx.bottoms[0], g.const(p.min, f'{ctx.name}/min'),
                  g.const(p.max, f'{ctx.name}/max')], ctx.name, ctx.tops[0])


@converts('Swish')
def swish(ctx, g):
    """x * sigmoid(beta x)."""
    z = g.scale_shift(ctx.bottoms[0], float(ctx.param.swish_param.beta), 0.0, ctx.name)
    g.op('Mul', [ctx.bottoms[0], g.op('Sigmoid', [z], ctx.name)], ctx.name, ctx.tops[0])


@converts('Softmax')
def softmax(ctx, g):
    """Softmax along one axis (opset 13's Softmax normalises exactly that axis)."""
    axis = int(ctx.param.softmax_param.axis)
    axis = axis + len(ctx.bottom_shapes[0]) if axis < 0 else axis
    g.op('Softmax', ctx.bottoms, ctx.name, ctx.tops[0], axis=axis)
