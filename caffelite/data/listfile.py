"""The files a prototxt names, and the ``source`` list files of the data layers.

A list file (ImageData, VideoData, HDF5Data; WindowData's window file names images too)
holds one entry per line, ``path label`` or just ``path``; relative paths are looked up in
the working directory, then beside the file that names them.
"""
import os

from ..errors import MAX_QUOTE, LayerError, printable


def resolve_path(path, *folders):
    """``path`` as given if it exists (relative to the working directory), else under the
    first of ``folders`` where it exists; the path as given when none has it."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    for folder in folders:
        if folder:
            candidate = os.path.join(folder, path)
            if os.path.exists(candidate):
                return candidate
    return path


def find_list_file(path, source_dir, what):
    """Resolve a list file named in a prototxt (field ``what``): as given, else in
    ``source_dir`` (the prototxt's folder). LayerError when it is unset or missing."""
    if not path:
        raise LayerError(f'{what} is not set')
    resolved = resolve_path(path, source_dir)
    if not os.path.isfile(resolved):
        raise LayerError(f'{what} {path} does not exist (looked in {os.getcwd()} and '
                         f'{source_dir})')
    return resolved


def read_text_lines(path, what):
    """The lines of a text file named by a data layer (``what``: 'list file', 'window
    file'). Bytes that are not UTF-8 are kept (as ``surrogateescape`` does), as Caffe reads
    file names as bytes; a file holding NUL bytes is not text, and is refused naming it."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise LayerError(f'cannot read {what} {path}: {err.strerror}') from None
    if b'\0' in data:
        raise LayerError(f'{what} {path} is not a text file (it holds NUL bytes at offset '
                         f'{data.index(bytes(1))}); give one entry per line')
    return [line.decode('utf-8', 'surrogateescape') for line in data.split(b'\n')]


def read_list_file(path, with_label):
    """[(line number, entry, label)] of a list file; blank lines are skipped.

    with_label: lines are ``entry label`` (the label after the LAST run of whitespace, as
    Caffe 1.0's ImageData reads them, so entries may contain spaces); otherwise the whole
    line is the entry.
    """
    entries = []
    for number, line in enumerate(read_text_lines(path, 'list file'), start=1):
        line = line.strip()
        if not line:
            continue
        if not with_label:
            entries.append((number, line, None))
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise LayerError(f'{path} line {number}: expected "path label", got '
                             f'"{printable(line, MAX_QUOTE)}"')
        entry, label = parts
        try:
            value = int(label)
        except ValueError:
            raise LayerError(f'{path} line {number}: label "{printable(label, MAX_QUOTE)}" '
                             f'is not an integer') from None
        entries.append((number, entry, value))
    if not entries:
        raise LayerError(f'list file {path} is empty')
    return entries


class _ExistenceCache:
    """os.path.exists over many files, listing each folder once (list files name ~1e6 frames)."""

    def __init__(self):
        self._folders = {}

    def exists(self, path):
        folder, name = os.path.split(os.path.abspath(path))
        names = self._folders.get(folder)
        if names is None:
            try:
                names = set(os.listdir(folder))
            except OSError:
                names = set()
            self._folders[folder] = names
        return name in names


def resolve_listed_files(entries, list_file, root_folder='', kind='file'):
    """Resolve every entry of a list file to an existing path, or raise naming the line.

    A relative path (after prefixing root_folder) is looked up in the working directory,
    then in the list file's folder.
    """
    cache = _ExistenceCache()
    list_dir = os.path.dirname(os.path.abspath(list_file))
    resolved = []
    for number, entry, _ in entries:
        path = os.path.join(root_folder, entry) if root_folder else entry
        found = None
        for candidate in ([path] if os.path.isabs(path) else
                          [path, os.path.join(list_dir, path)]):
            if cache.exists(candidate):
                found = candidate
                break
        if found is None:
            raise LayerError(f'{list_file} line {number}: {kind} {path} does not exist')
        resolved.append(found)
    return resolved
