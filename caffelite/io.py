"""Weight files, and pycaffe's ``caffe.io``.

This module's own job is weights and BlobProtos: binary .caffemodel (NetParameter with layer
blobs), Caffe's HDF5 weights, mean .binaryproto files, BlobProto <-> array. Every write goes
to a temporary file that is renamed into place.

It is also what ``caffe.io`` is for a pycaffe script (``import caffelite as caffe``): besides
its BlobProto helpers (blobproto_to_array, array_to_blobproto, ...), it re-exports pycaffe's
image and Datum helpers, which live in :mod:`caffelite.data`: load_image, resize_image
(:mod:`caffelite.data.images`), oversample, Transformer
(:mod:`caffelite.data.pycaffe_transformer`), array_to_datum, datum_to_array
(:mod:`caffelite.data.datum`).
"""
import os
import secrets
from contextlib import contextmanager

import numpy as np

from .blob import shape_count
from .errors import CaffeliteError
from .prototxt import read_proto_binary
from .proto_wire import blob_proto_chunks, join, spliced_chunks
from .upgrade import upgrade_net_param
from .proto import caffelite_pb2 as pb

# pycaffe's caffe.io helpers that live in caffelite.data, which sits above this module: they
# are resolved on first use (PEP 562), so importing io never imports the data package.
PYCAFFE_REEXPORTS = {
    'array_to_datum': 'datum', 'datum_to_array': 'datum',
    'load_image': 'images', 'resize_image': 'images',
    'Transformer': 'pycaffe_transformer', 'oversample': 'pycaffe_transformer',
}


def __getattr__(name):
    if name not in PYCAFFE_REEXPORTS:
        raise AttributeError(f"module 'caffelite.io' has no attribute '{name}'")
    import importlib
    module = importlib.import_module(f'.data.{PYCAFFE_REEXPORTS[name]}', __package__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(PYCAFFE_REEXPORTS))


def create_unique(path_stem, suffix):
    """Create an empty file ``<path_stem>.<pid>.<random><suffix>`` of its own (O_EXCL) with
    mode 0666 less the umask, as Caffe's files get (mkstemp would give 0600); its path."""
    while True:
        path = f'{path_stem}.{os.getpid()}.{secrets.token_hex(4)}{suffix}'
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = create_unique(os.path.join(folder, '.' + os.path.basename(path)), '.tmp')
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_proto_atomic(path, message):
    """Write a message, or its serialization as a list of bytes-like chunks (proto_wire), to
    ``path`` atomically."""
    chunks = message if isinstance(message, list) else [message.SerializeToString()]
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            for chunk in chunks:
                f.write(chunk)


def blob_proto_from_array(data, diff=None):
    """A BlobProto with ``shape`` (none for a 0-axis array) and float data (and diff), as
    Caffe's Blob::ToProto writes them."""
    return pb.BlobProto.FromString(join(blob_proto_chunks(data, diff, double=False)))


def _has_legacy_shape(proto):
    return any(proto.HasField(f) for f in ('num', 'channels', 'height', 'width'))


def blob_proto_shape(proto):
    """The shape of a BlobProto as Caffe's Blob::FromProto reads it: the legacy 4-D
    num/channels/height/width when any of them is set, else ``shape``'s dims (none: a
    0-axis blob of one value, as Caffe writes a channel-shared PReLU slope)."""
    if _has_legacy_shape(proto):
        return (proto.num, proto.channels, proto.height, proto.width)
    return tuple(proto.shape.dim)


class BlobProtoSizeError(CaffeliteError, ValueError):
    """A BlobProto's values do not fill its shape (a ValueError, as pycaffe's reshape raises)."""


def _shaped(proto, values, dtype, what='values'):
    shape = blob_proto_shape(proto)
    array = np.asarray(values, dtype=dtype)
    if array.size != int(np.prod(shape)):
        raise BlobProtoSizeError(f'BlobProto holds {array.size} {what} but its shape {shape} '
                                 f'needs {int(np.prod(shape))}')
    return array.reshape(shape)


def array_from_blob_proto(proto, dtype=np.float32):
    """The data of a BlobProto as an array of its shape (float or double data)."""
    return _shaped(proto, proto.double_data if len(proto.double_data) else proto.data, dtype)


