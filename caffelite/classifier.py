"""pycaffe's caffe.Classifier and caffe.Detector: a deploy Net with image preprocessing.

    net = caffe.Classifier('deploy.prototxt', 'weights.caffemodel', image_dims=(256, 256),
                           mean=mean_bgr, raw_scale=255, channel_swap=(2, 1, 0))
    probabilities = net.predict([caffe.io.load_image('cat.jpg')])    # N x classes

Both are Nets built in the TEST phase; the first input blob is the image input and the first
output the prediction.
"""
import numpy as np

from .data.images import load_image, resize_image
from .data.pycaffe_transformer import Transformer, oversample as ten_crops
from .errors import CaffeliteError
from .net import Net
from .proto import caffelite_pb2 as pb
from .pycaffe_net import forward_all


def _make_transformer(net, mean, input_scale, raw_scale, channel_swap):
    """pycaffe's setup: H x W x K images transposed to K x H x W, then the given steps."""
    if not net.inputs:
        raise CaffeliteError(f'{net.source}: the net has no input blob (an Input layer) to '
                             f'feed images to')
    in_ = net.inputs[0]
    transformer = Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    """Classify images: resize to ``image_dims``, take the centre crop or Caffe's 10 crops
    of the input blob's size, preprocess (mean, input_scale, raw_scale, channel_swap as
    :class:`caffelite.io.Transformer`), forward, average the crops' predictions."""

    def __init__(self, model_file, pretrained_file=None, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        Net.__init__(self, model_file, pb.TEST, weights=pretrained_file)
        self.transformer = _make_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[self.inputs[0]].data.shape[2:])
        if image_dims is None or not len(image_dims):
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs, oversample=True):
        """``inputs``: H x W x K images (float, e.g. from caffe.io.load_image).
        Returns N x C: the first output for each image (averaged over the 10 crops when
        ``oversample``, else for the centre crop)."""
        if len(inputs) == 0:
            raise CaffeliteError('Classifier.predict needs at least one image')
        image_h, image_w = (int(d) for d in self.image_dims)
        channels = np.shape(inputs[0])[2]
        input_ = np.zeros((len(inputs), image_h, image_w, channels), dtype=np.float32)
        for ix, image in enumerate(inputs):     # images may differ in size: one at a time
            input_[ix] = resize_image(image, (image_h, image_w))

        if oversample:
            input_ = ten_crops(input_, self.crop_dims)
        else:
            centre = np.array((image_h, image_w)) / 2.0
            crop = np.concatenate([centre - self.crop_dims / 2.0,
                                   centre + self.crop_dims / 2.0]).astype(int)
            input_ = input_[:, crop[0]:crop[2], crop[1]:crop[3], :]

        in_ = self.inputs[0]
        caffe_in = self.transformer.preprocess_batch(in_, input_)
        predictions = forward_all(self, **{in_: caffe_in})[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(axis=1)
        return predictions


def _round_half_up(x):
    """Python 2's round() (pycaffe's), half away from zero for the positive values here."""
    return int(np.floor(x + 0.5))


class Detector(Net):
    """Classify windows of images (R-CNN style): crop each window (optionally with
    ``context_pad`` pixels of context, padded with the mean), warp it to the input size,
    preprocess, forward. Windows are (ymin, xmin, ymax, xmax) in pixels.

    pycaffe's ``detect_selective_search`` needs the external selective-search MATLAB
    package and is not provided: compute the windows elsewhere and use
    :meth:`detect_windows`.
    """

    def __init__(self, model_file, pretrained_file=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        Net.__init__(self, model_file, pb.TEST, weights=pretrained_file)
        self.transformer = _make_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """``images_windows``: [(image filename, windows)]; returns one dict per window:
        {'window', 'prediction' (the first output), 'filename'}, in input order."""
        window_inputs = []
        for image_fname, windows in images_windows:
            image = load_image(image_fname).astype(np.float32)
            for window in windows:
                window_inputs.append(self.crop(image, window))
        if not window_inputs:
            return []
        in_ = self.inputs[0]
        caffe_in = self.transformer.preprocess_batch(in_, window_inputs)
        predictions = forward_all(self, **{in_: caffe_in})[self.outputs[0]]
        detections = []
        ix = 0
        for image_fname, windows in images_windows:
            for window in windows:
                detections.append({'window': window, 'prediction': predictions[ix],
                                   'filename': image_fname})
                ix += 1
        return detections

    def detect_selective_search(self, image_fnames):
        raise CaffeliteError('Detector.detect_selective_search needs the selective-search '
                             'MATLAB package, which caffelite does not bundle: compute '
                             'windows with it and call detect_windows([(filename, windows)])')

    def crop(self, im, window):
        """The window's pixels (ymin:ymax, xmin:xmax) of an H x W x K image; with
        ``context_pad``, pycaffe's context crop: the box grown so that after warping to the
        input size ``context_pad`` pixels of context surround it, clipped to the image, the
        part outside the image filled with the mean (in raw image space)."""
        window = np.asarray(window)
        box = window.astype(np.float64)
        if not self.context_pad:
            y0, x0, y1, x1 = (int(v) for v in box)
            return im[y0:y1, x0:x1]
        crop_size = self.blobs[self.inputs[0]].width            # assumes a square input
        scale = crop_size / (1.0 * crop_size - self.context_pad * 2)
        half_h = (box[2] - box[0] + 1) / 2.0
        half_w = (box[3] - box[1] + 1) / 2.0
        centre = (box[0] + half_h, box[1] + half_w)
        scaled = scale * np.array((-half_h, -half_w, half_h, half_w))
        box = np.round(np.tile(centre, 2) + scaled)
        full_h = box[2] - box[0] + 1
        full_w = box[3] - box[1] + 1
        scale_h = crop_size / full_h
        scale_w = crop_size / full_w
        pad_y = _round_half_up(max(0, -box[0]) * scale_h)     # context outside the image
        pad_x = _round_half_up(max(0, -box[1]) * scale_w)
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h = box[2] - box[0] + 1
        clip_w = box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise CaffeliteError(f'window {tuple(window)} lies outside the {im_h} x {im_w} '
                                 f'image')
        crop_h = min(_round_half_up(clip_h * scale_h), crop_size - pad_y)
        crop_w = min(_round_half_up(clip_w * scale_w), crop_size - pad_x)
        y0, x0, y1, x1 = (int(v) for v in box)
        context_crop = resize_image(im[y0:y1, x0:x1], (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context_crop
        return crop

    def configure_crop(self, context_pad):
        """Crop dimensions (the input's H x W x K) and the mean in raw image space for
        context padding."""
        in_ = self.inputs[0]
        inverse = np.argsort(self.transformer.transpose[in_])
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inverse]
        self.context_pad = context_pad
        if not self.context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.array(mean, dtype=np.float64)
        if crop_mean.ndim == 2:
            crop_mean = crop_mean[np.newaxis]
        crop_mean = crop_mean.transpose(inverse)
        channel_order = self.transformer.channel_swap.get(in_)
        if channel_order is not None:
            crop_mean = crop_mean[:, :, np.argsort(channel_order)]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
