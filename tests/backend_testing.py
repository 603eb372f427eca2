"""Running a test on a chosen array backend: 'numpy' (CPU mode), 'fakegpu' (GPU mode on
caffelite.fakegpu, any machine) or 'cupy' (GPU mode on a real GPU; the test is skipped where
there is none). conftest.py's ``array_backend`` fixture and tests/test_backends.py use these."""
import contextlib
import os

import pytest

from caffelite import backend

BACKENDS = ('numpy', 'fakegpu', 'cupy')
FAKE_GPU_VARIABLE = 'CAFFELITE_FAKE_GPU'


def gpu_missing():
    """Why CuPy cannot run here (a string), or None when it can."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:      # ImportError, or CUDA's errors where there is no driver
        return f'CuPy with a GPU is not available: {type(err).__name__}: {err}'
    return None if count > 0 else 'CuPy sees no GPU'


@contextlib.contextmanager
def use_backend(name):
    """The block runs in the mode of backend ``name`` (CPU mode again afterwards);
    ``pytest.skip`` for 'cupy' where there is no GPU."""
    if name not in BACKENDS:
        raise ValueError(f'unknown backend {name!r}; expected one of {BACKENDS}')
    if name == 'cupy':
        reason = gpu_missing()
        if reason:
            pytest.skip(reason)
    saved = os.environ.get(FAKE_GPU_VARIABLE)
    if name == 'fakegpu':
        os.environ[FAKE_GPU_VARIABLE] = '1'
    elif name == 'cupy':
        os.environ.pop(FAKE_GPU_VARIABLE, None)
    try:
        backend.set_device(0)             # whatever device an earlier test chose
        if name == 'numpy':
            backend.set_mode_cpu()
        else:
            backend.set_mode_gpu()
        yield name
    finally:
        backend.set_mode_cpu()
        if saved is None:
            os.environ.pop(FAKE_GPU_VARIABLE, None)
        else:
            os.environ[FAKE_GPU_VARIABLE] = saved
