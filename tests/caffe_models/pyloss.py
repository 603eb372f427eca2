"""A Euclidean loss written as a Python layer, in pycaffe's style (used by linreg.prototxt).

    loss = sum((x0 - x1)^2) / (2 N)     for bottoms x0, x1 of shape N x ...
    d loss / d x0 = (x0 - x1) / N,  d loss / d x1 = -(x0 - x1) / N
"""
import numpy as np

import caffelite as caffe


class EuclideanLossLayer(caffe.Layer):

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception('EuclideanLossLayer needs two bottoms to compare')

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception('EuclideanLossLayer: the bottoms must have the same count')
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                bottom[i].diff[...] = sign * top[0].diff[0] * self.diff / bottom[i].num
