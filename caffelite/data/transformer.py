"""transform_param: Caffe's DataTransformer.

Images enter as uint8 arrays in Caffe's layout (see :mod:`.images`): C x H x W, BGR channel order for colour
(what OpenCV's ``imread`` gives Caffe), 1 channel for grayscale. :class:`DataTransformer`
turns a batch of them into float arrays, per item (Caffe's order):

1. crop ``crop_size`` x ``crop_size``: a random offset (uniform over all valid offsets) at
   TRAIN, the centre ``((H - crop) // 2, (W - crop) // 2)`` otherwise;
2. mirror (horizontal flip) with probability 1/2 when ``mirror: true`` -- in every phase,
   as Caffe 1.0 does (``do_mirror = mirror() && Rand(2)``);
3. ``(x - mean) * scale``, where the mean is ``mean_value`` (one value, or one per channel)
   or the ``mean_file`` image, taken at the same (cropped, flipped) pixel positions as x.

``flow: true`` (the LRCN fork's switch for optical-flow images, x-flow stored in the red
channel as 128 + k u) replaces channel 2 (red in BGR) by 255 - x in mirrored items before
the mean is subtracted, so a flipped flow field points the other way. The fork did this in
its Datum path only (its ImageData path ignored the switch); here every data layer does it.

The crop and mirror are drawn once per item; an item may hold several frames that share
them (a video clip: shape ``(N, T, C, H, W)``).
"""
import os

import numpy as np

from ..backend import get_array_module
from ..errors import LayerError
from ..io import read_mean_binaryproto
from ..proto import caffelite_pb2 as pb
from .listfile import resolve_path


