"""Data layers: Input, DummyData, HDF5Data, HDF5Output, ImageData, MemoryData.

The Python layer lives in python_layer.py and the video clip reader in video_data.py.
"""
import os
import warnings

import numpy as np

from .. import backend
from ..data.images import read_images, read_listed_image
from ..data.listfile import find_list_file, read_list_file, resolve_listed_files
from ..data.prefetch import Prefetcher
from ..data.transformer import DataTransformer
from ..errors import LayerError
from ..filler import fill
from ..proto import caffelite_pb2 as pb
from ..worker import shard_rng
from .base import Layer, register


def _shapes_for_tops(shapes, num_top, what):
    """One shape for every top, or one per top (Caffe's Input/DummyData rule)."""
    if len(shapes) not in (1, num_top):
        raise LayerError(f'{what} must give 1 shape or one per top ({num_top}), got {len(shapes)}')
    return [tuple(shapes[0 if len(shapes) == 1 else i]) for i in range(num_top)]


@register('Input')
class InputLayer(Layer):
    """Tops of fixed shapes, filled from outside (``net.blobs[name].data[...] = x``)."""
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        shapes = [s.dim for s in self.layer_param.input_param.shape]
        if shapes:
            for t, shape in zip(top, _shapes_for_tops(shapes, len(top), 'input_param.shape')):
                t.reshape(shape)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register('DummyData')
class DummyDataLayer(Layer):
    """Tops filled by data_filler; constant fillers fill once, others refill every forward."""
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.dummy_data_param
        if p.shape:
            shapes = [tuple(s.dim) for s in p.shape]
        else:
            legacy = [p.num, p.channels, p.height, p.width]
            n = max(len(x) for x in legacy)
            if n and any(len(x) not in (1, n) for x in legacy):
                raise LayerError('num, channels, height and width must each be given once or '
                                 'as often as the others')
            shapes = [tuple(int(x[0 if len(x) == 1 else i]) for x in legacy) for i in range(n)]
        self.shapes = _shapes_for_tops(shapes, len(top), 'dummy_data_param shape')
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, len(top)):
            raise LayerError(f'data_filler must be given 0, 1 or {len(top)} times')
        if not fillers:
            from ..proto import caffelite_pb2 as pb
            fillers = [pb.FillerParameter(type='constant', value=0)]
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(len(top))]
        self.refill = [f.type != 'constant' for f in self.fillers]
        for t, shape, f in zip(top, self.shapes, self.fillers):
            t.reshape(shape)
            t.xdata = backend.to_device(fill(f, shape, t.dtype))

    def reshape(self, bottom, top):
        for t, shape in zip(top, self.shapes):
            t.reshape(shape)

    def forward(self, bottom, top):
        for t, shape, f, refill in zip(top, self.shapes, self.fillers, self.refill):
            if refill:
                t.xdata = backend.to_device(fill(f, shape, t.dtype))

    def backward(self, top, propagate_down, bottom):
        pass


# -- shared helpers -------------------------------------------------------------------------

def _source_dir(layer):
    """Folder of the prototxt (set by the Net), else the working directory."""
    return getattr(layer, 'source_dir', None) or os.getcwd()


def _list_file(layer, path, what):
    """Resolve a list file named in a prototxt: as given, else beside the prototxt."""
    return find_list_file(path, _source_dir(layer), what)


def layer_rng():
    """A Generator for one data layer, seeded from the global stream (set_random_seed)."""
    return np.random.default_rng(int(backend.host_rng().integers(2 ** 63)))


class PrefetchingDataLayer(Layer):
    """Caffe's BasePrefetchingDataLayer: tops come from a batch source run by a Prefetcher.

    Subclasses implement ``make_source(top)`` → (source, [top shapes]); the source's
    ``next_batch()`` returns one host array per top. ``prefetch_depth`` (None: the default
    of caffelite.data.prefetch, 0: load in the main thread) may be set before setup.
    """
    exact_num_bottom = 0
    prefetch_depth = None
    prefetcher = None

    def setup(self, bottom, top):
        self.rng = layer_rng()
        source, shapes = self.make_source(top)
        for t, shape in zip(top, shapes):
            t.reshape(shape)
        self.source = source
        self.prefetcher = Prefetcher(source, self.prefetch_depth,
                                     name=f'{self.type} "{self.name}" prefetch')

    def make_source(self, top):
        raise NotImplementedError

    def reshape(self, bottom, top):
        pass  # tops take the shape of each batch in forward

    def forward(self, bottom, top):
        batch = self.prefetcher.next()
        for t, array in zip(top, batch):
            t.reshape(array.shape)
            t.xdata = backend.to_device(array)

    def backward(self, top, propagate_down, bottom):
        pass

    def stop_prefetch(self):
        """Stop the background thread (it also stops when the layer is collected)."""
        if self.prefetcher is not None:
            self.prefetcher.stop()


