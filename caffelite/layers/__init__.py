"""Layer families; importing this package registers every layer type."""
from .base import LAYER_REGISTRY, Layer, create_layer, layer_type_list, register
from . import common, data, db_data, loss, neuron, normalization, python_layer, recurrent, spp_window, vision  # noqa: F401  (registration)

__all__ = ['LAYER_REGISTRY', 'Layer', 'create_layer', 'layer_type_list', 'register']
