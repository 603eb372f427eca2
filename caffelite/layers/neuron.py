"""Element-wise (neuron) layers: one bottom, one top of the same shape, Caffe 1.0 semantics.

Every layer here works in place (top is the same Blob as bottom). A top's storage is
persistent (forward writes into it), so a layer whose backward needs x keeps the input array
(``self._x``; a copy when in place, as the top overwrites it), one that needs y keeps its own
output array (``self._y``, computed before it is written into the top). Backward therefore
reads exactly what its own forward saw and produced, even when later in-place layers
overwrite the blob's contents.
"""
import numpy as np

from .. import backend
from ..errors import LayerError
from ..proto import caffelite_pb2 as pb
from . import cpu_kernels
from .base import Layer, register
from .gemm import output_array


class NeuronLayer(Layer):
    """Base: top shape = bottom shape. Subclasses define ``compute(xp, x) -> y`` and
    ``gradient(xp, dy) -> dx`` and set ``keep_x`` / ``keep_y`` for what ``gradient`` needs."""
    exact_num_bottom = 1
    exact_num_top = 1
    keep_x = False
    keep_y = False

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].xdata
        xp = backend.get_array_module(x)
        y = self.compute(xp, x)
        self._x = (x.copy() if top[0] is bottom[0] else x) if self.keep_x else None
        self._y = y if self.keep_y else None
        top[0].xdata = y

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].xdiff
        bottom[0].xdiff = self.gradient(backend.get_array_module(dy), dy)

    def compute(self, xp, x):
        raise NotImplementedError

    def gradient(self, xp, dy):
        raise NotImplementedError


