"""A fake GPU for the CPU: NumPy arrays behind CuPy's host/device rules.

This module stands in for ``cupy`` (``CAFFELITE_FAKE_GPU=1``, or the tests'
``array_backend`` fixture), so that the GPU code path of every layer runs, and fails loudly,
on a machine without a GPU. Its ``ndarray`` wraps a numpy.ndarray (the "device" memory) and:

- refuses numpy.ndarray operands in arithmetic, in this module's functions and in
  ``a[...] = value`` (TypeError, as CuPy: a host array slipped into device code);
- refuses implicit conversion (``np.asarray(a)``, ``__array__``: TypeError, as CuPy);
- refuses ``numpy.<function>(device_array)`` (TypeError: a forgotten ``xp``), through
  ``__array_ufunc__`` / ``__array_function__``. Stricter than CuPy, which runs many of these
  on the device through the same protocols; caffelite's rule is ``xp``. Only
  ``numpy_scalar <op> device_array`` passes, as it does in CuPy;
- returns 0-d device arrays, not NumPy scalars, from reductions (``float(a)`` / ``a.item()``
  are the explicit ways to a Python number).

The explicit crossings are the only ones: ``asarray`` / ``array`` of a NumPy array (host to
device), ``a.get()`` / ``asnumpy`` (device to host, a copy). ``transfers`` counts them.

The namespace mirrors NumPy by delegation (module ``__getattr__``): every NumPy function or
ufunc is wrapped to unwrap device arguments, refuse host arrays and wrap array results.
What it cannot catch: CUDA-only behaviour (kernel launches, streams, asynchronous errors,
atomics' ordering), CuPy's own dtype and API differences (a NumPy function CuPy lacks runs
here), integer index arrays taken from the host (CuPy accepts them too), and speed.
"""
import types

import numpy as np

__all__ = ['ndarray', 'asarray', 'array', 'asnumpy', 'random', 'cuda', 'transfers',
           'reset_transfers']

# Explicit copies across the (fake) bus, for tests that count them.
transfers = {'to_device': 0, 'to_host': 0}


def reset_transfers():
    """Zero the transfer counters."""
    transfers['to_device'] = transfers['to_host'] = 0


_IMPLICIT = ('Implicit conversion to a NumPy array is not allowed. '
             'Please use `.get()` to construct a NumPy array explicitly.')


def _unwrap(value):
    """The NumPy payload of device arrays inside ``value`` (tuples and lists searched);
    TypeError for a NumPy array, as CuPy raises."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise TypeError(f'Unsupported type {type(value)}: a host (NumPy) array given to the '
                        f'fake GPU; move it with xp.asarray first')
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _unwrap_index(key):
    """An index for ``a[key]``: device arrays unwrapped; host integer/boolean arrays kept
    (CuPy accepts them as indices)."""
    if isinstance(key, tuple):
        return tuple(_unwrap_index(k) for k in key)
    if isinstance(key, np.ndarray):
        return key
    return _unwrap(key)


def _wrap(value):
    """Device arrays for the array results (NumPy scalars become 0-d arrays, as in CuPy)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _device_call(fn):
    """``fn`` (a NumPy function or method) taking and returning device arrays."""
    def call(*args, **kwargs):
        return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    call.__name__ = getattr(fn, '__name__', 'function')
    call.__doc__ = getattr(fn, '__doc__', None)
    return call


