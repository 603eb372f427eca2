"""Blob: an N-D array of data and its gradient (diff), like Caffe's Blob.

Storage follows Caffe's SyncedMemory: each array lives where it was last written (host NumPy
or device CuPy) and moves only when the other side asks for it.

- ``blob.data`` / ``blob.diff``: NumPy arrays, writable, as in pycaffe (``data[...] = x``).
- ``blob.xdata`` / ``blob.xdiff``: arrays on the current backend, for layers; assigning a whole
  new array (of the blob's shape) is allowed and avoids a copy.
"""
import math

import numpy as np

from . import backend


#: Caffe's Blob::Reshape cap on a blob's element count (INT_MAX).
MAX_BLOB_COUNT = 2 ** 31 - 1


def shape_count(shape, start=0, end=None):
    """Caffe's Blob::count(start_axis, end_axis) on a shape: the product of shape[start:end]
    (1 for an empty range)."""
    return int(np.prod(tuple(shape)[start:end], dtype=np.int64))


class Blob:
    def __init__(self, shape=(), dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self._shape = tuple(int(s) for s in shape)
        self._data = None
        self._diff = None

    # -- shape -----------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        """The number of elements (pycaffe's ``blob.count``, an int)."""
        return shape_count(self._shape)

    def count_axes(self, start, end=None):
        """Caffe's count(start_axis, end_axis): the product of dimensions start..end-1
        (``end`` None: to the last axis)."""
        return shape_count(self._shape, start, end)

    @property
    def num_axes(self):
        return len(self._shape)

    def canonical_axis(self, axis):
        """Caffe's CanonicalAxisIndex: negative axes count from the end."""
        n = len(self._shape)
        if not -n <= axis < max(n, 1):
            raise IndexError(f'axis {axis} out of range for a {n}-D blob {self._shape}')
        return axis + n if axis < 0 else axis

    def reshape(self, *shape):
        """Change the shape; contents survive only when the element count is unchanged."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f'negative dimension in blob shape {shape}')
        if math.prod(shape) > MAX_BLOB_COUNT:     # Caffe's "blob size exceeds INT_MAX"
            raise ValueError(f'blob shape {shape} has {math.prod(shape)} elements, more '
                             f'than the {MAX_BLOB_COUNT} (INT_MAX) a blob may hold')
        if shape == self._shape:
            return
        same_count = shape_count(shape) == self.count
        self._shape = shape
        self._data = self._data.reshape(shape) if same_count and self._data is not None else None
        self._diff = self._diff.reshape(shape) if same_count and self._diff is not None else None

    # legacy 4-D accessors (pycaffe's num/channels/height/width)
    def _legacy(self, i):
        if len(self._shape) > 4:
            raise ValueError('legacy accessors need a blob of at most 4 axes')
        padded = self._shape + (1,) * (4 - len(self._shape))
        return padded[i]

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    # -- storage ---------------------------------------------------------------------------
    def _zeros(self):
        return backend.xp().zeros(self._shape, dtype=self.dtype)

    def _place(self, array, host):
        if array is None:
            array = np.zeros(self._shape, self.dtype) if host else self._zeros()
        return backend.to_host(array) if host else backend.to_device(array)

    def _checked(self, array, what):
        if tuple(array.shape) != self._shape:
            raise ValueError(f'cannot set blob {what} of shape {tuple(array.shape)} '
                             f'into a blob of shape {self._shape}')
        if array.dtype != self.dtype:
            array = array.astype(self.dtype)
        return array

    @property
    def data(self):
        self._data = self._place(self._data, host=True)
        return self._data

    @data.setter
    def data(self, value):
        self.data[...] = backend.to_host(value)

    @property
    def diff(self):
        self._diff = self._place(self._diff, host=True)
        return self._diff

    @diff.setter
    def diff(self, value):
        self.diff[...] = backend.to_host(value)

    @property
    def xdata(self):
        self._data = self._place(self._data, host=False)
        return self._data

    @xdata.setter
    def xdata(self, array):
        self._data = self._checked(array, 'data')

    @property
    def xdiff(self):
        self._diff = self._place(self._diff, host=False)
        return self._diff

    @xdiff.setter
    def xdiff(self, array):
        self._diff = self._checked(array, 'diff')

    def __repr__(self):
        return f'<Blob {self._shape} {self.dtype}>'
