"""Helpers shared by the layer tests: a layer from its prototxt text, a Blob from an array."""
import numpy as np
from google.protobuf import text_format

from caffelite.blob import Blob
from caffelite.layers import create_layer
from caffelite.proto import caffelite_pb2 as pb


def make(text, phase=pb.TRAIN, dtype=np.float64):
    """The layer described by LayerParameter ``text`` (float64 by default, for gradient checks)."""
    return create_layer(text_format.Parse(text, pb.LayerParameter()), phase, dtype=dtype)


def blob(array, dtype=np.float64):
    """A Blob of ``dtype`` holding ``array``."""
    array = np.asarray(array)
    b = Blob(array.shape, dtype)
    b.data[...] = array
    return b
