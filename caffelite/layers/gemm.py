"""Matrix products that accumulate into an existing array (BLAS gemm with beta = 1).

``gemm_accumulate(a, b, out)``: ``out += alpha * a @ b`` for a (M x K), b (K x N) and ``out``
(M x N, unit column stride), written into ``out``. This is how Caffe accumulates every
parameter gradient (``caffe_cpu_gemm`` with beta = 1). On the CPU, for float32 and float64,
it is one ``cblas_?gemm`` call of the OpenBLAS that NumPy itself uses (the PyPI wheels bundle
it as ``scipy-openblas64``; found next to NumPy and called through ctypes): no M x N temporary
and no second pass over ``out`` (a 4096 x 4096 InnerProduct weight gradient at batch 10:
5.9 ms against 18.5 ms for ``out += a @ b``), and no second BLAS thread pool (a second
OpenBLAS, SciPy's, spin-waits against NumPy's at two threads). Otherwise (CuPy, other
dtypes, a NumPy without that library) it is the ``xp`` expression ``out += alpha * (a @ b)``,
the reference the BLAS path is tested against.
"""
import ctypes
import glob
import os

import numpy as np

from ..backend import get_array_module

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _numpy_cblas():
    """{dtype: cblas gemm} from NumPy's bundled ILP64 OpenBLAS, or {} where there is none."""
    if os.environ.get('CAFFELITE_GEMM_BLAS', '1') == '0':
        return {}
    root = os.path.dirname(os.path.dirname(np.__file__))
    paths = (glob.glob(os.path.join(root, 'numpy.libs', '*openblas*'))
             + glob.glob(os.path.join(os.path.dirname(np.__file__), '.dylibs', '*openblas*')))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        found = {}
        for dtype, name, scalar in ((np.float32, 'scipy_cblas_sgemm64_', ctypes.c_float),
                                    (np.float64, 'scipy_cblas_dgemm64_', ctypes.c_double)):
            fn = getattr(lib, name, None)
            if fn is None:
                break
            i, p = ctypes.c_int64, ctypes.c_void_p
            fn.argtypes = [ctypes.c_int] * 3 + [i] * 3 + [scalar, p, i, p, i, scalar, p, i]
            fn.restype = None
            found[np.dtype(dtype)] = fn
        else:
            return found
    return {}


_GEMM = _numpy_cblas()


def _operand(m):
    """(array, transpose flag, leading dimension) of a row-major matrix for cblas."""
    size = m.itemsize
    rows, cols = m.strides
    if cols == size and rows % size == 0 and rows >= max(1, m.shape[1]) * size:
        return m, _NO_TRANS, rows // size
    if rows == size and cols % size == 0 and cols >= max(1, m.shape[0]) * size:
        return m, _TRANS, cols // size
    m = np.ascontiguousarray(m)
    return m, _NO_TRANS, max(1, m.shape[1])


def use_blas(a, b, out):
    """True when ``gemm_accumulate`` can write into ``out`` with one BLAS call."""
    return (out.dtype in _GEMM and isinstance(out, np.ndarray) and isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray) and a.dtype == out.dtype and b.dtype == out.dtype
            and out.ndim == 2 and out.size > 0 and out.flags.writeable
            and out.strides[1] == out.itemsize and out.strides[0] % out.itemsize == 0
            and out.strides[0] >= out.shape[1] * out.itemsize)


def gemm_accumulate(a, b, out, alpha=1.0, blas=True):
    """out (M x N) += alpha * a (M x K) @ b (K x N), in place; returns ``out``.

    ``blas=False`` forces the ``xp`` expression (the tests compare the two)."""
    if blas and use_blas(a, b, out):
        (m, k), n = a.shape, b.shape[1]
        if k == 0:
            return out
        a, trans_a, lda = _operand(a)
        b, trans_b, ldb = _operand(b)
        _GEMM[out.dtype](_ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, a.ctypes.data, lda,
                         b.ctypes.data, ldb, 1.0, out.ctypes.data,
                         out.strides[0] // out.itemsize)
        return out
    if alpha == 1:
        out += a @ b
    else:
        out += out.dtype.type(alpha) * (a @ b)
    return out


def output_array(blob, diff=False):
    """The blob's own data (or diff) array, C-contiguous, for a layer to write or accumulate
    into with ``out=`` (pycaffe's memory model: a view a script holds sees the result). A blob
    holding a non-contiguous array gets a contiguous copy of it first."""
    array = blob.xdiff if diff else blob.xdata
    if not array.flags.c_contiguous:
        array = get_array_module(array).ascontiguousarray(array)
        if diff:
            blob.xdiff = array
        else:
            blob.xdata = array
    return array
