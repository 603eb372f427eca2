"""Structural layers: InnerProduct, Embed, Concat, Slice, Split, Flatten, Reshape, Eltwise, Silence, ..."""
from .base import Layer, register


@register('Split')
class SplitLayer(Layer):
    """Copies its bottom to every top; backward sums the top diffs (Caffe inserts these
    automatically where one blob feeds several layers)."""
    exact_num_bottom = 1
    min_top = 1

    def reshape(self, bottom, top):
        for t in top:
            t.reshape(bottom[0].shape)

    def forward(self, bottom, top):
        for t in top:
            t.xdata = bottom[0].xdata

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            total = top[0].xdiff.copy()
            for t in top[1:]:
                total += t.xdiff
            bottom[0].xdiff = total
