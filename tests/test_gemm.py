"""gemm_accumulate's BLAS path (NumPy's own OpenBLAS ?gemm, beta = 1, into the output) against
its xp path."""
import numpy as np
import pytest

from caffelite.blob import Blob
from caffelite.layers import gemm
from caffelite.layers.gemm import gemm_accumulate, output_array, use_blas

from backend_testing import use_backend


@pytest.fixture(autouse=True)
def _cpu_mode():
    """CPU mode whatever the suite's backend: the BLAS path is the host's (on a device the
    xp path runs instead)."""
    with use_backend('numpy'):
        yield


needs_blas = pytest.mark.skipif(not gemm._GEMM, reason="NumPy's bundled OpenBLAS not found")


def _operand(rng, shape, layout, dtype):
    """A matrix of ``shape`` that is C-ordered, Fortran-ordered or a strided view."""
    if layout == 'C':
        return rng.standard_normal(shape).astype(dtype)
    if layout == 'F':
        return np.asfortranarray(rng.standard_normal(shape).astype(dtype))
    return rng.standard_normal((shape[0], 2 * shape[1])).astype(dtype)[:, ::2]


@needs_blas
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('layout_a', ['C', 'F', 'strided'])
@pytest.mark.parametrize('layout_b', ['C', 'F', 'strided'])
@pytest.mark.parametrize('alpha', [1.0, -0.5])
def test_blas_path_matches_xp_path_in_place(dtype, layout_a, layout_b, alpha):
    rng = np.random.default_rng(0)
    a = _operand(rng, (7, 5), layout_a, dtype)
    b = _operand(rng, (5, 9), layout_b, dtype)
    start = rng.standard_normal((7, 9)).astype(dtype)
    assert use_blas(a, b, start)
    wide = np.zeros((7, 12), dtype)                    # out may be a block of a wider array
    out, ref = wide[:, 2:11], start.copy()
    out[...] = start
    address = out.ctypes.data
    assert gemm_accumulate(a, b, out, alpha) is out
    gemm_accumulate(a, b, ref, alpha, blas=False)
    assert out.ctypes.data == address               # written in place, no new array
    assert not wide[:, :2].any() and not wide[:, 11:].any()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(out, start + alpha * (a.astype(np.float64) @ b), rtol=tol,
                               atol=tol)


def test_xp_path_for_what_blas_cannot_take():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    out = rng.standard_normal((2, 3)).T             # not C-contiguous: the xp path
    assert not use_blas(a, b, out)
    ref = out + a @ b
    gemm_accumulate(a, b, out)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    ints = np.ones((2, 2), np.int64)
    assert not use_blas(ints, ints, ints.copy())


def test_output_array_is_the_blobs_own_contiguous_array():
    b = Blob((3, 4))
    b.data[...] = np.arange(12).reshape(3, 4)
    assert output_array(b) is b.xdata
    b.xdata = np.arange(24, dtype=np.float32).reshape(4, 6)[:3, :4]   # a strided view
    out = output_array(b, diff=False)
    assert out.flags.c_contiguous and out is b.xdata
    np.testing.assert_array_equal(out, np.arange(24).reshape(4, 6)[:3, :4])
