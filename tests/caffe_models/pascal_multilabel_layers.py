"""A synchronous PASCAL VOC multilabel data layer, in the style of pycaffe's
examples/pycaffe/layers/pascal_multilabel_datalayers.py (used by pascal_multilabel_train.prototxt).

param_str is a Python dict: pascal_root (a VOC tree: ImageSets/Main/<split>.txt,
JPEGImages/<id>.jpg, Annotations/<id>.xml), split, batch_size, im_shape [H, W].
Tops: data (batch_size x 3 x H x W, BGR minus 128, randomly mirrored) and label
(batch_size x 20, 1 where the image holds an object of that class).
"""
import ast
import os.path as osp
from xml.dom import minidom

import numpy as np
from PIL import Image

import caffelite as caffe

CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
           'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
           'train', 'tvmonitor')


def load_multilabel(pascal_root, index):
    """The 20-vector of classes present in Annotations/<index>.xml."""
    labels = np.zeros(len(CLASSES), np.float32)
    doc = minidom.parse(osp.join(pascal_root, 'Annotations', index + '.xml'))
    for obj in doc.getElementsByTagName('object'):
        name = obj.getElementsByTagName('name')[0].firstChild.data.strip().lower()
        labels[CLASSES.index(name)] = 1
    return labels


class BatchLoader:
    """Cycles through a split, giving (C x H x W float image, 20-vector) pairs."""

    def __init__(self, params, rng):
        self.root = params['pascal_root']
        self.im_shape = tuple(params['im_shape'])
        with open(osp.join(self.root, 'ImageSets', 'Main', params['split'] + '.txt')) as f:
            self.indices = [line.strip() for line in f if line.strip()]
        self.rng = rng
        self.cur = 0

    def load_next_image(self):
        if self.cur == len(self.indices):
            self.cur = 0
            self.rng.shuffle(self.indices)
        index = self.indices[self.cur]
        self.cur += 1
        with Image.open(osp.join(self.root, 'JPEGImages', index + '.jpg')) as img:
            img = img.convert('RGB').resize(self.im_shape[::-1], Image.BILINEAR)
            im = np.asarray(img, np.float32)
        if self.rng.integers(2):
            im = im[:, ::-1, :]
        im = im[:, :, ::-1] - 128.0            # RGB -> BGR, centred
        return im.transpose(2, 0, 1), load_multilabel(self.root, index)


class PascalMultilabelDataLayerSync(caffe.Layer):

    def setup(self, bottom, top):
        params = ast.literal_eval(self.param_str)
        for key in ('pascal_root', 'split', 'batch_size', 'im_shape'):
            if key not in params:
                raise ValueError(f'param_str must give {key}')
        self.batch_size = params['batch_size']
        self.loader = BatchLoader(params, np.random.default_rng(0))
        top[0].reshape(self.batch_size, 3, *params['im_shape'])
        top[1].reshape(self.batch_size, len(CLASSES))

    def reshape(self, bottom, top):
        pass        # fixed shapes, set in setup

    def forward(self, bottom, top):
        for i in range(self.batch_size):
            top[0].data[i, ...], top[1].data[i, ...] = self.loader.load_next_image()

    def backward(self, top, propagate_down, bottom):
        pass        # a data layer has nothing to propagate
