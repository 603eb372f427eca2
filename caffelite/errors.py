"""The one exception type a user sees: a message naming the file, the layer and the cause."""
import re

#: The longest quote of a user's file shown in a message (a parser quotes the whole line).
MAX_QUOTE = 300
#: The longest message the command line prints.
MAX_MESSAGE = 4000

_CONTROL = re.compile('[\x00-\x08\x0b-\x1f\x7f]')


class CaffeliteError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` and exits non-zero, without a traceback."""


class PycaffeRuntimeError(CaffeliteError, RuntimeError):
    """An error pycaffe raises as RuntimeError (a net or weights file it cannot open,
    set_input_arrays' checks): scripts written for pycaffe catch it with ``except
    RuntimeError``."""


class LayerError(CaffeliteError):
    """A layer rejected its parameters or its bottoms; the Net adds the layer's name, type and file."""


def layer_context(layer_param, source=None):
    """'layer "conv1" (type Convolution) in net.prototxt' for error messages."""
    where = f' in {source}' if source else ''
    return f'layer "{layer_param.name}" (type {layer_param.type}){where}'


def printable(text, limit=MAX_MESSAGE):
    """``text`` safe to print: bytes that were not UTF-8 (kept as ``surrogateescape``
    surrogates) and control characters other than tab and newline as ``\\xNN``, cut to
    ``limit`` characters."""
    text = str(text).encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')
    text = _CONTROL.sub(lambda m: f'\\x{ord(m.group()):02x}', text)
    return text if len(text) <= limit else text[:limit] + f'... ({len(text)} characters)'
