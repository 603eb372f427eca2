"""Helpers shared by the layer tests: a layer from its prototxt text, Blobs from arrays, the
layer's set-up (``Layer.set_up``: blob counts, setup, reshape) and forward on them, and data
files for the data layers. conftest.py offers the first and the last as fixtures too."""
import h5py
import numpy as np
from google.protobuf import text_format

import caffelite
from caffelite import backend
from caffelite.blob import Blob
from caffelite.layers import create_layer
from caffelite.net_rules import filter_net, replace_data_layers
from caffelite.prototxt import read_prototxt
from caffelite.proto import caffelite_pb2 as pb

# A net of three layers that trains without data files (DummyData -> InnerProduct -> loss),
# for the command-line, bad-input and fuzz tests.
TINY_NET = '''name: "tiny"
layer { name: "data" type: "DummyData" top: "x" top: "y"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                           data_filler { type: "gaussian" std: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
'''


def make(text, phase=pb.TRAIN, dtype=np.float64, **attrs):
    """The layer described by LayerParameter ``text`` (float64 by default, for gradient
    checks); ``attrs`` are set on it (e.g. ``source_dir``, ``prefetch_depth``)."""
    if not isinstance(text, pb.LayerParameter):
        text = text_format.Parse(text, pb.LayerParameter())
    layer = create_layer(text, phase, dtype=dtype)
    for name, value in attrs.items():
        setattr(layer, name, value)
    return layer


def blob(array, dtype=np.float64):
    """A Blob of ``dtype`` holding ``array``."""
    array = np.asarray(array)
    b = Blob(array.shape, dtype)
    b.data[...] = array
    return b


def tops(n=1, dtype=np.float64):
    """``n`` empty top Blobs of ``dtype`` (the layer's reshape sizes them)."""
    return [Blob((), dtype) for _ in range(n)]


def forward_once(layer, bottom, top):
    """``layer.set_up`` then one forward on the given blobs; returns ``top``."""
    layer.set_up(bottom, top)
    layer.forward(bottom, top)
    return top


def data_layer(text, phase=pb.TRAIN, dtype=np.float32, seed=1701, **attrs):
    """A data layer from ``text`` (``attrs`` set on it, as in :func:`make`), set up with one top
    Blob per ``top`` in its prototxt after seeding the random stream (unless ``seed`` is None);
    returns (layer, top)."""
    layer = make(text, phase, dtype, **attrs)
    if seed is not None:
        backend.set_random_seed(seed)
    top = tops(len(layer.layer_param.top), dtype)
    layer.set_up([], top)
    return layer, top


def write_hdf5(path, **datasets):
    """An HDF5 file at ``path`` with one dataset per keyword; returns ``path``."""
    with h5py.File(path, 'w') as f:
        for name, value in datasets.items():
            f[name] = value
    return path


def net_with_inputs(path, phase=pb.TEST, stages=(), inputs=None, drop=()):
    """The net of prototxt ``path`` for (phase, stages); given ``inputs`` {top: shape}, its data
    layers are replaced by one Input layer of those tops and shapes, so that it builds without
    the data files, and the layers of the types in ``drop`` (e.g. Silence of the labels) go."""
    state = pb.NetState(phase=phase, stage=list(stages))
    param = filter_net(read_prototxt(str(path), pb.NetParameter()), state)
    if inputs is not None:
        replace_data_layers(param, inputs, drop)
    return caffelite.Net(param, state=state, source=str(path))
