"""Export Caffe nets to ONNX (needs the ``onnx`` extra: ``pip install -e '.[onnx]'``).

    import caffelite
    net = caffelite.Net('deploy.prototxt', caffelite.TEST, weights='model.caffemodel')
    caffelite.onnx.export(net, 'model.onnx')

``caffelite.onnx.runtime.OnnxNet`` runs an exported model under onnxruntime with
``Net.forward``'s calling convention and the recurrent layers' cont check.
"""
try:
    import onnx as _onnx  # noqa: F401
except ImportError as err:      # pragma: no cover - depends on the installed extras
    from ..errors import CaffeliteError
    raise CaffeliteError('ONNX export needs the onnx package: pip install -e \'.[onnx]\'') \
        from err

from .export import DEFAULT_OPSET, MIN_OPSET, export
from .registry import UnsupportedLayer, supported_types

__all__ = ['DEFAULT_OPSET', 'MIN_OPSET', 'UnsupportedLayer', 'export', 'supported_types']
