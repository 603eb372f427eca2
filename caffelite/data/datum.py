"""Datum <-> array, and database records -> (image, label).

A Datum holds one item: ``channels`` x ``height`` x ``width`` raw uint8 pixels in ``data``
(C x H x W order, BGR for colour, as convert_imageset writes them), or the same number of
floats in ``float_data`` (extract_features), or, with ``encoded: true``, a whole JPEG/PNG
file in ``data``; plus an integer ``label``.
"""
import numpy as np
from google.protobuf.message import DecodeError

from ..errors import LayerError
from ..proto import caffelite_pb2 as pb
from .images import decode_image


def array_to_datum(arr, label=None):
    """A C x H x W array as a Datum: uint8 arrays as raw bytes, anything else as float_data."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f'Incorrect array shape: a Datum holds C x H x W, got {arr.shape}')
    datum = pb.Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel())
    if label is not None:
        datum.label = int(label)
    return datum


def _raw_array(datum, float_dtype):
    """The C x H x W array of a raw Datum: a uint8 view of ``data``, or ``float_data`` as
    ``float_dtype``. Raises LayerError when the sizes do not agree with the shape."""
    shape = (datum.channels, datum.height, datum.width)
    count = int(np.prod(shape))
    dims = ' x '.join(map(str, shape))
    if len(datum.data):
        if len(datum.data) != count:
            raise LayerError(f'it holds {len(datum.data)} bytes of pixel data, but channels x '
                             f'height x width = {dims} = {count}')
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    if len(datum.float_data) != count:
        if not len(datum.float_data):
            raise LayerError(f'it has neither data nor float_data for its {dims} shape')
        raise LayerError(f'it holds {len(datum.float_data)} float_data values, but channels'
                         f' x height x width = {dims} = {count}')
    return np.asarray(datum.float_data, dtype=float_dtype).reshape(shape)


def datum_to_array(datum):
    """pycaffe's datum_to_array: a raw (not encoded) Datum as a new C x H x W array, uint8
    from ``data``, float64 from ``float_data``."""
    if datum.encoded:
        raise LayerError('datum_to_array needs a raw Datum; this one holds an encoded '
                         '(JPEG/PNG) image: decode its data bytes instead')
    try:
        return _raw_array(datum, np.float64).copy()
    except LayerError as err:
        raise LayerError(f'Datum {datum.channels} x {datum.height} x {datum.width}: '
                         f'{err}') from None


def datum_to_image(datum, color=None):
    """The C x H x W image of a Datum as the data layers read it: uint8 from raw or encoded
    ``data`` (``color``: the decoding mode of encoded data, see images.decode_image), float32
    from ``float_data``. Raises LayerError when the sizes do not agree or it is empty."""
    if datum.encoded:
        return decode_image(datum.data, color)
    if not (len(datum.data) or len(datum.float_data) or datum.channels * datum.height *
            datum.width):
        raise LayerError('it is empty (no shape, data or float_data)')
    return _raw_array(datum, np.float32)


def parse_datum(value):
    """A Datum from a record's bytes; LayerError with the protobuf message if they do not
    parse."""
    datum = pb.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as err:
        raise LayerError(f'it does not parse as a Datum ({err})') from None
    return datum


def record_to_item(key, value, color, where):
    """(image, label) of one database record; errors name the record's key and ``where``
    (the database)."""
    try:
        datum = parse_datum(value)
        return datum_to_image(datum, color), datum.label
    except LayerError as err:
        raise LayerError(f'corrupt record "{key.decode(errors="replace")}" in {where}: '
                         f'{err}') from None