def sigmoid(xp, x):
    """1 / (1 + exp(-x)) without overflow and with full relative precision for x << 0:
    e = exp(-|x|); 1 / (1 + e) for x >= 0, e / (1 + e) otherwise."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


@register('ReLU')
class ReLULayer(NeuronLayer):
    """y = max(x, 0) + negative_slope * min(x, 0);
    dx = dy * ((x > 0) + negative_slope * (x <= 0)).
    With slope 0 (the usual case) forward and backward write into the blobs directly and keep
    only the mask x > 0; otherwise ``compute`` / ``gradient`` (NeuronLayer's protocol)."""

    def setup(self, bottom, top):
        self.negative_slope = float(self.layer_param.relu_param.negative_slope)
        # For a slope >= 0, y > 0 exactly where x > 0, so y alone decides the gradient.
        self.keep_y = self.negative_slope >= 0
        self.keep_x = not self.keep_y

    def forward(self, bottom, top):
        if self.negative_slope != 0:
            return super().forward(bottom, top)
        # Slope 0: keep only the mask x > 0 (what backward needs, a quarter of y's bytes) and
        # write max(x, 0) straight into the top, without temporaries.
        x = bottom[0].xdata
        xp = backend.get_array_module(x)
        mask = getattr(self, '_mask', None)
        if mask is None or mask.shape != x.shape or backend.get_array_module(mask) is not xp:
            mask = self._mask = xp.empty(x.shape, dtype=bool)
        y = output_array(top[0])
        if cpu_kernels.usable(x, y) and x.flags.c_contiguous:
            cpu_kernels.relu_forward(x, y, mask)
        else:
            xp.greater(x, 0, out=mask)
            xp.maximum(x, 0, out=y)

    def backward(self, top, propagate_down, bottom):
        if self.negative_slope != 0:
            return super().backward(top, propagate_down, bottom)
        if propagate_down[0]:
            dy = top[0].xdiff
            backend.get_array_module(dy).multiply(dy, self._mask,
                                                 out=output_array(bottom[0], diff=True))

    def compute(self, xp, x):
        return xp.where(x > 0, x, x * self.negative_slope)

    def gradient(self, xp, dy):
        positive = (self._y > 0) if self.keep_y else (self._x > 0)
        return xp.where(positive, dy, dy * self.negative_slope)


@register('Sigmoid')
class SigmoidLayer(NeuronLayer):
    """y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y)."""
    keep_y = True

    def compute(self, xp, x):
        return sigmoid(xp, x)

    def gradient(self, xp, dy):
        y = self._y
        return dy * y * (1 - y)


@register('TanH')
class TanHLayer(NeuronLayer):
    """y = tanh(x); dx = dy * (1 - y^2)."""
    keep_y = True

    def compute(self, xp, x):
        return xp.tanh(x)

    def gradient(self, xp, dy):
        y = self._y
        return dy * (1 - y * y)


@register('Dropout')
class DropoutLayer(NeuronLayer):
    """TRAIN: y = x * mask / (1 - dropout_ratio), mask ~ Bernoulli(1 - dropout_ratio) drawn
    from the seeded stream (``backend.random_uniform``); dx = dy * mask / (1 - ratio).
    TEST: y = x, dx = dy."""

    def setup(self, bottom, top):
        self.ratio = float(self.layer_param.dropout_param.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise LayerError(f'dropout_ratio must be in [0, 1), got {self.ratio}')
        self.scale = 1.0 / (1.0 - self.ratio)
        self._mask = None

    def forward(self, bottom, top):
        x = bottom[0].xdata
        xp = backend.get_array_module(x)
        if self.phase == pb.TRAIN:
            uniform = backend.random_uniform(x.shape, x.dtype, xp)
            # The kept units, already multiplied by the scale, so backward is one product.
            self._mask = (uniform >= self.ratio).astype(x.dtype) * x.dtype.type(self.scale)
            top[0].xdata = x * self._mask
        else:
            self._mask = None
            top[0].xdata = x if top[0] is bottom[0] else x.copy()

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].xdiff
        if self.phase == pb.TRAIN:
            bottom[0].xdiff = dy * self._mask
        else:
            bottom[0].xdiff = dy if top[0] is bottom[0] else dy.copy()


@register('Power')
class PowerLayer(NeuronLayer):
    """y = (shift + scale * x) ^ power; dx = dy * power * scale * (shift + scale * x)^(power-1).

    Caffe's special cases: power * scale == 0 gives the constant y = shift^power (1 when
    power is 0) and dx = 0.
    """
    keep_x = True

    def setup(self, bottom, top):
        p = self.layer_param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale

    def _inner(self, x):
        inner = x
        if self.scale != 1:
            inner = inner * self.scale
        if self.shift != 0:
            inner = inner + self.shift
        return inner

    def compute(self, xp, x):
        if self.diff_scale == 0:
            value = 1.0 if self.power == 0 else self.shift ** self.power
            return xp.full(x.shape, value, dtype=x.dtype)
        inner = self._inner(x)
        if self.power == 1:
            return inner if inner is not x else x.copy()
        return xp.power(inner, x.dtype.type(self.power))

    def gradient(self, xp, dy):
        if self.diff_scale == 0 or self.power == 1:
            return dy * dy.dtype.type(self.diff_scale)
        inner = self._inner(self._x)
        if self.power == 2:
            return dy * (inner * self.diff_scale)
        return dy * (xp.power(inner, dy.dtype.type(self.power - 1)) * self.diff_scale)


@register('AbsVal')
class AbsValLayer(NeuronLayer):
    """y = |x|; dx = dy * sign(x) (0 at x = 0)."""
    keep_x = True

    def compute(self, xp, x):
        return xp.abs(x)

    def gradient(self, xp, dy):
        return dy * xp.sign(self._x)


@register('BNLL')
class BNLLLayer(NeuronLayer):
    """y = log(1 + exp(x)), computed as max(x, 0) + log(1 + exp(-|x|)); dx = dy * sigmoid(x)."""
    keep_x = True

    def compute(self, xp, x):
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def gradient(self, xp, dy):
        return dy * sigmoid(xp, self._x)


@register('ELU')
class ELULayer(NeuronLayer):
    """y = x (x > 0), alpha * (exp(x) - 1) (x <= 0); dx = dy (x > 0), dy * (y + alpha)."""
    keep_x = True
    keep_y = True

    def setup(self, bottom, top):
        self.alpha = float(self.layer_param.elu_param.alpha)

    def compute(self, xp, x):
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))

    def gradient(self, xp, dy):
        return xp.where(self._x > 0, dy, dy * (self._y + self.alpha))


@register('Exp')
class ExpLayer(NeuronLayer):
    """y = base ^ (shift + scale * x) (base -1 means e) = outer * exp(inner * x) with
    inner = scale * ln(base), outer = base^shift; dx = dy * y * inner."""
    keep_y = True

    def setup(self, bottom, top):
        p = self.layer_param.exp_param
        base = float(p.base)
        if base != -1 and base <= 0:
            raise LayerError(f'exp_param.base must be strictly positive (or -1 for e), got {base}')
        log_base = 1.0 if base == -1 else float(np.log(base))
        self.inner_scale = log_base * float(p.scale)
        self.outer_scale = float(np.exp(log_base * float(p.shift)))

    def compute(self, xp, x):
        z = x * self.inner_scale if self.inner_scale != 1 else x
        y = xp.exp(z)
        return y * self.outer_scale if self.outer_scale != 1 else y

    def gradient(self, xp, dy):
        return dy * (self._y * self.inner_scale)


