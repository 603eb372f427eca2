"""Normalisation layers: BatchNorm and MVN (Caffe 1.0 semantics).

BatchNorm has no learned scale/shift (Caffe follows it with a Scale layer, ``bias_term: true``).
"""
from ..backend import get_array_module
from ..errors import LayerError
from ..proto import caffelite_pb2 as pb
from .base import Layer, register


@register('BatchNorm')
class BatchNormLayer(Layer):
    """y = (x - mean) / sqrt(var + eps), per channel (axis 1; a 1-D bottom is one channel),
    statistics over the batch and all spatial positions.

    Blobs (Caffe's, in order): running mean sum (C,), running variance sum (C,), scale factor
    (1,). With ``use_global_stats`` (default: true at TEST, false at TRAIN) mean = blobs[0] / s
    and var = blobs[1] / s with s = blobs[2][0] (0 if s == 0). Otherwise the batch statistics
    are used (var = E[(x - E x)^2]) and forward updates, with f = moving_average_fraction and
    m = count / C:
        s <- f s + 1;  blobs[0] <- mean + f blobs[0];  blobs[1] <- m / (m - 1) var + f blobs[1]
    (the unbiased variance; the factor is 1 when m == 1).

    The blobs are statistics, not learned parameters: as in Caffe, setup appends a ParamSpec
    with ``lr_mult: 0`` for each blob the prototxt leaves unspecified, and rejects a non-zero
    ``lr_mult`` (so neither the learning rate nor weight decay touches them). Backward writes
    no parameter gradient.
    """
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.batch_norm_param
        self.use_global_stats = (p.use_global_stats if p.HasField('use_global_stats')
                                 else self.phase == pb.TEST)
        self.fraction = float(p.moving_average_fraction)
        self.eps = float(p.eps)
        shape = bottom[0].shape
        if not shape:
            raise LayerError('BatchNorm needs a bottom with at least one axis')
        self.channels = 1 if len(shape) == 1 else shape[1]
        if not self.blobs:
            self.blobs = [self.make_param_blob((self.channels,)),
                          self.make_param_blob((self.channels,)),
                          self.make_param_blob((1,))]
        for i in range(len(self.blobs)):
            if len(self.layer_param.param) == i:
                self.layer_param.param.add(lr_mult=0.0)
            elif self.layer_param.param[i].lr_mult != 0:
                raise LayerError('cannot configure batch normalization statistics as layer '
                                 f'parameters: param {i} has lr_mult '
                                 f'{self.layer_param.param[i].lr_mult}, it must be 0')

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        channels = 1 if len(shape) == 1 else shape[1]
        if not shape or channels != self.channels:
            raise LayerError(f'BatchNorm was set up for {self.channels} channels, bottom has '
                             f'shape {shape}')
        top[0].reshape(shape)

    def _split(self, array):
        """(N, C, spatial) view of a bottom-shaped array."""
        return array.reshape(array.shape[0], self.channels, -1)

    def forward(self, bottom, top):
        xp = get_array_module(bottom[0].xdata)
        x = self._split(bottom[0].xdata)
        if self.use_global_stats:
            factor = float(self.blobs[2].xdata[0])
            scale = 0.0 if factor == 0 else 1.0 / factor
            mean = scale * self.blobs[0].xdata
            var = scale * self.blobs[1].xdata
            centred = x - mean[None, :, None]
        else:
            mean = x.mean(axis=(0, 2))
            centred = x - mean[None, :, None]
            var = (centred * centred).mean(axis=(0, 2))
            m = x.size // self.channels
            correction = m / (m - 1) if m > 1 else 1.0
            f = self.fraction
            self.blobs[2].xdata = self.blobs[2].xdata * f + 1
            self.blobs[0].xdata = mean + f * self.blobs[0].xdata
            self.blobs[1].xdata = correction * var + f * self.blobs[1].xdata
        self._std = xp.sqrt(var + self.eps)[None, :, None]
        # Cached: a later in-place layer may overwrite the top.
        self._normalized = centred / self._std
        top[0].xdata = self._normalized.reshape(bottom[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = self._split(top[0].xdiff)
        if self.use_global_stats:
            dx = dy / self._std
        else:
            # dx = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps), means per channel.
            y = self._normalized
            dx = (dy - dy.mean(axis=(0, 2), keepdims=True)
                  - (dy * y).mean(axis=(0, 2), keepdims=True) * y) / self._std
        bottom[0].xdiff = dx.reshape(bottom[0].shape)


@register('MVN')
class MVNLayer(Layer):
    """Mean-variance normalisation per item and channel (or per item with
    ``across_channels``): y = x - mean, and with ``normalize_variance`` (default)
    y = (x - mean) / (std + eps), std = sqrt(E[(x - mean)^2]) (eps added to the std, as Caffe).

    Backward is Caffe's: dx = (dy - mean(dy) - mean(dy * y) * y) / (std + eps), which is
    the exact gradient up to a relative O(eps / std) term (Caffe's formula treats std + eps
    as the std in the variance term).
    """
    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if not shape:
            raise LayerError('MVN needs a bottom with at least one axis')
        p = self.layer_param.mvn_param
        channels = shape[1] if len(shape) > 1 else 1
        self.num = shape[0] if p.across_channels else shape[0] * channels
        top[0].reshape(shape)

    def forward(self, bottom, top):
        xp = get_array_module(bottom[0].xdata)
        p = self.layer_param.mvn_param
        x = bottom[0].xdata.reshape(self.num, -1)
        y = x - x.mean(axis=1, keepdims=True)
        if p.normalize_variance:
            self._std = xp.sqrt((y * y).mean(axis=1, keepdims=True)) + p.eps
            y = y / self._std
        self._normalized = y  # cached: a later in-place layer may overwrite the top
        top[0].xdata = y.reshape(bottom[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].xdiff.reshape(self.num, -1)
        dx = dy - dy.mean(axis=1, keepdims=True)
        if self.layer_param.mvn_param.normalize_variance:
            y = self._normalized
            dx = (dx - (dy * y).mean(axis=1, keepdims=True) * y) / self._std
        bottom[0].xdiff = dx.reshape(bottom[0].shape)