# -- HDF5Data / HDF5Output ------------------------------------------------------------------

class HDF5Source:
    """Caffe's HDF5DataLayer cursor: rows of the current file (in data_permutation order),
    then the next file (in file_permutation order), wrapping around after the last file.

    With shuffle, the file order is shuffled at setup and at every wrap-around, and the
    rows of a file each time it is loaded. With solver_count > 1 (at TRAIN), batch j of the
    stream (rows j*batch_size ... j*batch_size + batch_size - 1) goes to the worker with rank
    j % solver_count: whole batches, not rows, so that LRCN's time-major streams (T rows of
    N columns per batch) stay whole, and each worker's batch pairs with its ImageData batch.
    """

    def __init__(self, files, list_file, names, batch_size, shuffle, rng, dtype,
                 rank=0, count=1):
        self.files, self.list_file, self.names = files, list_file, names
        self.batch_size, self.shuffle, self.rng, self.dtype = batch_size, shuffle, rng, dtype
        self.rank, self.count = rank, count
        self.file_permutation = np.arange(len(files))
        if shuffle:
            rng.shuffle(self.file_permutation)
        self.current_file = 0
        self._load(self.file_permutation[0])
        self.current_row = 0
        self.offset = 0

    def _load(self, index):
        import h5py
        path = self.files[index]
        try:
            with h5py.File(path, 'r') as f:
                self.arrays = [np.asarray(f[name], dtype=self.dtype) for name in self.names]
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            raise LayerError(f'cannot read {path}: {err}') from None
        rows = {a.shape[0] for a in self.arrays}
        if len(rows) != 1:
            raise LayerError(f'{path}: datasets {", ".join(self.names)} have different numbers'
                             f' of rows ({", ".join(str(a.shape[0]) for a in self.arrays)})')
        self.rows = rows.pop()
        self.data_permutation = np.arange(self.rows)
        if self.shuffle:
            self.rng.shuffle(self.data_permutation)

    def _advance(self, rows):
        """Caffe's Next(), ``rows`` times (never past the end of the current file)."""
        self.current_row += rows
        self.offset += rows
        if self.current_row == self.rows:
            if len(self.files) > 1:
                self.current_file += 1
                if self.current_file == len(self.files):
                    self.current_file = 0
                    if self.shuffle:
                        self.rng.shuffle(self.file_permutation)
                self._load(self.file_permutation[self.current_file])
            self.current_row = 0
            if self.shuffle:
                self.rng.shuffle(self.data_permutation)

    def _skip(self, rows):
        while rows:
            step = min(rows, self.rows - self.current_row)
            self._advance(step)
            rows -= step

    def next_batch(self):
        if self.count > 1:       # pass over the other workers' batches
            batch = self.offset // self.batch_size
            self._skip((self.rank - batch) % self.count * self.batch_size)
        out = [np.empty((self.batch_size,) + a.shape[1:], self.dtype) for a in self.arrays]
        filled = 0
        while filled < self.batch_size:
            take = min(self.batch_size - filled, self.rows - self.current_row)
            rows = self.data_permutation[self.current_row:self.current_row + take]
            for o, a in zip(out, self.arrays):
                o[filled:filled + take] = a[rows]
            filled += take
            self._advance(take)
        return tuple(out)


def _datasets(group):
    """The names of the datasets at the top of an HDF5 file or group (not its groups)."""
    import h5py
    return sorted(name for name, item in group.items() if isinstance(item, h5py.Dataset))


