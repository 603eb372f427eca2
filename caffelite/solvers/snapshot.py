"""Solver state files, Caffe's two layouts, each written to a temporary file and renamed.

- ``<prefix>_iter_N.solverstate``: a binary SolverState proto (iter, learned_net = the
  matching .caffemodel's path, history blobs, current_step).
- ``<prefix>_iter_N.solverstate.h5``: HDF5 with ``iter`` and ``current_step`` (int32, shape
  (1,)), ``learned_net`` (a string) and group ``history`` holding datasets ``0``, ``1``, ...
  in the history blobs' shapes.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from .. import io
from ..errors import CaffeliteError
from ..prototxt import read_proto_binary
from ..proto_wire import blob_proto_chunks, spliced_chunks
from ..proto import caffelite_pb2 as pb


@dataclass
class SolverStateData:
    iter: int
    learned_net: str
    current_step: int
    history: list = field(default_factory=list)     # host NumPy arrays


def write_state_binary(path, state):
    """The SolverState proto; each history blob float data for float32, double_data for
    float64 (Caffe's Blob<Dtype>::ToProto), written straight from the arrays."""
    proto = pb.SolverState(iter=state.iter, learned_net=state.learned_net,
                           current_step=state.current_step)
    history = [blob_proto_chunks(array) for array in state.history]
    io.write_proto_atomic(path, spliced_chunks(proto, pb.SolverState.HISTORY_FIELD_NUMBER,
                                               history))


def write_state_hdf5(path, state):
    import h5py
    with io.atomic_path(path) as tmp:
        with h5py.File(tmp, 'w') as f:
            f.create_dataset('iter', data=np.array([state.iter], np.int32))
            f.create_dataset('learned_net', data=np.bytes_(state.learned_net.encode()))
            f.create_dataset('current_step', data=np.array([state.current_step], np.int32))
            group = f.create_group('history')
            for i, array in enumerate(state.history):
                group.create_dataset(str(i), data=np.asarray(array))


def _read_binary(path):
    proto = read_proto_binary(path, pb.SolverState())
    history = []
    for i, blob in enumerate(proto.history):
        try:
            history.append(io.array_from_blob_proto(
                blob, np.float64 if len(blob.double_data) else np.float32))
        except CaffeliteError as err:
            raise CaffeliteError(f'{path}: history blob {i}: {err}') from None
    learned = proto.learned_net if proto.HasField('learned_net') else ''
    if isinstance(learned, bytes):      # not UTF-8: a file name in bytes, as Caffe takes it
        learned = learned.decode('utf-8', 'surrogateescape')
    return SolverStateData(proto.iter, learned, proto.current_step, history)


def _integer(f, name, path):
    """The integer in dataset ``name`` (Caffe writes int32, shape (1,))."""
    import h5py
    item = f.get(name)
    if not isinstance(item, h5py.Dataset):
        raise CaffeliteError(f'{path}: no "{name}" dataset; not a Caffe HDF5 solver state')
    value = np.asarray(item[()])
    if value.size != 1 or value.dtype.kind not in 'iu':
        raise CaffeliteError(f'{path}: "{name}" must hold one integer, it holds '
                             f'{value.size} value(s) of type {value.dtype}')
    return int(value.ravel()[0])


def _string(f, name, path):
    """The string in dataset ``name`` ('' when absent)."""
    import h5py
    item = f.get(name)
    if item is None:
        return ''
    value = item[()] if isinstance(item, h5py.Dataset) else None
    value = value.item() if isinstance(value, np.ndarray) and value.size == 1 else value
    if isinstance(value, bytes):
        try:
            return value.decode().rstrip('\0')
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return value
    raise CaffeliteError(f'{path}: "{name}" must be a string dataset (a file name)')


def _read_hdf5(path):
    import h5py
    with io.open_hdf5(path, 'solver state') as f:
        learned = _string(f, 'learned_net', path)
        group = f.get('history')
        if not isinstance(group, h5py.Group):
            raise CaffeliteError(f'{path}: no "history" group; not a Caffe HDF5 solver state')
        names = sorted(group, key=lambda n: int(n) if n.isdigit() else -1)
        if names != [str(i) for i in range(len(names))]:
            raise CaffeliteError(f'{path}: history datasets must be named 0..{len(names) - 1}')
        history = []
        for name in names:
            item = group[name]
            if not isinstance(item, h5py.Dataset) or item.dtype.kind not in 'fiu':
                raise CaffeliteError(f'{path}: history/{name} is not a numeric dataset')
            history.append(np.asarray(item))
        return SolverStateData(_integer(f, 'iter', path), learned,
                               _integer(f, 'current_step', path), history)


def read_state(path):
    """The SolverStateData in ``path``: HDF5 or binary proto, judged by the file's content."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeliteError(f'solver state {path} does not exist')
    return _read_hdf5(path) if io.is_hdf5(path) else _read_binary(path)


def find_learned_net(learned_net, state_path):
    """The weights file a state names: as written, or (when the snapshot folder was moved)
    the file of that name beside the state file."""
    if os.path.exists(learned_net):
        return learned_net
    beside = os.path.join(os.path.dirname(os.path.abspath(state_path)),
                          os.path.basename(learned_net))
    if os.path.exists(beside):
        return beside
    raise CaffeliteError(f'{state_path} names the weights file {learned_net}, which does not '
                         f'exist (nor does {beside})')


def weight_layer_names(path):
    """Names of the layers holding parameter blobs in a .caffemodel or Caffe .h5 weights file."""
    if io.is_hdf5(path):
        import h5py
        with io.open_hdf5(path, 'weights file') as f:
            group = f.get('data')
            if not isinstance(group, h5py.Group):
                raise CaffeliteError(f'{path}: no "data" group; not a Caffe HDF5 weights file')
            return {name for name, layer in group.items()
                    if isinstance(layer, h5py.Group) and len(layer)}
    proto = read_proto_binary(path, pb.NetParameter())
    return {layer.name for layer in list(proto.layer) + list(proto.layers) if layer.blobs}
