"""pycaffe's caffe.io preprocessing: Transformer (images -> net inputs and back) and
oversample (Caffe's 10 crops).

Conventions are pycaffe's: an image is float32, H x W x K (K = 3 for RGB colour, 1 for
gray), values in [0, 1] as ``caffe.io.load_image`` returns them (:func:`.images.load_image`);
a net input is K x H x W, usually BGR and in [0, 255] after :class:`Transformer`.
Re-exported by :mod:`caffelite.io`, so ``caffe.io.Transformer`` works with
``import caffelite as caffe``.
"""
import numpy as np

from ..errors import CaffeliteError
from .images import resize_image


# -- cropping -------------------------------------------------------------------------------
def crop_positions(image_dims, crop_dims):
    """The (y, x) corners of Caffe's five crops, in pycaffe's order: top-left, top-right,
    bottom-left, bottom-right, centre (floor(H/2 - h/2), floor(W/2 - w/2))."""
    (height, width), (ch, cw) = image_dims, crop_dims
    return [(0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw),
            (int(height / 2.0 - ch / 2.0), int(width / 2.0 - cw / 2.0))]


def oversample(images, crop_dims):
    """Caffe's 10-crop: for each H x W x K image (all the same shape), the four corner crops
    and the centre crop, then those five mirrored left-right.

    Returns float32 (10 N) x h x w x K, the ten crops of each image consecutive.
    """
    batch = np.stack([np.asarray(im) for im in images]) if not isinstance(images, np.ndarray) \
        else images
    if batch.ndim != 4:
        raise ValueError(f'oversample needs H x W x K images, got a batch of shape '
                         f'{batch.shape}')
    ch, cw = (int(d) for d in crop_dims)
    height, width = batch.shape[1:3]
    if not (0 < ch <= height and 0 < cw <= width):
        raise ValueError(f'crop {ch} x {cw} does not fit in images of {height} x {width}')
    crops = np.stack([batch[:, y:y + ch, x:x + cw]
                      for y, x in crop_positions((height, width), (ch, cw))], axis=1)
    crops = np.concatenate([crops, crops[:, :, :, ::-1]], axis=1)
    return crops.reshape((-1, ch, cw) + batch.shape[3:]).astype(np.float32)


# -- Transformer ----------------------------------------------------------------------------
class Transformer:
    """pycaffe's caffe.io.Transformer: turn H x W x K images into net inputs and back.

    ``inputs``: {input name: its blob shape (N, K, H, W)}. :meth:`preprocess` applies, in
    this order: cast to float32, resize to the input's H x W (if it differs), transpose,
    channel swap, ``* raw_scale``, ``- mean``, ``* input_scale``; :meth:`deprocess` undoes
    them in reverse order. The settings live in the dicts ``transpose``, ``channel_swap``,
    ``raw_scale``, ``mean``, ``input_scale`` keyed by input name, as in pycaffe.
    """

    def __init__(self, inputs):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise CaffeliteError(f'{in_} is not one of the net inputs: {list(self.inputs)}')

    def _settings(self, in_):
        """(transpose, channel_swap, raw_scale, mean, input_scale) of ``in_``; None where
        unset."""
        return tuple(getattr(self, name).get(in_) for name in
                     ('transpose', 'channel_swap', 'raw_scale', 'mean', 'input_scale'))

    def _transform(self, in_, batch):
        """Transpose .. input_scale on a float32 batch N x (raw image axes), in place where
        possible (the batch is always this module's own copy)."""
        transpose, channel_swap, raw_scale, mean, input_scale = self._settings(in_)
        if transpose is not None:
            batch = batch.transpose((0,) + tuple(1 + int(a) for a in transpose))
        if channel_swap is not None:
            batch = batch[:, list(channel_swap)]
        if raw_scale is not None:
            batch *= raw_scale
        if mean is not None:
            batch -= mean
        if input_scale is not None:
            batch *= input_scale
        return batch

    def preprocess(self, in_, data):
        """One H x W x K image -> the K x H' x W' array for input ``in_``.
        The caller's array is not modified."""
        self._check_input(in_)
        caffe_in = np.array(data, dtype=np.float32)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        return np.ascontiguousarray(self._transform(in_, caffe_in[np.newaxis])[0])

    def preprocess_batch(self, in_, images):
        """Like :meth:`preprocess` on each of N images at once -> N x K x H' x W' (a
        caffelite extension: one vectorised pass when the images already have the input's
        H' x W'; otherwise each is resized first)."""
        self._check_input(in_)
        in_dims = self.inputs[in_][2:]
        if isinstance(images, np.ndarray) and images.ndim >= 3 and images.shape[1:3] == in_dims:
            batch = np.array(images, dtype=np.float32)
        else:
            batch = np.stack([np.asarray(im, np.float32) if np.shape(im)[:2] == in_dims
                              else resize_image(im, in_dims) for im in images])
        return np.ascontiguousarray(self._transform(in_, batch))

    def deprocess(self, in_, data):
        """Invert :meth:`preprocess` (except the resize): K x H x W (or 1 x K x H x W) ->
        H x W x K. Steps in reverse: / input_scale, + mean, / raw_scale, undo the channel
        swap, undo the transpose; then axes of size 1 are dropped, as pycaffe's squeeze does
        (a one-channel image comes back H x W; pycaffe squeezes first, which fails there when
        a transpose or mean is set)."""
        self._check_input(in_)
        decaf_in = np.array(data, dtype=np.result_type(np.asarray(data).dtype, np.float32))
        if decaf_in.ndim == 4 and decaf_in.shape[0] == 1:   # a batch of one
            decaf_in = decaf_in[0]
        transpose, channel_swap, raw_scale, mean, input_scale = self._settings(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap)]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in.squeeze()

    def set_transpose(self, in_, order):
        """Axis order taking the raw image to the input's layout, e.g. (2, 0, 1) for
        H x W x K -> K x H x W."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise CaffeliteError('Transpose order needs to have the same number of '
                                 'dimensions as the input.')
        if sorted(int(a) for a in order) != list(range(len(order))):
            raise CaffeliteError(f'transpose order {tuple(order)} is not a permutation')
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """Channel order applied after the transpose, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise CaffeliteError('Channel swap needs to have the same number of '
                                 'dimensions as the input channels.')
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """Multiply by ``scale`` after the channel swap (e.g. 255 for [0, 1] images)."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Subtract ``mean`` after the raw scale: one value per channel (shape (K,)) or an
        image of the input's K x H x W (or H x W for one channel)."""
        self._check_input(in_)
        mean = np.asarray(mean)
        shape = mean.shape
        if mean.ndim == 1:
            if shape[0] != self.inputs[in_][1]:
                raise ValueError('Mean channels incompatible with input.')
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(shape) == 2:
                shape = (1,) + shape
            if len(shape) != 3:
                raise ValueError('Mean shape invalid')
            if shape != self.inputs[in_][1:]:
                raise ValueError('Mean shape incompatible with input shape.')
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply by ``scale`` after the mean subtraction."""
        self._check_input(in_)
        self.input_scale[in_] = scale