def _check_hdf5_files(files, list_file, names):
    """Every file has every dataset, the datasets agree in rows, and trailing shapes agree
    across files. Returns the trailing shape of each dataset."""
    import h5py
    shapes = None
    for path in files:
        try:
            with h5py.File(path, 'r') as f:
                missing = [n for n in names if not isinstance(f.get(n), h5py.Dataset)]
                if missing:
                    raise LayerError(f'{path} (listed in {list_file}) has no dataset '
                                     f'{", ".join(missing)}; its datasets are '
                                     f'{", ".join(_datasets(f)) or "none"}')
                dims = [f[n].shape for n in names]
        except (OSError, RuntimeError) as err:
            raise LayerError(f'cannot read {path} (listed in {list_file}): {err}') from None
        if any(len(d) == 0 for d in dims):
            raise LayerError(f'{path}: datasets need at least one axis (rows)')
        if len({d[0] for d in dims}) != 1:
            detail = ', '.join(f'{n}: {d[0]}' for n, d in zip(names, dims))
            raise LayerError(f'{path}: the datasets of the tops must have the same number of '
                             f'rows ({detail})')
        if dims[0][0] == 0:
            raise LayerError(f'{path}: datasets have no rows')
        trailing = [tuple(d[1:]) for d in dims]
        if shapes is None:
            shapes = trailing
        elif trailing != shapes:
            raise LayerError(f'{path}: dataset shapes {trailing} differ from those of '
                             f'{files[0]} {shapes} (beyond the row axis)')
    return shapes


@register('HDF5Data')
class HDF5DataLayer(PrefetchingDataLayer):
    """Rows of HDF5 datasets, one top per dataset name (Caffe's HDF5Data).

    hdf5_data_param: source (text file, one .h5 path per line), batch_size, shuffle.
    Top j has shape (batch_size, *dataset_j.shape[1:]): LRCN's caption chunks hold (T*k, N)
    time-major streams, so batch_size T gives a T x N batch. Like Caffe, no transform_param.
    """
    deals_records = True
    min_top = 1

    def make_source(self, top):
        p = self.layer_param.hdf5_data_param
        if p.batch_size <= 0:
            raise LayerError('hdf5_data_param.batch_size must be positive')
        if self.layer_param.HasField('transform_param'):
            warnings.warn(f'HDF5Data "{self.name}": transform_param is ignored (as in Caffe)')
        list_file = _list_file(self, p.source, 'hdf5_data_param.source')
        entries = read_list_file(list_file, with_label=False)
        files = resolve_listed_files(entries, list_file, kind='HDF5 file')
        names = list(self.layer_param.top)
        if len(names) != len(top):
            raise LayerError(f'the tops must be named (by their dataset names), got '
                             f'{len(names)} names for {len(top)} tops')
        shapes = _check_hdf5_files(files, list_file, names)
        count = self.solver_count if self.phase == pb.TRAIN else 1
        rng = shard_rng(self.rng, self.name) if count > 1 else self.rng  # same on all ranks
        source = HDF5Source(files, list_file, names, p.batch_size, p.shuffle, rng,
                            self.dtype, rank=self.solver_rank if count > 1 else 0, count=count)
        return source, [(p.batch_size,) + s for s in shapes]


@register('HDF5Output')
class HDF5OutputLayer(Layer):
    """Writes its two bottoms to hdf5_output_param.file_name as datasets "data" and "label".

    The file is created (truncated) at setup. Caffe 1.0 writes the datasets on the first
    forward only (a second forward fails there); here every forward appends its rows, so the
    datasets grow along axis 0.
    """
    exact_num_bottom = 2
    exact_num_top = 0

    def setup(self, bottom, top):
        import h5py
        name = self.layer_param.hdf5_output_param.file_name
        if not name:
            raise LayerError('hdf5_output_param.file_name is not set')
        folder = os.path.dirname(os.path.abspath(name))
        if not os.path.isdir(folder):
            raise LayerError(f'hdf5_output_param.file_name: folder {folder} does not exist')
        self.file_name = name
        h5py.File(name, 'w').close()

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise LayerError(f'data and label must have the same number of rows, got '
                             f'{bottom[0].shape} and {bottom[1].shape}')

    def forward(self, bottom, top):
        import h5py
        with h5py.File(self.file_name, 'a') as f:
            for key, blob in (('data', bottom[0]), ('label', bottom[1])):
                array = backend.to_host(blob.xdata)
                if key not in f:
                    f.create_dataset(key, data=array, maxshape=(None,) + array.shape[1:],
                                     chunks=True)
                    continue
                ds = f[key]
                if ds.shape[1:] != array.shape[1:]:
                    raise LayerError(f'{self.file_name}: "{key}" rows of shape {ds.shape[1:]} '
                                     f'already written, now {array.shape[1:]}')
                start = ds.shape[0]
                ds.resize(start + array.shape[0], axis=0)
                ds[start:] = array

    def backward(self, top, propagate_down, bottom):
        # Writing a file does not change any loss: the gradient is zero (Caffe: no-op).
        for b, down in zip(bottom, propagate_down):
            if down:
                b.xdiff = backend.xp().zeros(b.shape, b.dtype)


