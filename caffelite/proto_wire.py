"""Serialized BlobProtos (and the messages that hold them) without a per-element Python loop.

``BlobProto.data.extend(array)`` converts element by element (26 s for CaffeNet's 244 MB);
here each packed float field is written straight from the array's bytes: tag, varint length,
little-endian float32 (or float64) values. The rest of a message is serialized by protobuf,
field by field in number order as protobuf itself does, so the result is byte-for-byte what
``SerializeToString`` gives for the same message (and parses into it).

Field numbers (caffelite.proto): BlobProto num..width = 1..4, data = 5, diff = 6, shape = 7,
double_data = 8, double_diff = 9; LayerParameter blobs = 7; NetParameter layer = 100;
SolverState history = 3.
"""
import numpy as np

from .proto import caffelite_pb2 as pb

_LENGTH_DELIMITED = 2
_BLOB_DATA, _BLOB_DIFF, _BLOB_DOUBLE_DATA, _BLOB_DOUBLE_DIFF = 5, 6, 8, 9


def _varint(value):
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _size(chunks):
    return sum(memoryview(chunk).nbytes for chunk in chunks)


def length_delimited(field_number, chunks):
    """One length-delimited field holding ``chunks`` (a list of bytes-like objects): tag,
    varint length, the chunks themselves (not copied)."""
    return [_varint(field_number << 3 | _LENGTH_DELIMITED) + _varint(_size(chunks))] + chunks


def _packed(field_number, array, little_endian_type):
    """A packed repeated float/double field holding ``array``, the array's own memory when it
    already has that type (nothing at all when it is empty, as protobuf writes it)."""
    if array is None or array.size == 0:
        return []
    values = np.ascontiguousarray(array, dtype=little_endian_type)
    return length_delimited(field_number, [memoryview(values).cast('B')])


def _without(message, drop):
    """A copy of ``message`` without the set fields whose number ``drop`` accepts."""
    copy = type(message)()
    copy.CopyFrom(message)
    for descriptor, _ in copy.ListFields():
        if drop(descriptor.number):
            copy.ClearField(descriptor.name)
    return copy


def split_serialize(message, field_number):
    """``message`` serialized as (fields numbered below ``field_number``, fields above it);
    that field itself is left out, for the caller to write between the two."""
    numbers = [descriptor.number for descriptor, _ in message.ListFields()]
    if field_number in numbers:                       # leave it out without copying it
        message = _without(message, lambda number: number == field_number)
    head = _without(message, lambda number: number > field_number)
    tail = _without(message, lambda number: number < field_number)
    return head.SerializeToString(), tail.SerializeToString()


def blob_proto_chunks(data, diff=None, legacy_shape=False, double=None):
    """A serialized BlobProto of ``data`` (and ``diff``), as a list of bytes-like chunks: its
    shape as ``shape`` (none for a 0-axis array, as Caffe's Blob::ToProto writes it) or, with
    ``legacy_shape``, as the 4-D num/channels/height/width of an array of at most 4 axes
    (padded with leading ones); values as float ``data``/``diff``, or
    ``double_data``/``double_diff`` when ``double`` (default: when ``data`` is float64)."""
    data = np.asarray(data)
    if double is None:
        double = data.dtype == np.float64
    frame = pb.BlobProto()
    if legacy_shape:
        if data.ndim > 4:
            raise ValueError(f'a legacy 4-D BlobProto cannot hold shape {data.shape}')
        frame.num, frame.channels, frame.height, frame.width = (1,) * (4 - data.ndim) + data.shape
    elif data.ndim:
        frame.shape.dim.extend(data.shape)
    head, shape = split_serialize(frame, _BLOB_DATA)
    diff = None if diff is None else np.asarray(diff)
    if double:
        return ([head, shape] + _packed(_BLOB_DOUBLE_DATA, data, '<f8')
                + _packed(_BLOB_DOUBLE_DIFF, diff, '<f8'))
    return [head] + _packed(_BLOB_DATA, data, '<f4') + _packed(_BLOB_DIFF, diff, '<f4') + [shape]


def spliced_chunks(message, field_number, parts):
    """``message`` serialized, as chunks, with the repeated message field ``field_number``
    replaced by ``parts``, each an already serialized element (a list of chunks)."""
    head, tail = split_serialize(message, field_number)
    chunks = [head]
    for part in parts:
        chunks += length_delimited(field_number, part)
    return chunks + [tail]


def join(chunks):
    """The chunks as one bytes object."""
    return b''.join(chunks)
