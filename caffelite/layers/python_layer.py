"""The Python layer: a layer written in Python by the user, as in pycaffe.

    layer { name: "data" type: "Python" top: "data"
            python_param { module: "my_layers" layer: "MyLayer" param_str: "{'k': 3}" } }

``my_layers`` is imported from sys.path (PYTHONPATH) or, failing that, from the folder of
the prototxt (``self.source_dir``, set by the Net; else the working directory), which is
then appended to sys.path so the module can import its neighbours. ``MyLayer`` subclasses
``caffelite.Layer`` exactly as a pycaffe layer subclasses ``caffe.Layer``::

    class MyLayer(caffelite.Layer):
        def setup(self, bottom, top): params = eval(self.param_str) ...
        def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top): top[0].data[...] = 2 * bottom[0].data
        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = 2 * top[0].diff

Blobs' ``.data`` / ``.diff`` are NumPy arrays to read and write in place; ``self.param_str``,
``self.phase`` (caffelite.TRAIN / TEST) and ``self.layer_param`` are set before setup;
``self.blobs.add_blob(*shape)`` adds a parameter blob (pycaffe's API).

As in Caffe, ``setup`` runs before anything else is asked of the class (it may define methods
on the instance); a layer still without ``reshape`` or ``forward`` after it is refused then.
An exception the user's code raises in setup, reshape, forward or backward reaches the caller
as an exception of its own type (an ``except RuntimeError`` still catches it) that is also a
CaffeliteError and names the layer (:func:`python_layer_error`).

At setup the layer object *becomes* an instance of the user's class (its ``__class__`` is
set), so the Net and ``net.layers[i]`` hold the user's object itself, with its own methods
and attributes (pycaffe gives the same object back). If the class defines ``__init__``,
it is called with the LayerParameter, as pycaffe constructs Python layers.
"""
import importlib
import os
import sys

from ..blob import Blob
from ..errors import CaffeliteError, LayerError
from .base import Layer, register


class BlobVec(list):
    """A layer's parameter blobs, with pycaffe's ``add_blob(*shape)``."""

    def __init__(self, dtype, blobs=()):
        super().__init__(blobs)
        self.dtype = dtype

    def add_blob(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self.append(Blob(shape, self.dtype))
        return self[-1]


def _is_module_itself(err, module):
    """True when ModuleNotFoundError ``err`` is about ``module`` (or a parent package),
    not about something that module imports."""
    name = err.name or ''
    return name == module or module.startswith(name + '.')


def import_layer_module(module, source_dir):
    """Import ``module`` from sys.path, else from ``source_dir``; LayerError otherwise."""
    folder = source_dir or os.getcwd()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if not _is_module_itself(err, module):
            raise LayerError(f'python_param.module "{module}" failed to import: '
                             f'{type(err).__name__}: {err}') from err
    except Exception as err:  # noqa: BLE001 - any error of the user's module
        raise LayerError(f'python_param.module "{module}" failed to import: '
                         f'{type(err).__name__}: {err}') from err
    if folder not in sys.path:
        sys.path.append(folder)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if _is_module_itself(err, module):
            raise LayerError(f'python_param.module "{module}" not found on sys.path '
                             f'(PYTHONPATH) nor in the prototxt\'s folder {folder}') from None
        raise LayerError(f'python_param.module "{module}" (from {folder}) failed to import: '
                         f'{type(err).__name__}: {err}') from err
    except Exception as err:  # noqa: BLE001
        raise LayerError(f'python_param.module "{module}" (from {folder}) failed to import: '
                         f'{type(err).__name__}: {err}') from err


def load_layer_class(module, name, source_dir):
    """The class ``name`` of ``module``, checked to be a usable caffelite.Layer subclass."""
    if not module or not name:
        raise LayerError('python_param needs both module and layer')
    mod = import_layer_module(module, source_dir)
    cls = getattr(mod, name, None)
    if cls is None:
        raise LayerError(f'python_param: module "{module}" ({getattr(mod, "__file__", "?")}) '
                         f'has no class "{name}"')
    if not isinstance(cls, type) or not issubclass(cls, Layer) or issubclass(cls, PythonLayer):
        raise LayerError(f'python_param: {module}.{name} must be a class derived from '
                         f'caffelite.Layer (import caffelite as caffe; class {name}(caffe.Layer))')
    return cls


def check_layer_methods(layer, module, name):
    """After setup: the layer (its class, or setup on the instance) defines reshape and
    forward."""
    for method in ('reshape', 'forward'):
        if getattr(type(layer), method) is getattr(Layer, method) and method not in vars(layer):
            raise LayerError(f'python_param: {module}.{name} does not define {method}(bottom, '
                             f'top)')


_NAMED_TYPES = {}


def _named_type(cls):
    """A subclass of ``cls`` and CaffeliteError, shown under ``cls``'s own name (None where
    ``cls`` cannot be subclassed so)."""
    if cls not in _NAMED_TYPES:
        try:
            _NAMED_TYPES[cls] = type(cls.__name__, (cls, CaffeliteError),
                                     {'__module__': cls.__module__,
                                      '__qualname__': cls.__qualname__,
                                      '__str__': lambda self: self.caffelite_message})
        except TypeError:
            _NAMED_TYPES[cls] = None
    return _NAMED_TYPES[cls]


def python_layer_error(err, context):
    """The exception to raise for ``err``, raised by a Python layer's own code: an instance of
    ``type(err)`` (pycaffe hands the caller the layer's exception) that is also a
    CaffeliteError, its message '<context>: <type>: <err>' naming the layer; its attributes
    and args are err's. Where the type cannot be extended, ``err`` itself with a note."""
    message = f'{context}: {type(err).__name__}: {err}'
    named = _named_type(type(err))
    if named is not None:
        try:
            wrapped = named.__new__(named, *err.args)
            wrapped.args = err.args
            wrapped.__dict__.update(vars(err))
            wrapped.caffelite_message = message
            return wrapped.with_traceback(err.__traceback__)
        except Exception:  # noqa: BLE001 - a type whose construction needs more; use a note
            pass
    err.add_note(message)
    return err


@register('Python')
class PythonLayer(Layer):
    """Placeholder until setup, where it imports the user's class and becomes its instance."""

    def setup(self, bottom, top):
        p = self.layer_param.python_param
        cls = load_layer_class(p.module, p.layer, getattr(self, 'source_dir', None))
        state = dict(self.__dict__)
        self.__class__ = cls
        if cls.__init__ is not Layer.__init__:
            cls.__init__(self, self.layer_param)
            for key in ('phase', 'dtype', 'source_dir', 'param_propagate_down'):
                if key in state:
                    setattr(self, key, state[key])
        self.type = 'Python'
        self.param_str = p.param_str
        if not isinstance(self.blobs, BlobVec):
            self.blobs = BlobVec(self.dtype, self.blobs)
        self.setup(bottom, top)
        check_layer_methods(self, p.module, p.layer)

    def reshape(self, bottom, top):
        raise LayerError('Python layer used before setup')

    def forward(self, bottom, top):
        raise LayerError('Python layer used before setup')
