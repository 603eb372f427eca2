"""pycaffe's coord_map: how spatial coordinates map between the tops of a NetSpec net, and
``crop`` to align a top with another (as FCNs do after upsampling).

A map is (axis, a, b): a coordinate y in the bottom corresponds to a * y + b in the top,
for the spatial axes from ``axis`` on (``a`` and ``b`` are arrays, one value per axis or one
for all). Per layer type (k = the dilated kernel extent (kernel - 1) * dilation + 1):

- Convolution, Pooling, Im2col: a = 1/stride, b = (pad - (k - 1)/2) / stride
- Deconvolution: a = stride, b = (k - 1)/2 - pad
- Crop: a = 1, b = -offset (axis = crop axis - 1)
- pass-through layers (ReLU, Dropout, Eltwise, BatchNorm, ...): a = 1, b = 0, no axis
- anything else: the map is undefined and the walk stops there.
"""
import numpy as np

from .net_spec import layers as L

PASS_THROUGH_LAYERS = ['AbsVal', 'BatchNorm', 'Bias', 'BNLL', 'Dropout', 'Eltwise', 'ELU',
                       'Log', 'LRN', 'Exp', 'MVN', 'Power', 'ReLU', 'PReLU', 'Scale',
                       'Sigmoid', 'Split', 'TanH', 'Threshold']


class UndefinedMapException(Exception):
    """The layer type has no known coordinate map."""


class AxisMismatchException(Exception):
    """Two maps act on different spatial axes."""


class CropError(AssertionError, ValueError):
    """``crop`` cannot align the tops: an AssertionError, as pycaffe's asserts raise (and a
    ValueError, for callers that catch bad arguments as such)."""


def conv_params(fn):
    """(axis, stride, dilated kernel extent, pad) of a Convolution/Pooling/Deconvolution
    Function, from its ``convolution_param``/``pooling_param`` dict or its own keywords."""
    for group in ('convolution_param', 'pooling_param'):
        if group in fn.params:
            params = fn.params[group]
            break
    else:
        params = fn.params
    legacy = {'pad_h', 'pad_w', 'kernel_h', 'kernel_w', 'stride_h', 'stride_w'} & set(params)
    if legacy:
        raise ValueError(f'coord_map does not support the legacy _h/_w params '
                         f'({", ".join(sorted(legacy))}) of {fn.type_name}')
    if 'kernel_size' not in params:
        raise ValueError(f'coord_map needs kernel_size for {fn.type_name}')
    axis = params.get('axis', 1)
    kernel = np.array(params['kernel_size'], ndmin=1)
    dilation = np.array(params.get('dilation', 1), ndmin=1)
    return (axis, np.array(params.get('stride', 1), ndmin=1), (kernel - 1) * dilation + 1,
            np.array(params.get('pad', 0), ndmin=1))


def crop_params(fn):
    """(axis, offset) of a Crop Function; Caffe's default axis is 2 (the spatial axes of
    N x C x H x W)."""
    params = fn.params.get('crop_param', fn.params)
    return params.get('axis', 2), np.array(params.get('offset', 0), ndmin=1)


def coord_map(fn):
    """The (axis, a, b) map from ``fn``'s bottom to its top."""
    if fn.type_name in ('Convolution', 'Pooling', 'Im2col'):
        axis, stride, extent, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if fn.type_name == 'Deconvolution':
        axis, stride, extent, pad = conv_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == 'Crop':
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset          # axis - 1: the last non-coordinate axis
    raise UndefinedMapException(fn.type_name)


def compose(base_map, next_map):
    """The map ``next_map`` after ``base_map``: y -> a1 (a2 y + b2) + b1."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        axis = ax2
    elif ax2 is None or ax1 == ax2:
        axis = ax1
    else:
        raise AxisMismatchException(f'axis {ax1} vs {ax2}')
    return axis, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    axis, a, b = coord_map
    return axis, 1 / a, -b / a


def _walk_bottoms(top):
    """The bottoms a coordinate walk follows: all, except a Crop's reference bottom."""
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == 'Crop' else bottoms


def coord_map_from_to(top_from, top_to):
    """(axis, a, b) such that a coordinate y in ``top_from`` is a * y + b in ``top_to``,
    through their nearest common ancestor blob. Raises RuntimeError when no chain of
    mappable layers connects them."""
    from_maps = {top_from: (None, 1, 0)}
    frontier = [top_from]
    while frontier:
        top = frontier.pop()
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _walk_bottoms(top):
            from_maps[bottom] = compose(from_maps[top], step)
            frontier.append(bottom)

    to_maps = {top_to: (None, 1, 0)}
    frontier = [top_to]
    while frontier:
        top = frontier.pop()
        if top in from_maps:
            return compose(to_maps[top], inverse(from_maps[top]))
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _walk_bottoms(top):
            to_maps[bottom] = compose(to_maps[top], step)
            frontier.append(bottom)
    raise RuntimeError('Could not compute map between tops; are they connected by '
                       'spatial layers?')


def crop(top_from, top_to):
    """A Crop layer (Top) cutting ``top_from`` to align with ``top_to``; the offset comes
    from their coordinate map, which must be a pure non-positive integer shift."""
    axis, a, b = coord_map_from_to(top_from, top_to)
    if axis is None:
        raise ValueError('no spatial layer between the tops: their coordinates already '
                         'agree, there is nothing to crop')
    a, b = np.asarray(a), np.asarray(b)
    if not (a == 1).all():
        raise CropError(f'scale mismatch on crop (a = {a})')
    if not (b <= 0).all():
        raise CropError(f'cannot crop negative offset (b = {b})')
    if not (np.round(b) == b).all():
        raise CropError(f'cannot crop noninteger offset (b = {b})')
    return L.Crop(top_from, top_to,
                  crop_param=dict(axis=axis + 1,     # +1: the first cropped axis
                                  offset=[int(v) for v in -np.round(b).astype(int)]))
