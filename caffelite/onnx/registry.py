"""The converter registry: one small function per Caffe layer type, and the refusal error.

A converter is ``convert(ctx, g)``: it reads the layer from ``ctx`` (a LayerContext) and adds
nodes to ``g`` (a GraphBuilder) whose outputs are exactly ``ctx.tops`` (the tensor names the
exporter chose: the Caffe blob names). It raises ``ctx.refuse(reason)`` for a setting that has
no ONNX equivalent.
"""
import numpy as np

from ..errors import CaffeliteError

CONVERTERS = {}


class UnsupportedLayer(CaffeliteError):
    """A layer (or one setting of it) that cannot be expressed in ONNX; names the layer."""


def converts(*type_names):
    """Decorator: register ``convert(ctx, g)`` for these Caffe layer types."""
    def decorate(function):
        for type_name in type_names:
            if type_name in CONVERTERS:
                raise ValueError(f'ONNX converter for {type_name} registered twice')
            CONVERTERS[type_name] = function
        return function
    return decorate


def supported_types():
    return sorted(CONVERTERS)


class LayerContext:
    """One layer as the converters see it: its LayerParameter, parameter arrays, and the
    ONNX names and static shapes of its bottoms and tops."""

    def __init__(self, layer, layer_param, bottoms, bottom_shapes, tops, top_shapes):
        self.layer = layer
        self.param = layer_param
        self.name = layer_param.name
        self.type = layer_param.type
        self.bottoms, self.bottom_shapes = list(bottoms), [tuple(s) for s in bottom_shapes]
        self.tops, self.top_shapes = list(tops), [tuple(s) for s in top_shapes]

    def blob(self, k):
        """Parameter blob ``k`` as a float32 NumPy array (Caffe's shape)."""
        return np.asarray(self.layer.blobs[k].data, dtype=np.float32)

    @property
    def num_blobs(self):
        return len(self.layer.blobs)

    def refuse(self, reason):
        return UnsupportedLayer(f'layer "{self.name}" (type {self.type}) cannot be exported to '
                                f'ONNX: {reason}')
