"""Reading prototxt (protobuf text format) and binary protos, with errors naming the file and line.

Text files are read as bytes and decoded as UTF-8 with each invalid byte kept as a lone
surrogate (Python's ``surrogateescape``), so that, as in Caffe, bytes that are not UTF-8 are
harmless inside ``#`` comments (the parser skips them) and a parse error anywhere else (in a
field name or a string value). Messages show such bytes as ``\\xNN`` and are cut to
``MAX_QUOTE`` characters, so a binary file or a 50 KB line is never echoed whole.
"""
import os
import re

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .errors import MAX_QUOTE, CaffeliteError, printable

_NOT_UTF8_OR_NUL = re.compile('[\x00\udc80-\udcff]')


def parse_prototxt_text(text, message, source='<string>'):
    """Parse protobuf text into ``message`` (returned); a parse error names source and line."""
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as err:
        hint = _binary_hint(text) if isinstance(text, str) else ''
        raise CaffeliteError(f'{source}: cannot parse as {message.DESCRIPTOR.name}: '
                             f'{printable(err, MAX_QUOTE)}{hint}') from None


def _binary_hint(text):
    """' (byte 0xNN at line L, column C is not UTF-8 text ...)' for the first NUL or
    non-UTF-8 byte outside a ``#`` comment; '' when there is none."""
    for found in _NOT_UTF8_OR_NUL.finditer(text):
        line_start = text.rfind('\n', 0, found.start()) + 1
        if '#' in text[line_start:found.start()]:
            continue                    # inside a comment: harmless, as in Caffe
        line = text.count('\n', 0, found.start()) + 1
        column = found.start() - line_start + 1
        return (f' (byte 0x{ord(found.group()) & 0xff:02x} at line {line}, column {column} '
                f'is not UTF-8 text: is this a binary file?)')
    return ''


def read_bytes(path):
    """The bytes of ``path``; a CaffeliteError naming the file when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as err:
        raise CaffeliteError(f'cannot read {path}: {err.strerror}') from None


def read_text(path):
    """The text of ``path``, invalid UTF-8 bytes kept as surrogates; errors name the file."""
    return read_bytes(os.fspath(path)).decode('utf-8', 'surrogateescape')


def read_prototxt(path, message):
    """Read a text-format file into ``message``; errors name the file, and the line on parse errors."""
    return parse_prototxt_text(read_text(path), message, source=os.fspath(path))


def read_proto_binary(path, message):
    """Read a binary protobuf file (.caffemodel, .solverstate, .binaryproto) into ``message``."""
    path = os.fspath(path)
    data = read_bytes(path)
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise CaffeliteError(f'{path}: not a valid binary {message.DESCRIPTOR.name} ({err})') from None
    return message
