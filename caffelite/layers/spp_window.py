"""WindowData (Caffe's WindowDataLayer, the R-CNN fine-tuning input).

The SPP layer (spatial pyramid pooling) is registered in vision.py next to the Pooling
functions it is built from (``PoolGeometry``, ``pool_forward``, ``pool_backward``).

Window file format (whitespace separated; one block per image, image_index 0, 1, 2, ...)::

    # image_index
    image_path
    channels
    height
    width
    num_windows
    class_index overlap x1 y1 x2 y2      (num_windows lines; pixel corners, inclusive)

A window with overlap >= fg_threshold is foreground (its class_index must be > 0); one with
overlap < bg_threshold is background (label 0); the others are not used. A batch holds
``batch_size - int(batch_size * fg_fraction)`` background windows, then the foreground
ones, each drawn uniformly at random; each is cut out of its image (read as 3-channel BGR),
warped to crop_size x crop_size, optionally mirrored, and mean-subtracted and scaled.
"""
import os

import numpy as np

from ..data.images import decode_image, resize_bilinear
from ..data.listfile import read_text_lines, resolve_listed_files, resolve_path
from ..errors import MAX_QUOTE, CaffeliteError, LayerError, printable
from ..io import read_mean_binaryproto
from .base import register
from .data import PrefetchingDataLayer, _list_file, _source_dir

# Columns of the window tables.
IMAGE_INDEX, LABEL, X1, Y1, X2, Y2 = range(6)


def read_window_file(path, fg_threshold, bg_threshold):
    """Parse a window file. Returns (images, fg, bg): images is [(line, path, (C, H, W))];
    fg and bg are int64 arrays with rows (image_index, label, x1, y1, x2, y2), the label of
    background windows forced to 0; windows between the thresholds are dropped."""
    tokens = []
    for number, line in enumerate(read_text_lines(path, 'window file'), start=1):
        tokens.extend((tok, number) for tok in line.split())
    if not tokens:
        raise LayerError(f'window file {path} is empty')
    pos = 0

    def take(what, kind=str):
        nonlocal pos
        if pos >= len(tokens):
            raise LayerError(f'window file {path} ends early: expected {what}')
        tok, number = tokens[pos]
        pos += 1
        try:
            return kind(tok), number
        except ValueError:
            raise LayerError(f'window file {path} line {number}: expected {what}, got '
                             f'"{printable(tok, MAX_QUOTE)}"') from None

    images, fg, bg = [], [], []
    while pos < len(tokens):
        hashtag, number = take('"#"')
        if hashtag != '#':
            raise LayerError(f'window file {path} line {number}: expected "# image_index", '
                             f'got "{hashtag}"')
        index, number = take('an image index', int)
        if index != len(images):
            raise LayerError(f'window file {path} line {number}: image index {index}, expected '
                             f'{len(images)} (images must be numbered 0, 1, 2, ... in order)')
        image_path, path_line = take('an image path')
        size = tuple(take(what, int)[0] for what in ('channels', 'height', 'width'))
        num_windows, _ = take('the number of windows', int)
        for _ in range(num_windows):
            label, number = take('a class index', int)
            overlap, _ = take('an overlap', float)
            box = [take(what, int)[0] for what in ('x1', 'y1', 'x2', 'y2')]
            if overlap >= fg_threshold:
                if label <= 0:
                    raise LayerError(f'window file {path} line {number}: foreground window '
                                     f'(overlap {overlap} >= fg_threshold {fg_threshold}) has '
                                     f'class {label}; foreground classes must be > 0')
                fg.append([index, label] + box)
            elif overlap < bg_threshold:
                bg.append([index, 0] + box)
        images.append((path_line, image_path, size))
    return (images, np.asarray(fg, dtype=np.int64).reshape(-1, 6),
            np.asarray(bg, dtype=np.int64).reshape(-1, 6))


def _c_round(x):
    """C's round(): halves away from zero."""
    return int(np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5)))


