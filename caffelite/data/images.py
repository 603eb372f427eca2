"""Image decode, encode and resize: one decoder, one encoder, one resampler.

Two layouts, one decoder (:func:`_decode`, Pillow) under both:

- Caffe's, for the data layers, the tools and Datum's encoded bytes: uint8 C x H x W, BGR for
  colour (what OpenCV's ``imread`` gives Caffe), 1 channel for grayscale (ITU-R 601 luma, as
  OpenCV), EXIF orientation applied (as OpenCV >= 3.1): :func:`decode_image`,
  :func:`read_image` (decode + Caffe's resize rules), :func:`read_images` (many, threaded);
- pycaffe's (``caffe.io.load_image``): float32 H x W x K, RGB, values in [0, 1] scaled the
  way skimage.img_as_float scales each integer type, gray = skimage's rgb2gray (BT.709),
  pixels in file order: :func:`load_image`.

Resizing, one separable two-tap resampler (:func:`_resample`) with the border rule as a
parameter: :func:`resize_bilinear` is OpenCV's INTER_LINEAR on uint8 H x W x C (Caffe's
layers); :func:`resize_image` is pycaffe's (scikit-image / scipy.ndimage) on float H x W x K.
"""
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import CaffeliteError, LayerError

#: Encoder names of the ``encode_type`` values convert_imageset accepts.
ENCODE_FORMATS = {'jpg': 'JPEG', 'jpeg': 'JPEG', 'png': 'PNG', 'bmp': 'BMP', 'ppm': 'PPM',
                  'pgm': 'PPM', 'tif': 'TIFF', 'tiff': 'TIFF', 'webp': 'WEBP'}
#: File name endings taken for images (frame folders of VideoData).
IMAGE_EXTENSIONS = tuple('.' + ext for ext in ENCODE_FORMATS)

# skimage.color.rgb2gray's weights (ITU-R BT.709 luma), which pycaffe's gray loading uses.
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
# Pillow modes decoded to one channel when Caffe keeps the file's own channels.
_GRAY_MODES = ('1', 'L', 'I', 'I;16', 'I;16B', 'I;16L', 'F')


