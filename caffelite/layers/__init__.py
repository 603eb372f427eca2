"""Layer families; importing this package registers every layer type."""
from .base import LAYER_REGISTRY, Layer, create_layer, layer_type_list, register
from . import (common, data, db_data, loss, neuron, normalization,  # noqa: F401  (registration)
               python_layer, recurrent, spp_window, video_data, vision)

__all__ = ['LAYER_REGISTRY', 'Layer', 'create_layer', 'layer_type_list', 'register']


def __getattr__(name):
    """pycaffe's ``caffe.layers``: ``caffe.layers.Convolution(...)`` builds a NetSpec layer."""
    from ..net_spec import layers_package_getattr
    return layers_package_getattr(name)