# -- ImageData ------------------------------------------------------------------------------

class ImageListSource:
    """Caffe's ImageDataLayer::load_batch: batch_size lines from the cursor, wrapping around
    (and reshuffling with shuffle) at the end of the list; then the transform."""

    def __init__(self, paths, entries, list_file, order, start, batch_size, is_color,
                 sizes, shuffle, transformer, rng, dtype, rank=0, count=1, order_rng=None):
        self.paths, self.entries, self.list_file = paths, entries, list_file
        self.order, self.cursor = order, start
        self.batch_size, self.is_color = batch_size, is_color
        self.sizes = sizes     # new_height, new_width, min_height, min_width
        self.shuffle, self.transformer, self.rng, self.dtype = shuffle, transformer, rng, dtype
        # With count > 1 workers, batch j of the list goes to rank j % count; the list is
        # reshuffled with order_rng, the same on every worker.
        self.rank, self.count, self.offset = rank, count, 0
        self.order_rng = order_rng or rng

    def _next_line(self):
        k = int(self.order[self.cursor])
        self.cursor += 1
        self.offset += 1
        if self.cursor >= len(self.order):
            self.cursor = 0
            if self.shuffle:
                self.order_rng.shuffle(self.order)
        return k

    def next_batch(self):
        if self.count > 1:
            for _ in range((self.rank - self.offset // self.batch_size) % self.count *
                           self.batch_size):
                self._next_line()
        chosen = [self._next_line() for _ in range(self.batch_size)]
        images = read_images([(self.paths[k], self.entries[k][0]) for k in chosen],
                               self.list_file, self.is_color, self.sizes)
        for k, image in zip(chosen, images):
            if image.shape != images[0].shape:
                raise LayerError(
                    f'{self.paths[k]} ({self.list_file} line {self.entries[k][0]}) is '
                    f'{image.shape[1]} x {image.shape[2]}, the batch\'s first image '
                    f'{images[0].shape[1]} x {images[0].shape[2]}: set new_height/new_width '
                    f'or batch_size 1')
        data = self.transformer.transform(np.stack(images), self.rng, dtype=self.dtype)
        labels = np.array([self.entries[k][2] for k in chosen], dtype=self.dtype)
        return data, labels


@register('ImageData')
class ImageDataLayer(PrefetchingDataLayer):
    """Images listed in a text file (``path label`` lines), decoded to BGR C x H x W.

    image_data_param: source, root_folder (prefixed to each path), batch_size, shuffle (the
    list, at setup and at every epoch), rand_skip (skip a random number < rand_skip of lines
    at setup), new_height/new_width (resize, see caffelite.data.images.resize_bilinear),
    min_height/min_width (the LRCN fork's upscaling of smaller images), is_color. transform_param applies (force_color / force_gray override is_color).
    Tops: data (batch_size, C, H', W') and, optionally, label (batch_size,).
    Every listed file is checked to exist at setup.
    """
    deals_records = True
    min_top = 1
    max_top = 2

    def make_source(self, top):
        p = self.layer_param.image_data_param
        if p.batch_size <= 0:
            raise LayerError('image_data_param.batch_size must be positive')
        if bool(p.new_height) != bool(p.new_width):
            raise LayerError('image_data_param: set both new_height and new_width, or neither')
        if bool(p.min_height) != bool(p.min_width):
            raise LayerError('image_data_param: set both min_height and min_width, or neither')
        sizes = (p.new_height, p.new_width, p.min_height, p.min_width)
        transformer = DataTransformer(self.layer_param.transform_param, self.phase,
                                      _source_dir(self))
        is_color = transformer.color_override(p.is_color)
        list_file = _list_file(self, p.source, 'image_data_param.source')
        entries = read_list_file(list_file, with_label=True)
        paths = resolve_listed_files(entries, list_file, p.root_folder, kind='image')
        count = self.solver_count if self.phase == pb.TRAIN else 1
        order_rng = shard_rng(self.rng, self.name) if count > 1 else self.rng
        order = np.arange(len(entries))
        if p.shuffle:
            order_rng.shuffle(order)
        start = 0
        if p.rand_skip:
            start = int(order_rng.integers(0, p.rand_skip))
            if start >= len(entries):
                raise LayerError(f'rand_skip drew {start} but {list_file} has only '
                                 f'{len(entries)} lines')
        k = order[start]
        first = read_listed_image(paths[k], entries[k][0], list_file, is_color, *sizes)
        shape = transformer.output_shape(*first.shape)
        source = ImageListSource(paths, entries, list_file, order, start, p.batch_size,
                                 is_color, sizes, p.shuffle, transformer, self.rng, self.dtype,
                                 self.solver_rank if count > 1 else 0, count, order_rng)
        return source, [(p.batch_size,) + shape, (p.batch_size,)][:len(top)]


# -- MemoryData -----------------------------------------------------------------------------

@register('MemoryData')
class MemoryDataLayer(Layer):
    """Batches from arrays handed over by ``reset(data, labels)`` (pycaffe's
    ``net.set_input_arrays``), batch_size rows at a time, wrapping around.

    memory_data_param: batch_size, channels, height, width. Tops: data (batch_size, C, H, W)
    and label (batch_size,). As in Caffe, reset() does not apply transform_param.
    """
    exact_num_bottom = 0
    exact_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.batch_size = int(p.batch_size)
        self.item_shape = (int(p.channels), int(p.height), int(p.width))
        if self.batch_size <= 0 or min(self.item_shape) <= 0:
            raise LayerError('memory_data_param: batch_size, channels, height and width must '
                             'all be positive')
        self.data = None
        self.labels = None
        self.pos = 0
        top[0].reshape((self.batch_size,) + self.item_shape)
        top[1].reshape((self.batch_size,))

    def reset(self, data, labels):
        """Use ``data`` (n, C, H, W) and ``labels`` (n,) or (n, 1, 1, 1); n a multiple of
        batch_size. The arrays are copied."""
        data = np.asarray(data)
        labels = np.asarray(labels)
        if labels.ndim == 4 and labels.shape[1:] == (1, 1, 1):
            labels = labels.reshape(-1)
        if data.ndim != 4 or data.shape[1:] != self.item_shape:
            raise LayerError(f'data must be n x {" x ".join(map(str, self.item_shape))} '
                             f'(memory_data_param), got shape {data.shape}')
        if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
            raise LayerError(f'labels must be a vector of {data.shape[0]} entries (or '
                             f'n x 1 x 1 x 1), got shape {labels.shape}')
        if data.shape[0] == 0 or data.shape[0] % self.batch_size:
            raise LayerError(f'the number of items ({data.shape[0]}) must be a positive '
                             f'multiple of batch_size ({self.batch_size})')
        self.data = np.array(data, dtype=self.dtype)
        self.labels = np.array(labels, dtype=self.dtype)
        self.pos = 0

    def set_batch_size(self, batch_size):
        if self.data is not None and self.data.shape[0] % batch_size:
            raise LayerError(f'batch_size {batch_size} does not divide the {self.data.shape[0]}'
                             f' items given')
        self.batch_size = int(batch_size)

    def reshape(self, bottom, top):
        top[0].reshape((self.batch_size,) + self.item_shape)
        top[1].reshape((self.batch_size,))

    def forward(self, bottom, top):
        if self.data is None:
            raise LayerError('MemoryData needs its arrays first: net.set_input_arrays(data, '
                             'labels)')
        end = self.pos + self.batch_size
        top[0].xdata = backend.to_device(self.data[self.pos:end])
        top[1].xdata = backend.to_device(self.labels[self.pos:end])
        self.pos = end % self.data.shape[0]

    def backward(self, top, propagate_down, bottom):
        pass

