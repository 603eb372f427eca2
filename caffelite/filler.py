"""Caffe's weight fillers, drawn from the seeded host stream (backend.host_rng).

fan_in = count / shape[0] and fan_out = count / shape[1], as Caffe computes them
(for a conv weight num_output x C x kh x kw: fan_in = C*kh*kw, fan_out = num_output*kh*kw).
"""
import numpy as np

from . import backend
from .errors import CaffeliteError

FILLERS = {}


def _filler(name):
    def register(fn):
        FILLERS[name] = fn
        return fn
    return register


def _fans(shape):
    count = int(np.prod(shape))
    fan_in = count // shape[0] if len(shape) > 0 and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _scale_n(param, shape):
    fan_in, fan_out = _fans(shape)
    norm = param.variance_norm
    if norm == param.FAN_OUT:
        return fan_out
    if norm == param.AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_in


@_filler('constant')
def _constant(param, shape, rng):
    return np.full(shape, param.value)


@_filler('uniform')
def _uniform(param, shape, rng):
    return rng.uniform(param.min, param.max, size=shape)


@_filler('gaussian')
def _gaussian(param, shape, rng):
    values = rng.normal(param.mean, param.std, size=shape)
    if param.sparse >= 0:
        # Caffe: keep each weight with probability sparse / num_outputs (num_outputs = shape[0]).
        if len(shape) < 2:
            raise CaffeliteError('the sparse gaussian filler needs a blob of at least 2 axes')
        keep = rng.random(shape) < param.sparse / float(shape[0])
        values *= keep
    return values


@_filler('positive_unitball')
def _positive_unitball(param, shape, rng):
    values = rng.random(shape).reshape(shape[0], -1)
    values /= values.sum(axis=1, keepdims=True)
    return values.reshape(shape)


@_filler('xavier')
def _xavier(param, shape, rng):
    scale = np.sqrt(3.0 / _scale_n(param, shape))
    return rng.uniform(-scale, scale, size=shape)


@_filler('msra')
def _msra(param, shape, rng):
    return rng.normal(0.0, np.sqrt(2.0 / _scale_n(param, shape)), size=shape)


@_filler('bilinear')
def _bilinear(param, shape, rng):
    """Bilinear upsampling kernel for Deconvolution: (1 - |x/f - c|) * (1 - |y/f - c|)."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise CaffeliteError(f'the bilinear filler needs a 4-D blob with square kernels, got {shape}')
    f = np.ceil(shape[3] / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    y, x = np.meshgrid(np.arange(shape[2]), np.arange(shape[3]), indexing='ij')
    kernel = (1 - np.abs(x / f - c)) * (1 - np.abs(y / f - c))
    return np.broadcast_to(kernel, shape).copy()


def fill(param, shape, dtype=np.float32):
    """A NumPy array of ``shape`` filled as the FillerParameter ``param`` says."""
    try:
        fn = FILLERS[param.type]
    except KeyError:
        raise CaffeliteError(f'unknown filler type "{param.type}" '
                             f'(known: {", ".join(sorted(FILLERS))})') from None
    shape = tuple(int(s) for s in shape)
    return np.asarray(fn(param, shape, backend.host_rng()), dtype=dtype)