# -- decoding -------------------------------------------------------------------------------
def _decode(source, to_array, exif, error=LayerError):
    """Open ``source`` (a path, or the bytes of an image file) with Pillow, apply the EXIF
    orientation when ``exif``, and return ``to_array(image)``. A missing or undecodable file
    raises ``error`` naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    from PIL.Image import DecompressionBombError
    if isinstance(source, (bytes, bytearray, memoryview)):
        what, opened = 'the encoded image', io.BytesIO(source)
    else:
        opened = os.fspath(source)
        what = f'image {opened}'
    try:
        with Image.open(opened) as img:
            img.load()
            return to_array(ImageOps.exif_transpose(img) if exif else img)
    except FileNotFoundError:
        raise error(f'{what} does not exist') from None
    except DecompressionBombError as err:       # too many pixels to decode safely
        raise error(f'cannot decode {what}: too large ({err})') from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError, MemoryError) as err:
        raise error(f'cannot decode {what}: {type(err).__name__}: {err}') from None


def _caffe_pixels(img, color):
    """uint8 H x W x C in Caffe's channel order: color True: BGR; False: 1 gray channel;
    None: the file's own channels, as OpenCV's ``imdecode(..., IMREAD_UNCHANGED)`` gives them
    (1 for grayscale, 4 (BGRA) with an alpha channel, else 3 (BGR))."""
    if color is None:
        if img.mode in _GRAY_MODES:
            color = False
        elif 'A' in img.getbands() or 'transparency' in img.info:
            return np.asarray(img.convert('RGBA'), dtype=np.uint8)[:, :, [2, 1, 0, 3]]
        else:
            color = True
    array = np.asarray(img.convert('RGB' if color else 'L'), dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array[:, :, ::-1]


def decode_image(source, color=None):
    """Decode an image file (a path, or its bytes as a Datum holds them) into Caffe's
    layout, uint8 C x H x W; ``color`` as in :func:`_caffe_pixels`. Raises LayerError."""
    hwc = _decode(source, lambda img: _caffe_pixels(img, color), exif=True)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def upscaled_size(height, width, min_height, min_width):
    """The LRCN fork's ReadImageToCVMat rule for images smaller than min_height x min_width:
    scale (keeping the aspect ratio, rounded) so the side that falls shorter reaches its
    minimum. None when no resize is needed."""
    if not (height < min_height or width < min_width):
        return None
    f32 = np.float32
    if min_width - width > min_height - height:
        return int(f32(min_width) * (f32(height) / f32(width)) + f32(0.5)), min_width
    return min_height, int(f32(min_height) * (f32(width) / f32(height)) + f32(0.5))


def read_image(path, is_color=True, new_height=0, new_width=0, min_height=0, min_width=0):
    """Caffe's ReadImageToCVMat: :func:`decode_image` (3-channel BGR, or 1 gray channel), then
    with new_height and new_width both set a :func:`resize_bilinear` to that size; otherwise
    an image smaller than min_height x min_width is upscaled (:func:`upscaled_size`, the LRCN
    fork's extension). Returns uint8 C x H x W; raises LayerError naming the file."""
    hwc = _decode(path, lambda img: _caffe_pixels(img, bool(is_color)), exif=True)
    if new_height > 0 and new_width > 0:
        hwc = resize_bilinear(hwc, new_height, new_width)
    elif min_height > 0 or min_width > 0:
        size = upscaled_size(hwc.shape[0], hwc.shape[1], min_height, min_width)
        if size is not None:
            hwc = resize_bilinear(hwc, *size)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def read_listed_image(path, number, list_file, is_color, new_height=0, new_width=0,
                      min_height=0, min_width=0):
    """:func:`read_image`, with the list file and line in the error message."""
    try:
        return read_image(path, is_color, new_height, new_width, min_height, min_width)
    except LayerError as err:
        raise LayerError(f'{err} ({list_file} line {number})') from None


_decode_pool_state = {'pool': None, 'lock': threading.Lock()}
#: Threads decoding the images of a batch (Pillow decodes without holding the GIL).
DECODE_THREADS = min(8, os.cpu_count() or 1)


def read_images(jobs, list_file, is_color, sizes):
    """:func:`read_listed_image` over [(path, list line)], in order, on a shared thread pool;
    the first failing image (in list order, as when decoding one by one) raises.
    sizes: (new_height, new_width, min_height, min_width)."""
    def one(job):
        return read_listed_image(job[0], job[1], list_file, is_color, *sizes)
    if DECODE_THREADS <= 1 or len(jobs) <= 1:
        return [one(job) for job in jobs]
    with _decode_pool_state['lock']:
        if _decode_pool_state['pool'] is None:
            _decode_pool_state['pool'] = ThreadPoolExecutor(DECODE_THREADS,
                                                             thread_name_prefix='decode')
        pool = _decode_pool_state['pool']
    return list(pool.map(one, jobs))


def _palette_is_gray(img):
    palette = np.asarray(img.getpalette() or [], dtype=np.int64)
    palette = palette[:len(palette) // 3 * 3].reshape(-1, 3)
    return len(palette) > 0 and bool((palette == palette[:, :1]).all())


def _float_pixels(img):
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
    is dropped. Pixel order is the file's (no EXIF rotation), as skimage.io reads it.
    Raises CaffeliteError naming the file."""
    array = _decode(filename, _float_pixels, exif=False, error=CaffeliteError)
    if array.ndim == 3 and not color:
        array = array[:, :, :3] @ _GRAY_WEIGHTS
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
        if color:
            array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array, dtype=np.float32)


# -- encoding -------------------------------------------------------------------------------
def encode_image(array, encode_type):
    """Encode a uint8 C x H x W (BGR or gray) image as ``encode_type`` ('jpg', 'png', ...),
    as OpenCV's imencode does (JPEG quality 95)."""
    from PIL import Image
    fmt = ENCODE_FORMATS.get(encode_type.lower().lstrip('.'))
    if fmt is None:
        raise CaffeliteError(f'unknown encode_type "{encode_type}"; use one of '
                             f'{", ".join(sorted(ENCODE_FORMATS))}')
    array = np.asarray(array, dtype=np.uint8)
    if array.shape[0] == 1:
        img = Image.fromarray(array[0], 'L')
    else:
        img = Image.fromarray(np.ascontiguousarray(array[::-1].transpose(1, 2, 0)), 'RGB')
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({'quality': 95} if fmt == 'JPEG' else {}))
    return buffer.getvalue()


# -- resizing -------------------------------------------------------------------------------
#: Border rules of :func:`_taps`: how output sample i maps to source position x, and what a
#: tap outside the image reads.
CENTRES_ZERO, CENTRES_EDGE, CORNERS = 'centres-zero', 'centres-edge', 'corners'


def _taps(n_in, n_out, order, border):
    """Source indices and weights for resampling one axis from n_in to n_out samples.

    Pixel centres aligned (CENTRES_*), x = (i + 1/2) n_in/n_out - 1/2: samples outside the
    image count as 0 (CENTRES_ZERO, scikit-image's mode 'constant') or as the nearest edge
    pixel (CENTRES_EDGE, OpenCV's INTER_LINEAR); CORNERS: scipy.ndimage.zoom's mapping,
    x = i (n_in - 1)/(n_out - 1). Order 0 takes the nearest sample (round half up), order 1
    interpolates linearly between floor(x) and floor(x) + 1.
    """
    i = np.arange(n_out, dtype=np.float64)
    if border == CORNERS:
        x = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    else:
        x = (i + 0.5) * (n_in / n_out) - 0.5
    if order == 0:
        return [(np.clip(np.floor(x + 0.5).astype(np.intp), 0, n_in - 1), np.ones(n_out))]
    low = np.floor(x).astype(np.intp)
    frac = x - low
    taps = []
    for index, weight in ((low, 1.0 - frac), (low + 1, frac)):
        if border == CENTRES_ZERO:
            weight = np.where((index >= 0) & (index < n_in), weight, 0.0)
        taps.append((np.clip(index, 0, n_in - 1), weight))
    return taps


def _resample_axis(array, axis, n_out, order, border):
    taps = _taps(array.shape[axis], n_out, order, border)
    shape = [1] * array.ndim
    shape[axis] = n_out
    return sum(np.take(array, index, axis=axis) * weight.reshape(shape)
               for index, weight in taps)


def _resample(array, new_dims, order, border):
    """Resize axes 0 and 1 of float ``array`` (separable, so exact for orders 0 and 1; the
    axis that shrinks the work more goes first)."""
    if order in (0, 1):
        (h, w), (new_h, new_w) = array.shape[:2], new_dims
        if new_h * w <= h * new_w:
            out = _resample_axis(array, 0, new_h, order, border)
            return _resample_axis(out, 1, new_w, order, border)
        out = _resample_axis(array, 1, new_w, order, border)
        return _resample_axis(out, 0, new_h, order, border)
    try:
        from scipy import ndimage
    except ImportError:
        raise CaffeliteError(f'resize_image with interp_order={order} needs SciPy '
                             f'(pip install scipy); orders 0 and 1 work without it') from None
    factors = (new_dims[0] / array.shape[0], new_dims[1] / array.shape[1]) + \
        (1,) * (array.ndim - 2)
    if border == CENTRES_ZERO:
        return ndimage.zoom(array, factors, order=order, mode='grid-constant', cval=0.0,
                            grid_mode=True)
    return ndimage.zoom(array, factors, order=order)


def resize_bilinear(image, height, width):
    """Resize an H x W x C uint8 image like OpenCV's ``cv::resize`` with INTER_LINEAR.

    Pixel centres are aligned (source coordinate ``(d + 0.5) * src / dst - 0.5``, clamped to
    the image), two taps per axis, no antialiasing -- unlike Pillow's BILINEAR, which widens
    its filter when shrinking. OpenCV computes in 11-bit fixed point; this computes in float
    and rounds, so values may differ from OpenCV's by 1.
    """
    if image.shape[:2] == (height, width):
        return image
    out = _resample(image.astype(np.float64), (height, width), 1, CENTRES_EDGE)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


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
        resized = np.clip(_resample(unit, new_dims, interp_order, CENTRES_ZERO), 0.0, 1.0)
        return (resized * (high - low) + low).astype(np.float32)
    return _resample(work, new_dims, interp_order, CORNERS).astype(np.float32)
