"""pycaffe's ``caffe.io`` image side: load_image, resize_image, oversample, Transformer.

Conventions are pycaffe's: an image is float32, H x W x K (K = 3 for RGB colour, 1 for
gray), values in [0, 1] as ``load_image`` returns them; a net input is K x H x W, usually
BGR and in [0, 255] after :class:`Transformer`. Re-exported by :mod:`caffelite.io`, so
``caffe.io.load_image`` etc. work with ``import caffelite as caffe``.

Images are decoded with Pillow and resized with NumPy (SciPy only for spline orders 2-5),
reproducing what pycaffe gets from scikit-image / scipy.ndimage.
"""
import os

import numpy as np

from .errors import CaffeliteError

# skimage.color.rgb2gray's weights (ITU-R BT.709 luma), which pycaffe's gray loading uses.
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


# -- loading --------------------------------------------------------------------------------
def _palette_is_gray(img):
    palette = np.asarray(img.getpalette() or [], dtype=np.int64)
    palette = palette[:len(palette) // 3 * 3].reshape(-1, 3)
    return len(palette) > 0 and bool((palette == palette[:, :1]).all())


def _pil_to_float(img):
    """Pixels as float in [0, 1] the way skimage.img_as_float scales each integer type:
    2-D for gray, H x W x 3 or 4 for colour (alpha kept, as skimage reads it)."""
    if img.mode == 'P':
        img = img.convert('L' if _palette_is_gray(img) else
                          ('RGBA' if 'transparency' in img.info else 'RGB'))
    elif img.mode == 'LA':
        img = img.convert('L')
    elif img.mode in ('CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBX', 'RGBa', 'La', 'PA'):
        img = img.convert('RGB')
    array = np.asarray(img)
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype == np.uint8:
        return array / 255.0
    if array.dtype in (np.uint16, np.dtype('>u2'), np.dtype('<u2')):
        return array.astype(np.float64) / 65535.0
    if np.issubdtype(array.dtype, np.signedinteger):   # skimage maps int32 to [-1, 1]
        return array.astype(np.float64) / np.iinfo(np.int32).max
    return array.astype(np.float64)


def load_image(filename, color=True):
    """Load an image as pycaffe does: float32 H x W x 3 (RGB, ``color=True``) or H x W x 1
    (``color=False``: gray = 0.2125 R + 0.7154 G + 0.0721 B, skimage's rgb2gray), values
    in [0, 1]. A gray file loaded in colour is repeated over 3 channels; an alpha channel
    is dropped. Pixel order is the file's (no EXIF rotation), as skimage.io reads it."""
    from PIL import Image, UnidentifiedImageError
    path = os.fspath(filename)
    try:
        with Image.open(path) as img:
            img.load()
            array = _pil_to_float(img)
    except FileNotFoundError:
        raise CaffeliteError(f'image {path} does not exist') from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise CaffeliteError(f'cannot decode image {path}: {err}') from None
    if array.ndim == 3 and not color:
        array = array[:, :, :3] @ _GRAY_WEIGHTS
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
        if color:
            array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array, dtype=np.float32)


# -- resizing -------------------------------------------------------------------------------
def _taps(n_in, n_out, order, centres):
    """Source indices and weights for resampling one axis from n_in to n_out samples.

    ``centres``: scikit-image's mapping, pixel centres aligned, x = (i + 1/2) n_in/n_out - 1/2,
    samples outside the image count as 0 (mode 'constant'); otherwise scipy.ndimage.zoom's
    mapping, corners aligned, x = i (n_in - 1)/(n_out - 1). Order 0 takes the nearest sample
    (round half up), order 1 interpolates linearly between floor(x) and floor(x) + 1.
    """
    i = np.arange(n_out, dtype=np.float64)
    if centres:
        x = (i + 0.5) * (n_in / n_out) - 0.5
    else:
        x = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    if order == 0:
        return [(np.clip(np.floor(x + 0.5).astype(np.intp), 0, n_in - 1), np.ones(n_out))]
    low = np.floor(x).astype(np.intp)
    frac = x - low
    taps = []
    for index, weight in ((low, 1.0 - frac), (low + 1, frac)):
        inside = (index >= 0) & (index < n_in)
        taps.append((np.clip(index, 0, n_in - 1), np.where(inside, weight, 0.0)))
    return taps


def _resample_axis(array, axis, n_out, order, centres):
    taps = _taps(array.shape[axis], n_out, order, centres)
    shape = [1] * array.ndim
    shape[axis] = n_out
    return sum(np.take(array, index, axis=axis) * weight.reshape(shape)
               for index, weight in taps)


def _resample(array, new_dims, order, centres):
    """Resize axes 0 and 1 of ``array`` (separable, so exact for orders 0 and 1)."""
    if order in (0, 1):
        out = _resample_axis(array, 0, new_dims[0], order, centres)
        return _resample_axis(out, 1, new_dims[1], order, centres)
    try:
        from scipy import ndimage
    except ImportError:
        raise CaffeliteError(f'resize_image with interp_order={order} needs SciPy '
                             f'(pip install scipy); orders 0 and 1 work without it') from None
    factors = (new_dims[0] / array.shape[0], new_dims[1] / array.shape[1]) + \
        (1,) * (array.ndim - 2)
    if centres:
        return ndimage.zoom(array, factors, order=order, mode='grid-constant', cval=0.0,
                            grid_mode=True)
    return ndimage.zoom(array, factors, order=order)


def resize_image(im, new_dims, interp_order=1):
    """Resize an H x W x K image to ``new_dims`` = (height, width), as pycaffe does.

    K in {1, 3}: scikit-image's resize on the image rescaled to [0, 1] by its own min and max
    (then scaled back), pixel centres aligned, the border blending with the minimum (mode
    'constant'); a constant image stays constant. Other K: scipy.ndimage.zoom's mapping
    (corners aligned). ``interp_order``: 0 nearest, 1 bilinear, 2-5 spline (needs SciPy).
    Returns float32 new_h x new_w x K.
    """
    im = np.asarray(im)
    new_dims = tuple(int(d) for d in new_dims)
    if len(new_dims) != 2 or min(new_dims) < 1:
        raise ValueError(f'new_dims must be (height, width) >= 1, got {new_dims}')
    if not 0 <= int(interp_order) <= 5:
        raise ValueError(f'interp_order must be 0..5, got {interp_order}')
    if im.ndim < 2 or min(im.shape[:2]) < 1:
        raise ValueError(f'resize_image needs an H x W (x K) image, got shape {im.shape}')
    if im.shape[:2] == new_dims:
        return im.astype(np.float32)
    work = im.astype(np.float64)
    if im.shape[-1] in (1, 3):
        low, high = work.min(), work.max()
        if high <= low:
            return np.full(new_dims + im.shape[2:], low, dtype=np.float32)
        unit = (work - low) / (high - low)
        resized = np.clip(_resample(unit, new_dims, interp_order, centres=True), 0.0, 1.0)
        return (resized * (high - low) + low).astype(np.float32)
    return _resample(work, new_dims, interp_order, centres=False).astype(np.float32)


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

    def _transform(self, in_, batch):
        """Transpose .. input_scale on a float32 batch N x (raw image axes), in place where
        possible (the batch is always this module's own copy)."""
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
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
        swap, undo the transpose."""
        self._check_input(in_)
        decaf_in = np.array(data, dtype=np.result_type(np.asarray(data).dtype, np.float32))
        if decaf_in.ndim == 4 and decaf_in.shape[0] == 1:   # a batch of one
            decaf_in = decaf_in[0]
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
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
        return decaf_in

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
