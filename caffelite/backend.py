"""NumPy/CuPy selection (Chainer's xp idiom), device placement and the random stream.

Every layer is written once against ``xp = get_array_module(array)``. The current mode
(``set_mode_cpu`` / ``set_mode_gpu``) decides where new arrays live; ``to_host`` and
``to_device`` are the only places that copy across the bus.

GPU mode uses CuPy, or, with the environment variable ``CAFFELITE_FAKE_GPU=1``, the fake
device of ``caffelite.fakegpu`` (NumPy arrays under CuPy's host/device rules), so that the GPU
code path runs on any machine.
"""
import os

import numpy as np

from . import fakegpu

_state = {'mode': 'cpu', 'device': 0}
_host_rng = [np.random.default_rng()]


def _cupy():
    """The device array module: cupy, or caffelite.fakegpu when CAFFELITE_FAKE_GPU=1."""
    if os.environ.get('CAFFELITE_FAKE_GPU', '') not in ('', '0'):
        return fakegpu
    try:
        import cupy
    except ImportError as err:  # pragma: no cover - depends on the machine
        from .errors import CaffeliteError
        raise CaffeliteError('GPU mode needs CuPy: pip install caffelite[gpu]') from err
    return cupy


def set_mode_cpu():
    _state['mode'] = 'cpu'


def set_mode_gpu():
    cupy = _cupy()
    cupy.cuda.Device(_state['device']).use()
    _state['mode'] = 'gpu'


def set_device(device_id):
    _state['device'] = int(device_id)
    if _state['mode'] == 'gpu':
        _cupy().cuda.Device(_state['device']).use()


def mode():
    """'cpu' or 'gpu'."""
    return _state['mode']


def xp():
    """The array module of the current mode: numpy, or cupy in GPU mode."""
    return _cupy() if _state['mode'] == 'gpu' else np


def get_array_module(*arrays):
    """numpy or cupy (or the fake GPU), whichever the arrays belong to (Chainer's idiom)."""
    for a in arrays:
        if isinstance(a, fakegpu.ndarray):
            return fakegpu
        if type(a).__module__.startswith('cupy'):
            return _cupy()
    return np


def to_host(a):
    """A NumPy array with the contents of ``a`` (no copy if it is one already)."""
    if a is None or isinstance(a, np.ndarray):
        return a
    return a.get()


def to_device(a):
    """An array of the current mode holding ``a``."""
    if _state['mode'] == 'cpu':
        return to_host(a)
    return _cupy().asarray(a)


def set_random_seed(seed):
    """Seed every random stream (fillers, dropout, data shuffling) so a run repeats exactly.
    The seed is taken modulo 2**32, as Caffe's ``set_random_seed(unsigned int)`` takes the
    solver's int64 ``random_seed``."""
    seed = int(seed) % 2 ** 32
    _host_rng[0] = np.random.default_rng(seed)
    if _state['mode'] == 'gpu':
        _cupy().random.seed(seed)


def host_rng():
    """The process-wide NumPy Generator, reseeded by ``set_random_seed``."""
    return _host_rng[0]


def random_uniform(shape, dtype, xp_module):
    """Uniform [0, 1) numbers on the given backend, drawn from the seeded stream."""
    if xp_module is np:
        return host_rng().random(shape, dtype=np.float64).astype(dtype, copy=False)
    return xp_module.random.random_sample(shape, dtype=dtype)
