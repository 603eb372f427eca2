"""Data layers: Input, DummyData, HDF5Data, ImageData, MemoryData, Python, video clips."""
from .. import backend
from ..errors import LayerError
from ..filler import fill
from .base import Layer, register


def _shapes_for_tops(shapes, num_top, what):
    """One shape for every top, or one per top (Caffe's Input/DummyData rule)."""
    if len(shapes) not in (1, num_top):
        raise LayerError(f'{what} must give 1 shape or one per top ({num_top}), got {len(shapes)}')
    return [tuple(shapes[0 if len(shapes) == 1 else i]) for i in range(num_top)]


@register('Input')
class InputLayer(Layer):
    """Tops of fixed shapes, filled from outside (``net.blobs[name].data[...] = x``)."""
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        shapes = [s.dim for s in self.layer_param.input_param.shape]
        if shapes:
            for t, shape in zip(top, _shapes_for_tops(shapes, len(top), 'input_param.shape')):
                t.reshape(shape)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register('DummyData')
class DummyDataLayer(Layer):
    """Tops filled by data_filler; constant fillers fill once, others refill every forward."""
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.dummy_data_param
        if p.shape:
            shapes = [tuple(s.dim) for s in p.shape]
        else:
            legacy = [p.num, p.channels, p.height, p.width]
            n = max(len(x) for x in legacy)
            if n and any(len(x) not in (1, n) for x in legacy):
                raise LayerError('num, channels, height and width must each be given once or '
                                 'as often as the others')
            shapes = [tuple(int(x[0 if len(x) == 1 else i]) for x in legacy) for i in range(n)]
        self.shapes = _shapes_for_tops(shapes, len(top), 'dummy_data_param shape')
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, len(top)):
            raise LayerError(f'data_filler must be given 0, 1 or {len(top)} times')
        if not fillers:
            from ..proto import caffelite_pb2 as pb
            fillers = [pb.FillerParameter(type='constant', value=0)]
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(len(top))]
        self.refill = [f.type != 'constant' for f in self.fillers]
        for t, shape, f in zip(top, self.shapes, self.fillers):
            t.reshape(shape)
            t.xdata = backend.to_device(fill(f, shape, t.dtype))

    def reshape(self, bottom, top):
        for t, shape in zip(top, self.shapes):
            t.reshape(shape)

    def forward(self, bottom, top):
        for t, shape, f, refill in zip(top, self.shapes, self.fillers, self.refill):
            if refill:
                t.xdata = backend.to_device(fill(f, shape, t.dtype))

    def backward(self, top, propagate_down, bottom):
        pass
