"""The one exception type a user sees: a message naming the file, the layer and the cause."""


class CaffeliteError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` and exits non-zero, without a traceback."""


class LayerError(CaffeliteError):
    """A layer rejected its parameters or its bottoms; the Net adds the layer's name, type and file."""


def layer_context(layer_param, source=None):
    """'layer "conv1" (type Convolution) in net.prototxt' for error messages."""
    where = f' in {source}' if source else ''
    return f'layer "{layer_param.name}" (type {layer_param.type}){where}'