def _legacy_shape_matches(proto_shape, legacy, target):
    """Caffe's Blob::ShapeEquals: a legacy 4-D shape matches a target of <= 4 axes padded
    with leading ones."""
    if not legacy or len(target) > 4:
        return False
    padded = (1,) * (4 - len(target)) + tuple(target)
    return tuple(proto_shape) == padded


def net_proto_chunks(net, write_diff=False):
    """The serialized NetParameter of ``net`` with every layer's parameters and blobs
    (Caffe's Net::ToProto), as chunks (proto_wire) holding the parameter arrays' memory."""
    layers = []
    for lp, layer in zip(net.param.layer, net.layers):
        blobs = [blob_proto_chunks(blob.data, blob.diff if write_diff else None, double=False)
                 for blob in layer.blobs]
        layers.append(spliced_chunks(lp, pb.LayerParameter.BLOBS_FIELD_NUMBER, blobs))
    return spliced_chunks(pb.NetParameter(name=net.name), pb.NetParameter.LAYER_FIELD_NUMBER,
                          layers)


def net_to_proto(net, write_diff=False):
    """NetParameter with every layer's parameters and blobs (Caffe's Net::ToProto)."""
    return pb.NetParameter.FromString(join(net_proto_chunks(net, write_diff)))


def is_hdf5(path):
    """Whether ``path`` is an HDF5 file, judged by its content as Caffe does (H5Fis_hdf5):
    the HDF5 signature at byte 0, 512, 1024, 2048, ... (the superblock's possible places)."""
    signature = b'\x89HDF\r\n\x1a\n'
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + len(signature) <= size:
            f.seek(offset)
            if f.read(len(signature)) == signature:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _source_layers(path):
    """[(layer name, [(shape, is_legacy_shape, values)])] from a .caffemodel (V2 or V1
    layers) or a Caffe .h5 weights file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeliteError(f'weights file {path} does not exist')
    if is_hdf5(path):
        return _hdf5_source_layers(path)
    try:
        param = upgrade_net_param(read_proto_binary(path, pb.NetParameter()), path)
    except CaffeliteError as err:
        if path.endswith(('.h5', '.hdf5')):   # named as HDF5, but its content is not
            raise CaffeliteError(f'weights file {path} is not HDF5 (by its content), and as a '
                                 f'binary proto: {err}') from None
        raise
    result = []
    for layer in param.layer:
        blobs = [(blob_proto_shape(b), _has_legacy_shape(b),
                  np.asarray(b.double_data if len(b.double_data) else b.data))
                 for b in layer.blobs]
        result.append((layer.name, blobs))
    return result


def open_hdf5(path, what):
    """``h5py.File(path, 'r')``; a CaffeliteError naming the file (``what``: 'weights file')
    when it is not HDF5, truncated or unreadable."""
    import h5py
    try:
        return h5py.File(path, 'r')
    except (OSError, RuntimeError) as err:
        raise CaffeliteError(f'cannot read {what} {path} as HDF5: {err}') from None


def _hdf5_source_layers(path):
    """The layers of Caffe's HDF5 weights layout, /data/<layer>/<k> for k = 0..n-1; a
    CaffeliteError naming the file and the offending entry for any other layout."""
    import h5py
    with open_hdf5(path, 'weights file') as f:
        group = f.get('data')
        if not isinstance(group, h5py.Group):
            raise CaffeliteError(f'{path}: no "data" group; not a Caffe HDF5 weights file')
        result = []
        for name, layer in group.items():
            if not isinstance(layer, h5py.Group):
                raise CaffeliteError(f'{path}: data/{name} is a dataset; Caffe\'s layout has a '
                                     f'group per layer holding datasets 0, 1, ...')
            keys = sorted(layer)
            if keys != sorted(str(k) for k in range(len(keys))):
                raise CaffeliteError(f'{path}: the blobs of data/{name} must be datasets named '
                                     f'0..{len(keys) - 1}, found {", ".join(keys)[:200]}')
            arrays = []
            for k in range(len(keys)):
                blob = layer[str(k)]
                if not isinstance(blob, h5py.Dataset) or blob.dtype.kind not in 'fiu':
                    raise CaffeliteError(f'{path}: data/{name}/{k} is not a numeric dataset')
                try:
                    arrays.append(np.asarray(blob))
                except (OSError, RuntimeError) as err:
                    raise CaffeliteError(f'{path}: cannot read data/{name}/{k}: {err}') \
                        from None
            result.append((name, [(a.shape, False, a) for a in arrays]))
        return result


def copy_weights_into(net, path):
    """Caffe's CopyTrainedLayersFrom: copy blobs by layer name; layers missing from the net
    are ignored; a count or shape mismatch is an error naming the layer."""
    targets = net.layer_dict
    for name, sources in _source_layers(path):
        layer = targets.get(name)
        if layer is None:
            continue
        if len(sources) != len(layer.blobs):
            raise CaffeliteError(f'{path}: layer "{name}" has {len(sources)} parameter blobs, '
                                 f'the net expects {len(layer.blobs)}')
        for k, ((shape, legacy, values), blob) in enumerate(zip(sources, layer.blobs)):
            if values.size != shape_count(shape):
                raise CaffeliteError(
                    f'{path}: cannot copy parameter {k} of layer "{name}": the file\'s blob '
                    f'has shape {tuple(shape)} but holds {values.size} values (count '
                    f'mismatch: {shape_count(shape)} expected); the file is damaged')
            matches = tuple(shape) == blob.shape or _legacy_shape_matches(shape, legacy,
                                                                          blob.shape)
            if not matches:
                raise CaffeliteError(
                    f'{path}: cannot copy parameter {k} of layer "{name}": shape mismatch, '
                    f'source {tuple(shape)}, target {blob.shape}. To learn this layer\'s '
                    f'parameters from scratch instead, rename the layer.')
            blob.data[...] = values.reshape(blob.shape)


def save_weights_hdf5(net, path, write_diff=False):
    """Caffe's HDF5 weights layout: /data/<layer>/<k> (and /diff/<layer>/<k>)."""
    import h5py
    with atomic_path(path) as tmp:
        with h5py.File(tmp, 'w') as f:
            groups = [('data', 'data')] + ([('diff', 'diff')] if write_diff else [])
            for group_name, attr in groups:
                group = f.create_group(group_name)
                for name, blobs in net.params.items():
                    layer_group = group.create_group(name)
                    for k, blob in enumerate(blobs):
                        layer_group.create_dataset(str(k), data=getattr(blob, attr))


