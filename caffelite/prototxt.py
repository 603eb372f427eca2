"""Reading prototxt (protobuf text format) and binary protos, with errors naming the file and line."""
import os

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .errors import CaffeliteError


def parse_prototxt_text(text, message, source='<string>'):
    """Parse protobuf text into ``message`` (returned); a parse error names source and line."""
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise CaffeliteError(f'{source}: cannot parse as {message.DESCRIPTOR.name}: {err}') from None


def read_prototxt(path, message):
    """Read a text-format file into ``message``; errors name the file, and the line on parse errors."""
    path = os.fspath(path)
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as err:
        raise CaffeliteError(f'cannot read {path}: {err.strerror}') from None
    return parse_prototxt_text(text, message, source=path)


def read_proto_binary(path, message):
    """Read a binary protobuf file (.caffemodel, .solverstate, .binaryproto) into ``message``."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise CaffeliteError(f'cannot read {path}: {err.strerror}') from None
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise CaffeliteError(f'{path}: not a valid binary {message.DESCRIPTOR.name} ({err})') from None
    return message