class DataTransformer:
    """Caffe's transform_param, vectorised over a batch.

    transform_param: a TransformationParameter; phase: pb.TRAIN / pb.TEST (crop placement);
    source_dir: folder of the prototxt, also searched for a relative ``mean_file``.
    """

    def __init__(self, transform_param, phase, source_dir=None):
        p = transform_param
        if p.force_color and p.force_gray:
            raise LayerError('transform_param: force_color and force_gray cannot both be set')
        if p.HasField('mean_file') and len(p.mean_value):
            raise LayerError('transform_param: give mean_file or mean_value, not both')
        self.phase = phase
        self.scale = float(p.scale)
        self.mirror = bool(p.mirror)
        self.crop_size = int(p.crop_size)
        self.force_color = bool(p.force_color)
        self.force_gray = bool(p.force_gray)
        self.flow = bool(p.flow)
        self.mean_values = np.asarray(list(p.mean_value), dtype=np.float32)
        self.mean_image = None
        if p.HasField('mean_file'):
            path = resolve_path(p.mean_file, source_dir)
            if not os.path.exists(path):
                raise LayerError(f'transform_param.mean_file {p.mean_file} does not exist')
            self.mean_image = np.asarray(read_mean_binaryproto(path), dtype=np.float32)

    @property
    def needs_random(self):
        return self.mirror or (self.phase == pb.TRAIN and self.crop_size > 0)

    def color_override(self, is_color):
        """The decoding colour mode after force_color / force_gray (which win over is_color)."""
        if self.force_color:
            return True
        if self.force_gray:
            return False
        return is_color

    def output_shape(self, channels, height, width):
        """(C, H', W') of a transformed item; checks the crop and the mean against the input."""
        crop = self.crop_size
        if crop and (height < crop or width < crop):
            raise LayerError(f'crop_size {crop} is larger than the input {height} x {width}')
        if self.mean_image is not None and self.mean_image.shape != (channels, height, width):
            raise LayerError(f'mean_file shape {self.mean_image.shape} does not match the '
                             f'input {channels} x {height} x {width}')
        if self.flow and channels < 3:
            raise LayerError(f'transform_param.flow needs 3-channel (BGR flow) images, got '
                             f'{channels} channel(s)')
        if len(self.mean_values) not in (0, 1, channels):
            raise LayerError(f'give 1 mean_value or one per channel ({channels}), '
                             f'got {len(self.mean_values)}')
        return (channels, crop, crop) if crop else (channels, height, width)

    def draw(self, num, height, width, rng):
        """Per-item (h_off, w_off, mirror) for ``num`` items of ``height`` x ``width``.

        Draws from ``rng`` (a numpy Generator) only what Caffe draws: mirror flags when
        ``mirror`` is on, crop offsets at TRAIN when ``crop_size`` is set.
        """
        crop = self.crop_size
        mirror = np.zeros(num, dtype=bool)
        if self.mirror:
            mirror = rng.integers(0, 2, size=num).astype(bool)
        h_off = np.zeros(num, dtype=np.int64)
        w_off = np.zeros(num, dtype=np.int64)
        if crop:
            if self.phase == pb.TRAIN:
                h_off = rng.integers(0, height - crop + 1, size=num)
                w_off = rng.integers(0, width - crop + 1, size=num)
            else:
                h_off[:] = (height - crop) // 2
                w_off[:] = (width - crop) // 2
        return h_off, w_off, mirror

    def transform(self, batch, rng=None, offsets=None, dtype=np.float32, time_major=False):
        """Transform ``batch`` of shape (N, C, H, W) or (N, T, C, H, W) (uint8 or float).

        offsets: (h_off, w_off, mirror) arrays of length N, or None to draw them from ``rng``.
        time_major (5-D input only): return (T, N, C, H', W') instead of (N, T, C, H', W').
        Returns a ``dtype`` array on the batch's array module.
        """
        xp = get_array_module(batch)
        clip = batch.ndim == 5
        time_major = time_major and clip
        x = batch if clip else batch[:, None]
        n, k, c, h, w = x.shape
        out_c, out_h, out_w = self.output_shape(c, h, w)
        if offsets is None:
            offsets = self.draw(n, h, w, rng if rng is not None else np.random.default_rng())
        h_off, w_off, mirror = (np.asarray(a) for a in offsets)

        def layout(index):  # index arrays are built item-major: (N, T, C, H', W')
            return index.swapaxes(0, 1) if time_major else index

        gathered = bool(self.crop_size) or bool(mirror.any())
        if gathered:
            # One gather does crop and flip: row r of item i reads h_off[i] + r, column j
            # reads w_off[i] + j, or w_off[i] + W' - 1 - j when item i is mirrored.
            rows = xp.asarray(h_off[:, None] + np.arange(out_h)[None, :])
            cols = np.arange(out_w)[None, :]
            cols = xp.asarray(np.where(mirror[:, None], out_w - 1 - cols, cols)
                              + w_off[:, None])
            channel = xp.arange(c)
            out = x[layout(xp.arange(n)[:, None, None, None, None]),
                    layout(xp.arange(k)[None, :, None, None, None]),
                    channel[None, None, :, None, None],
                    layout(rows[:, None, None, :, None]),
                    layout(cols[:, None, None, None, :])].astype(dtype)
        else:
            out = (x.swapaxes(0, 1) if time_major else x).astype(dtype)
        if self.flow and mirror.any():
            flipped = xp.asarray(np.flatnonzero(mirror))
            if time_major:
                out[:, flipped, 2] = 255 - out[:, flipped, 2]
            else:
                out[flipped, :, 2] = 255 - out[flipped, :, 2]
        if self.mean_image is not None:
            mean = xp.asarray(self.mean_image, dtype=dtype)
            if gathered:   # the mean at the same source pixels as x, per item: (N, C, H', W')
                mean = mean[channel[None, :, None, None], rows[:, None, :, None],
                            cols[:, None, None, :]]
                mean = mean[None] if time_major else mean[:, None]
            out -= mean
        elif len(self.mean_values):
            values = np.broadcast_to(self.mean_values, (c,))
            out -= xp.asarray(values, dtype=dtype)[:, None, None]
        if self.scale != 1:
            out *= np.dtype(dtype).type(self.scale)
        assert out.shape[2:] == (out_c, out_h, out_w)
        return out if clip else out[:, 0]
