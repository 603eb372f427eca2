"""Seeded mutations of the files a user gives caffelite, for the fuzz test (test_fuzz.py).

Every function takes a ``random.Random`` (so a fixed seed gives the same case every run) and
returns the mutated content:

- :func:`mutate_text`: prototxt / solver / list-file text as bytes: drop, duplicate or swap
  lines, flip a number to huge / negative / zero / fractional, insert bytes that are not
  UTF-8 (in a comment or not), truncate;
- :func:`mutate_bytes`: binary files (.caffemodel, .solverstate, images): truncate, flip
  bytes, zero a run, append garbage;
- :func:`mutate_hdf5`: rewrite an HDF5 file's layout (dataset <-> group, rename, wrong type,
  drop an entry) or truncate it.
"""
import re

import h5py
import numpy as np

NUMBER = re.compile(rb'(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w.])')
#: What a number may become: huge (an INT_MAX-sized blob), negative, zero, fractional.
NUMBERS = (b'1000000000000', b'2147483648', b'-1', b'-7', b'0', b'0.5', b'1e30', b'3')
NOT_UTF8 = (b'\xff', b'\xe9', b'\xc3\x28', b'\x80\x80', b'\0')


def _lines(data):
    return data.split(b'\n')


def mutate_text(rng, data):
    """One random mutation of text ``data`` (bytes)."""
    lines = _lines(data)
    kind = rng.choice(('drop', 'duplicate', 'swap', 'number', 'number', 'number',
                       'not_utf8', 'comment_not_utf8', 'truncate', 'junk_line'))
    i = rng.randrange(len(lines))
    if kind == 'drop':
        del lines[i]
    elif kind == 'duplicate':
        lines.insert(i, lines[i])
    elif kind == 'swap':
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 'number':
        matches = list(NUMBER.finditer(data))
        if matches:
            m = rng.choice(matches)
            return data[:m.start()] + rng.choice(NUMBERS) + data[m.end():]
    elif kind == 'not_utf8':
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice(NOT_UTF8) + data[at:]
    elif kind == 'comment_not_utf8':
        lines.insert(i, b'# caf' + rng.choice(NOT_UTF8[:-1]) + b' r\xe9seau')
    elif kind == 'truncate':
        return data[:rng.randrange(len(data) + 1)]
    else:
        lines.insert(i, rng.choice((b'}', b'{', b'layer {', b'"', b'x' * 60000,
                                    b'name: "' + b'y' * 60000 + b'"')))
    return b'\n'.join(lines)


def mutate_bytes(rng, data):
    """One random mutation of binary ``data``."""
    kind = rng.choice(('truncate', 'flip', 'flip', 'zeros', 'append', 'empty'))
    if kind == 'truncate':
        return data[:rng.randrange(len(data))]
    if kind == 'empty':
        return b''
    if kind == 'append':
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    out = bytearray(data)
    if kind == 'flip':
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    else:
        at = rng.randrange(len(out))
        out[at:at + rng.randint(1, 32)] = bytes(min(32, len(out) - at))
    return bytes(out)


def _items(f):
    found = []
    f.visititems(lambda name, item: found.append(name))
    return found


def mutate_hdf5(rng, path):
    """Rewrite the HDF5 file at ``path`` in place with one layout mutation, or truncate it."""
    kind = rng.choice(('to_group', 'to_dataset', 'rename', 'strings', 'drop', 'scalar',
                       'truncate'))
    if kind == 'truncate':
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data[:rng.randrange(len(data))])
        return kind
    with h5py.File(path, 'a') as f:
        names = _items(f)
        name = rng.choice(names)
        if kind == 'to_group':
            del f[name]
            f.create_group(name)
        elif kind == 'to_dataset':
            del f[name]
            f.create_dataset(name, data=np.arange(3.0))
        elif kind == 'rename':
            f.move(name, name + 'x')
        elif kind == 'strings':
            del f[name]
            f.create_dataset(name, data=np.bytes_(b'not a number'))
        elif kind == 'scalar':
            del f[name]
            f.create_dataset(name, data=np.float64(rng.choice((1e12, -1.0, 0.5))))
        else:
            del f[name]
    return kind