@register('Log')
class LogLayer(NeuronLayer):
    """y = log_base(shift + scale * x) (base -1 means e); dx = dy * scale / (ln(base) * (shift + scale * x))."""
    keep_x = True

    def setup(self, bottom, top):
        p = self.layer_param.log_param
        base = float(p.base)
        if base != -1 and base <= 0:
            raise LayerError(f'log_param.base must be strictly positive (or -1 for e), got {base}')
        log_base = 1.0 if base == -1 else float(np.log(base))
        if log_base == 0:
            raise LayerError('log_param.base must not be 1')
        self.base_scale = 1.0 / log_base
        self.scale, self.shift = float(p.scale), float(p.shift)

    def _inner(self, x):
        inner = x * self.scale if self.scale != 1 else x
        return inner + self.shift if self.shift != 0 else inner

    def compute(self, xp, x):
        y = xp.log(self._inner(x))
        return y * self.base_scale if self.base_scale != 1 else y

    def gradient(self, xp, dy):
        return dy * (self.scale * self.base_scale) / self._inner(self._x)


@register('Threshold')
class ThresholdLayer(NeuronLayer):
    """y = 1 if x > threshold else 0. No backward (Caffe: NOT_IMPLEMENTED)."""

    def setup(self, bottom, top):
        self.threshold = float(self.layer_param.threshold_param.threshold)

    def compute(self, xp, x):
        return (x > self.threshold).astype(x.dtype)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise LayerError('Threshold has no backward (its gradient is zero almost everywhere '
                             'and undefined at the threshold); set propagate_down: false')


@register('Swish')
class SwishLayer(NeuronLayer):
    """y = x * sigmoid(beta * x); dx = dy * (beta * y + sigmoid(beta * x) * (1 - beta * y))."""
    keep_x = True
    keep_y = True

    def setup(self, bottom, top):
        self.beta = float(self.layer_param.swish_param.beta)

    def compute(self, xp, x):
        return x * sigmoid(xp, self.beta * x)

    def gradient(self, xp, dy):
        s = sigmoid(xp, self.beta * self._x)
        by = self.beta * self._y
        return dy * (by + s * (1 - by))


@register('Clip')
class ClipLayer(NeuronLayer):
    """y = min(max(x, min), max); dx = dy where min <= x <= max, else 0."""
    keep_x = True

    def setup(self, bottom, top):
        p = self.layer_param.clip_param
        self.lo, self.hi = float(p.min), float(p.max)
        if self.lo > self.hi:
            raise LayerError(f'clip_param.min ({self.lo}) must not exceed max ({self.hi})')

    def compute(self, xp, x):
        return xp.clip(x, self.lo, self.hi)

    def gradient(self, xp, dy):
        x = self._x
        return dy * ((x >= self.lo) & (x <= self.hi))


@register('PReLU')
class PReLULayer(NeuronLayer):
    """y = max(x, 0) + a_c * min(x, 0), one learned slope a_c per channel (axis 1), or one
    shared slope. Param blob: shape (C,), or () with channel_shared (Caffe's 0-axis blob);
    filler default constant 0.25.
    dx = dy * ((x > 0) + a_c (x <= 0)); da_c = sum over all but axis 1 of dy * x * (x <= 0).
    """
    keep_x = True

    def setup(self, bottom, top):
        p = self.layer_param.prelu_param
        if len(bottom[0].shape) < 2:
            raise LayerError(f'PReLU needs a bottom of at least 2 axes, got shape {bottom[0].shape}')
        self.channel_shared = bool(p.channel_shared)
        if self.blobs:
            return
        filler = p.filler if p.HasField('filler') else pb.FillerParameter(type='constant', value=0.25)
        shape = () if self.channel_shared else (bottom[0].shape[1],)
        self.blobs = [self.make_param_blob(shape, filler)]

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) < 2:
            raise LayerError(f'PReLU needs a bottom of at least 2 axes, got shape {shape}')
        expected = 1 if self.channel_shared else shape[1]
        if self.blobs[0].count != expected:
            raise LayerError(f'PReLU slope blob has {self.blobs[0].count} values, '
                             f'the input needs {expected} (channels {shape[1]}, '
                             f'channel_shared {self.channel_shared})')
        top[0].reshape(shape)

    def _slope(self, x):
        """The slopes shaped to broadcast against x (N x C x ...)."""
        a = self.blobs[0].xdata
        if self.channel_shared:
            return a.reshape(())
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))

    def compute(self, xp, x):
        return xp.where(x > 0, x, x * self._slope(x))

    def backward(self, top, propagate_down, bottom):
        dy = top[0].xdiff
        xp = backend.get_array_module(dy)
        x = self._x
        positive = x > 0
        if self.param_needs_grad(0):
            contrib = xp.where(positive, 0, dy * x)
            if self.channel_shared:
                grad = contrib.sum().reshape(())
            else:
                axes = (0,) + tuple(range(2, x.ndim))
                grad = contrib.sum(axis=axes)
            slope_diff = self.blobs[0].xdiff
            slope_diff += grad  # in place: 0-d arithmetic would give a NumPy scalar
        if propagate_down[0]:
            bottom[0].xdiff = xp.where(positive, dy, dy * self._slope(x))