def read_mean_binaryproto(path):
    """The mean image of a Caffe mean file (.binaryproto, a BlobProto) as a float32 C x H x W
    array. Caffe writes it as a 1 x C x H x W blob (legacy num/channels/height/width)."""
    proto = read_proto_binary(path, pb.BlobProto())
    array = array_from_blob_proto(proto, np.float32)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise CaffeliteError(f'{path}: a mean file holds one image, this blob has '
                                 f'{array.shape[0]} (shape {array.shape})')
        array = array[0]
    if array.ndim != 3:
        raise CaffeliteError(f'{path}: a mean image must be C x H x W or 1 x C x H x W, got '
                             f'shape {array.shape}')
    return array


def write_mean_binaryproto(path, array):
    """Write a C x H x W (or 1 x C x H x W) mean image as Caffe's compute_image_mean does: a
    BlobProto with the legacy 4-D num/channels/height/width fields and float data."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] != 1:
        raise CaffeliteError(f'a mean image must be C x H x W or 1 x C x H x W, got shape '
                             f'{array.shape}')
    write_proto_atomic(path, blob_proto_chunks(array, legacy_shape=True))


# -- pycaffe's caffe.io ---------------------------------------------------------------------
# The BlobProto conversions with pycaffe's names and behaviour; the image and Datum helpers
# are re-exported from caffelite.data (imported at the top).


def blobproto_to_array(blob, return_diff=False):
    """A BlobProto's data (or diff) as a float64 array of its shape, as pycaffe returns it:
    the legacy num/channels/height/width when set, else ``shape`` (none: a 0-axis array).
    (pycaffe reads only the float fields; double_data/double_diff are read here too.)"""
    if not return_diff:
        return array_from_blob_proto(blob, np.float64)
    return _shaped(blob, blob.double_diff if len(blob.double_diff) else blob.diff, np.float64,
                   'diff values')


def array_to_blobproto(arr, diff=None):
    """A BlobProto with ``shape`` = arr.shape and float data (and diff)."""
    return blob_proto_from_array(arr, diff)


def arraylist_to_blobprotovector_str(arraylist):
    """Serialized BlobProtoVector of the arrays."""
    vec = pb.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(data):
    """The arrays of a serialized BlobProtoVector."""
    vec = pb.BlobProtoVector()
    vec.ParseFromString(data)
    return [blobproto_to_array(blob) for blob in vec.blobs]
