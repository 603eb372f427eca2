"""Blob: an N-D array of data and its gradient (diff), like Caffe's Blob.

Storage follows Caffe's SyncedMemory (:class:`SyncedArray`): each of data and diff has a host
buffer and, in GPU mode, a device buffer; the latest values live where they were last
accessed (host NumPy or device CuPy) and move only when the other side asks for them.

Storage is persistent, as Caffe's: assigning an array (``blob.xdata = y``, ``blob.data = y``)
writes INTO the buffer the blob already holds, so a view a script keeps
(``out = net.blobs['prob'].data``) sees every later forward, backward and solver update.
``reshape`` keeps the buffers while the new count fits their capacity (Caffe's
Blob::Reshape reallocates only when the count grows beyond it); a same-count reshape keeps
the very same memory, so an old view still aliases the blob.

- ``blob.data`` / ``blob.diff``: NumPy arrays, writable, as in pycaffe (``data[...] = x``).
- ``blob.xdata`` / ``blob.xdiff``: arrays on the current backend, for layers; assigning an
  array of the blob's shape copies it into the storage (``y`` itself is not kept).
"""
import math

import numpy as np

from . import backend


#: Caffe's Blob::Reshape cap on a blob's element count (INT_MAX).
MAX_BLOB_COUNT = 2 ** 31 - 1


class SyncedArray:
    """One of a blob's two arrays (data or diff): Caffe's SyncedMemory.

    A flat host buffer and a flat device buffer of ``capacity`` elements, each allocated
    (zero-filled) on first use; ``head`` is the side holding the latest values ('host',
    'device', or None before anything was written). Asking for one side hands out a view of
    its buffer in the blob's shape and makes that side the head (the caller may write into
    it, as Caffe's mutable_cpu_data / mutable_gpu_data)."""

    __slots__ = ('dtype', 'capacity', 'shape', 'head', '_buffers', '_views')

    def __init__(self, dtype, shape):
        self.dtype = dtype
        self.capacity = 0
        self.head = None
        self._buffers = {}                    # 'host' / 'device' -> flat buffer
        self._views = {}                      # side -> the buffer as an array of ``shape``
        self.reshape(shape)

    def reshape(self, shape):
        """Take the new shape; reallocate (lazily, zeros) only when it needs more room."""
        self.shape = shape
        count = shape_count(shape)
        if count > self.capacity:
            self.capacity, self.head = count, None
            self._buffers, self._views = {}, {}
        else:
            self._views = {side: buf[:count].reshape(shape)
                           for side, buf in self._buffers.items()}

    def _view(self, side):
        view = self._views.get(side)
        if view is None:
            module = np if side == 'host' else backend.xp()
            buffer = module.zeros(self.capacity, self.dtype)
            self._buffers[side] = buffer
            view = self._views[side] = buffer[:shape_count(self.shape)].reshape(self.shape)
        return view

    def _sync_into(self, side):
        """Copy the head's values into ``side``'s buffer (the bus crossing)."""
        source = self._views[self.head]
        if side == 'host':
            source.get(out=self._views['host'])
        else:
            self._views['device'].set(source)

    def get(self, host):
        """The array on the host (NumPy) or on the current backend, brought up to date."""
        side = 'host' if host or backend.mode() == 'cpu' else 'device'
        view = self._view(side)
        if self.head is not None and self.head != side:
            self._sync_into(side)
        self.head = side
        return view

    def set(self, array):
        """Write ``array`` (NumPy or CuPy, of this shape) into the buffer on its own side
        (the host in CPU mode)."""
        if backend.mode() == 'cpu':
            array = backend.to_host(array)
        side = 'host' if isinstance(array, np.ndarray) else 'device'
        self.head = side                      # the old values need not be brought over
        view = self._view(side)
        if array is not view:
            backend.get_array_module(view).copyto(view, array, casting='unsafe')


def shape_count(shape, start=0, end=None):
    """Caffe's Blob::count(start_axis, end_axis) on a shape: the product of shape[start:end]
    (1 for an empty range)."""
    return int(np.prod(tuple(shape)[start:end], dtype=np.int64))


class Blob:
    def __init__(self, shape=(), dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self._shape = tuple(int(s) for s in shape)
        self._data = SyncedArray(self.dtype, self._shape)
        self._diff = SyncedArray(self.dtype, self._shape)

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
        """Change the shape (Caffe's Blob::Reshape): the storage, and its contents, are kept
        while the new count fits the capacity; a larger count reallocates (zeros)."""
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
        self._shape = shape
        self._data.reshape(shape)
        self._diff.reshape(shape)

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
    def _write(self, memory, array, what):
        if tuple(array.shape) != self._shape:
            raise ValueError(f'cannot set blob {what} of shape {tuple(array.shape)} '
                             f'into a blob of shape {self._shape}')
        memory.set(array)

    @property
    def data(self):
        return self._data.get(host=True)

    @data.setter
    def data(self, value):
        self.data[...] = backend.to_host(value)

    @property
    def diff(self):
        return self._diff.get(host=True)

    @diff.setter
    def diff(self, value):
        self.diff[...] = backend.to_host(value)

    @property
    def xdata(self):
        return self._data.get(host=False)

    @xdata.setter
    def xdata(self, array):
        self._write(self._data, array, 'data')

    @property
    def xdiff(self):
        return self._diff.get(host=False)

    @xdiff.setter
    def xdiff(self, array):
        self._write(self._diff, array, 'diff')

    def __repr__(self):
        return f'<Blob {self._shape} {self.dtype}>'