class ndarray:
    """A device array of the fake GPU: a NumPy array reachable only through this module."""
    __slots__ = ('_a',)

    def __init__(self, payload):
        if not isinstance(payload, np.ndarray):
            raise TypeError('fakegpu.ndarray wraps a numpy.ndarray; make arrays with '
                            'fakegpu.asarray / zeros / empty')
        self._a = payload

    # -- crossings --------------------------------------------------------------------------
    def get(self, stream=None, order='C', out=None):
        """A NumPy copy on the host (counted)."""
        transfers['to_host'] += 1
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, host_array):
        """Copy NumPy ``host_array`` into this array (counted)."""
        transfers['to_device'] += 1
        self._a[...] = host_array

    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == '__call__' and isinstance(inputs[0], np.generic) and not kwargs:
            # ``numpy_scalar * device_array``: NumPy's scalar operator lands here; CuPy
            # computes it on the device, and so do we.
            return _wrap(ufunc(*_unwrap(inputs)))
        if any(isinstance(x, np.ndarray) for x in inputs):
            raise TypeError(f'numpy.{ufunc.__name__} mixes a host (NumPy) array with a (fake) '
                            f'GPU array: move the host one with xp.asarray')
        raise TypeError(f'numpy.{ufunc.__name__} called on a (fake) GPU array: use '
                        f'xp = get_array_module(array) and xp.{ufunc.__name__}')

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f'numpy.{func.__name__} called on a (fake) GPU array: use '
                        f'xp = get_array_module(array) and xp.{func.__name__}')

    # -- attributes and methods, delegated --------------------------------------------------
    def __getattr__(self, name):
        if name.startswith('__'):   # no __array_interface__ etc.: no implicit conversion
            raise AttributeError(name)
        value = getattr(self._a, name)
        return _device_call(value) if callable(value) else _wrap(value)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap_index(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap_index(key)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return repr(self._a).replace('array(', 'fakegpu.array(', 1)

    def __str__(self):
        return str(self._a)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    def __reduce__(self):
        return (_rebuild, (self._a,))

    __hash__ = None


def _rebuild(payload):
    return ndarray(payload)


def _binary(name):
    def op(self, other):
        result = getattr(self._a, name)(_unwrap(other))
        return result if result is NotImplemented else _wrap(result)
    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        getattr(self._a, name)(_unwrap(other))
        return self
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return _wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


for _op in ('add', 'sub', 'mul', 'truediv', 'floordiv', 'mod', 'pow', 'matmul', 'and', 'or',
            'xor', 'lshift', 'rshift', 'divmod'):
    setattr(ndarray, f'__{_op}__', _binary(f'__{_op}__'))
    setattr(ndarray, f'__r{_op}__', _binary(f'__r{_op}__'))
    if _op != 'divmod':
        setattr(ndarray, f'__i{_op}__', _inplace(f'__i{_op}__'))
for _op in ('lt', 'le', 'eq', 'ne', 'gt', 'ge'):
    setattr(ndarray, f'__{_op}__', _binary(f'__{_op}__'))
for _op in ('neg', 'pos', 'abs', 'invert'):
    setattr(ndarray, f'__{_op}__', _unary(f'__{_op}__'))
del _op


# -- the explicit crossings ---------------------------------------------------------------
def asarray(a, dtype=None, order=None):
    """A device array holding ``a``; a NumPy array is copied to the device (counted)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a._a.dtype == np.dtype(dtype) else a.astype(dtype)
    if isinstance(a, np.ndarray):
        transfers['to_device'] += 1
        return ndarray(np.array(a, dtype=dtype, order=order, copy=True))
    return ndarray(np.asarray(_unwrap(a), dtype=dtype, order=order))


def array(a, dtype=None, copy=True, order='K', ndmin=0):
    """A new device array holding ``a`` (a NumPy array is copied to the device, counted)."""
    if isinstance(a, np.ndarray):
        transfers['to_device'] += 1
        return ndarray(np.array(a, dtype=dtype, copy=True, order=order, ndmin=ndmin))
    return ndarray(np.array(_unwrap(a), dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order='C', out=None):
    """A NumPy array holding ``a``: a counted copy for a device array, ``a`` itself for a
    NumPy one."""
    if isinstance(a, ndarray):
        return a.get(stream, order, out)
    return np.asarray(a, order=order)


# -- namespaces ----------------------------------------------------------------------------
class _Namespace:
    """A NumPy namespace (``linalg``, a ufunc, ...) whose callables take device arrays."""

    def __init__(self, target):
        self._target = target

    def __call__(self, *args, **kwargs):
        return _device_call(self._target)(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _delegate(getattr(self._target, name))


def _delegate(value):
    """``value`` (a NumPy attribute) as this module offers it."""
    if isinstance(value, (np.ufunc, types.ModuleType)):
        return _Namespace(value)
    if isinstance(value, type) or not callable(value):
        return value            # dtypes (xp.float32 is numpy.float32, as in CuPy), constants
    return _device_call(value)


class _Random:
    """``cupy.random``: a seeded stream of its own (it does not follow NumPy's), drawing
    device arrays."""

    def __init__(self):
        self._state = np.random.RandomState()

    def seed(self, seed=None):
        self._state.seed(seed)

    def random_sample(self, size=None, dtype=float):
        return ndarray(np.asarray(self._state.random_sample(size), dtype=dtype))

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _device_call(getattr(self._state, name))


class _Device:
    """``cupy.cuda.Device``: the one fake device, id 0."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError(f'cudaErrorInvalidDevice: the fake GPU has device 0 only, '
                               f'not {self.id}')

    def use(self):
        pass

    def synchronize(self):
        pass


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDevice():
        return 0

    @staticmethod
    def getDeviceProperties(device):
        _Device(device)
        return {'name': b'caffelite fake GPU (NumPy on the host)', 'major': 0, 'minor': 0}


class _Cuda:
    Device = _Device
    runtime = _Runtime()


random = _Random()
cuda = _Cuda()


def __getattr__(name):
    """Every other NumPy name, delegated (cached after the first look-up)."""
    if name.startswith('__'):
        raise AttributeError(name)
    value = _delegate(getattr(np, name))
    globals()[name] = value
    return value