def window_geometry(box, image_hw, crop, context_pad, square, mirror, ftype=np.float32):
    """Where a window is cut from its image and put in the crop (Caffe's arithmetic, in the
    net's float type ``ftype``).

    box: (x1, y1, x2, y2), inclusive. Returns ((x1, y1, x2, y2) clipped to the image,
    (warp_h, warp_w) the size the clipped region is resized to, (pad_h, pad_w) its offset
    in the crop_size x crop_size output). With context_pad or square, the region grows so
    that after warping there are context_pad pixels of context on each side (square: the
    shorter side grows to the longer first); the parts outside the image become padding.
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    height, width = image_hw
    f = ftype
    if not (context_pad > 0 or square):
        if x1 < 0 or y1 < 0 or x2 >= width or y2 >= height or x2 < x1 or y2 < y1:
            raise LayerError(f'window ({x1}, {y1}, {x2}, {y2}) does not lie inside its '
                             f'{width} x {height} image')
        return (x1, y1, x2, y2), (crop, crop), (0, 0)
    context_scale = f(crop) / f(crop - 2 * context_pad)
    half_height = f((y2 - y1 + 1) / 2.0)
    half_width = f((x2 - x1 + 1) / 2.0)
    center_x = f(x1) + half_width
    center_y = f(y1) + half_height
    if square:
        half_height = half_width = max(half_height, half_width)
    x1 = _c_round(center_x - half_width * context_scale)
    x2 = _c_round(center_x + half_width * context_scale)
    y1 = _c_round(center_y - half_height * context_scale)
    y2 = _c_round(center_y + half_height * context_scale)
    unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
    pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
    pad_x2, pad_y2 = max(0, x2 - width + 1), max(0, y2 - height + 1)
    x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
    if x1 > x2 or y1 > y2:
        raise LayerError(f'window {tuple(int(v) for v in box)} lies outside its '
                         f'{width} x {height} image')
    scale_x = f(crop) / f(unclipped_w)
    scale_y = f(crop) / f(unclipped_h)
    warp_w = _c_round(f(x2 - x1 + 1) * scale_x)
    warp_h = _c_round(f(y2 - y1 + 1) * scale_y)
    pad_x1, pad_x2 = _c_round(f(pad_x1) * scale_x), _c_round(f(pad_x2) * scale_x)
    pad_y1 = _c_round(f(pad_y1) * scale_y)
    pad_h = pad_y1
    pad_w = pad_x2 if mirror else pad_x1   # the padding is mirrored too
    warp_h = min(warp_h, crop - pad_h)     # rounding may overflow the crop
    warp_w = min(warp_w, crop - pad_w)
    if warp_h <= 0 or warp_w <= 0:
        raise LayerError(f'window {tuple(int(v) for v in box)} warps to an empty region')
    return (x1, y1, x2, y2), (warp_h, warp_w), (pad_h, pad_w)


class WindowSource:
    """Samples and warps one batch of windows (Caffe's WindowDataLayer::load_batch)."""

    def __init__(self, images, fg, bg, batch_size, fg_fraction, crop, context_pad, square,
                 mirror, mean, mean_off, scale, rng, dtype, cache=None):
        self.images, self.fg, self.bg = images, fg, bg
        self.batch_size, self.crop, self.context_pad = batch_size, crop, context_pad
        self.square, self.mirror, self.mean, self.mean_off = square, mirror, mean, mean_off
        self.scale, self.rng, self.dtype, self.cache = scale, rng, np.dtype(dtype), cache
        self.num_fg = int(np.float32(batch_size) * np.float32(fg_fraction))

    def _image(self, index):
        if self.cache is not None:
            return decode_image(self.cache[index], True)
        return decode_image(self.images[index], True)

    def _draw(self):
        return int(self.rng.integers(0, 2 ** 32))

    def next_batch(self):
        crop = self.crop
        data = np.zeros((self.batch_size, 3, crop, crop), dtype=self.dtype)
        labels = np.zeros(self.batch_size, dtype=self.dtype)
        counts = (self.batch_size - self.num_fg, self.num_fg)
        item = 0
        for windows, count in zip((self.bg, self.fg), counts):
            for _ in range(count):
                window = windows[self._draw() % len(windows)]
                mirror = self.mirror and self._draw() % 2 == 1
                image = self._image(window[IMAGE_INDEX])
                try:
                    (x1, y1, x2, y2), (warp_h, warp_w), (pad_h, pad_w) = window_geometry(
                        window[X1:Y2 + 1], image.shape[1:], crop, self.context_pad,
                        self.square, mirror, self.dtype.type)
                except LayerError as err:
                    raise LayerError(f'{self.images[window[IMAGE_INDEX]]}: {err}') from None
                region = image[:, y1:y2 + 1, x1:x2 + 1].transpose(1, 2, 0)
                patch = resize_bilinear(np.ascontiguousarray(region), warp_h, warp_w)
                patch = patch.transpose(2, 0, 1)
                if mirror:
                    patch = patch[:, :, ::-1]
                rows = slice(pad_h, pad_h + warp_h)
                cols = slice(pad_w, pad_w + warp_w)
                if self.mean.ndim == 3:   # mean image: its centre crop, same offsets
                    off = self.mean_off
                    mean = self.mean[:, off + pad_h:off + pad_h + warp_h,
                                     off + pad_w:off + pad_w + warp_w]
                else:
                    mean = self.mean[:, None, None]
                data[item, :, rows, cols] = (patch - mean) * self.scale
                labels[item] = window[LABEL]
                item += 1
        return data, labels


@register('WindowData')
class WindowDataLayer(PrefetchingDataLayer):
    """Windows of images for detection fine-tuning (Caffe's WindowData); no backward.

    window_data_param: source (the window file), root_folder (prefixed to image paths),
    batch_size, fg_threshold, bg_threshold, fg_fraction, context_pad, crop_mode ("warp" or
    "square"), cache_images (keep the image files in memory), scale. transform_param:
    crop_size (required), mirror, mean_file or mean_value. Caffe 1.0 scales by
    window_data_param.scale only; here transform_param.scale applies when
    window_data_param.scale is not set (an upgraded V1 net moves it there).
    Tops: data (batch_size x 3 x crop_size x crop_size) and label (batch_size); pixels
    outside the warped window are 0.
    """
    exact_num_top = 2

    def make_source(self, top):
        p = self.layer_param.window_data_param
        t = self.layer_param.transform_param
        crop = int(t.crop_size)
        if crop <= 0:
            raise LayerError('WindowData needs transform_param.crop_size > 0')
        if p.batch_size <= 0:
            raise LayerError('window_data_param.batch_size must be positive')
        if p.crop_mode not in ('warp', 'square'):
            raise LayerError(f'window_data_param.crop_mode must be "warp" or "square", got '
                             f'"{p.crop_mode}"')
        if crop - 2 * int(p.context_pad) <= 0:
            raise LayerError(f'context_pad {p.context_pad} leaves no room in crop_size {crop}')
        if not 0 <= p.fg_fraction <= 1:
            raise LayerError(f'fg_fraction must be in [0, 1], got {p.fg_fraction}')
        if p.HasField('scale') and t.HasField('scale') and p.scale != t.scale:
            raise LayerError(f'window_data_param.scale {p.scale} and transform_param.scale '
                             f'{t.scale} differ; give one')
        scale = p.scale if p.HasField('scale') else t.scale
        window_file = _list_file(self, p.source, 'window_data_param.source')
        images, fg, bg = read_window_file(window_file, p.fg_threshold, p.bg_threshold)
        for number, image_path, size in images:
            if size[0] != 3:
                raise LayerError(f'{window_file} line {number}: {image_path} is listed with '
                                 f'{size[0]} channels; WindowData reads images as 3-channel '
                                 f'BGR')
        paths = resolve_listed_files([(n, path, None) for n, path, _ in images], window_file,
                                     p.root_folder, kind='image')
        num_fg = int(np.float32(p.batch_size) * np.float32(p.fg_fraction))
        if num_fg and not len(fg):
            raise LayerError(f'{window_file} has no foreground windows (overlap >= '
                             f'{p.fg_threshold}) but a batch takes {num_fg}')
        if p.batch_size - num_fg and not len(bg):
            raise LayerError(f'{window_file} has no background windows (overlap < '
                             f'{p.bg_threshold}) but a batch takes {p.batch_size - num_fg}')
        mean, mean_off = self._mean(t, crop)
        cache = None
        if p.cache_images:
            cache = []
            for path in paths:
                with open(path, 'rb') as f:
                    cache.append(f.read())
        source = WindowSource(paths, fg, bg, int(p.batch_size), p.fg_fraction, crop,
                              int(p.context_pad), p.crop_mode == 'square', bool(t.mirror),
                              mean, mean_off, self.dtype.type(scale), self.rng, self.dtype,
                              cache)
        return source, [(p.batch_size, 3, crop, crop), (p.batch_size,)]

    def _mean(self, t, crop):
        """(mean, offset): a 3 x H x W mean image and the offset of its centre crop
        ((W - crop) // 2, used on both axes as in Caffe), or 3 per-channel values."""
        if t.HasField('mean_file') and len(t.mean_value):
            raise LayerError('transform_param: give mean_file or mean_value, not both')
        if t.HasField('mean_file'):
            path = resolve_path(t.mean_file, _source_dir(self))
            if not os.path.exists(path):
                raise LayerError(f'transform_param.mean_file {t.mean_file} does not exist')
            try:
                mean = np.asarray(read_mean_binaryproto(path), dtype=self.dtype)
            except CaffeliteError as err:
                raise LayerError(f'transform_param.mean_file: {err}') from None
            off = (mean.shape[2] - crop) // 2
            if mean.shape[0] != 3 or off < 0 or mean.shape[1] < off + crop:
                raise LayerError(f'mean_file {t.mean_file} is {mean.shape}; WindowData needs '
                                 f'3 channels and at least {crop} x {crop} pixels')
            return mean, off
        values = np.asarray(list(t.mean_value), dtype=self.dtype)
        if len(values) not in (0, 1, 3):
            raise LayerError(f'give 1 mean_value or 3 (one per channel), got {len(values)}')
        return np.broadcast_to(values if len(values) else np.zeros(1, self.dtype), (3,)), 0
