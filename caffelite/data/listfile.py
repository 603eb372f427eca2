"""The files a prototxt names, and the ``source`` list files of the data layers.

A list file (ImageData, VideoData, HDF5Data; WindowData's window file names images too)
holds one entry per line, ``path label`` or just ``path``; relative paths are looked up in
the working directory, then beside the file that names them.
"""
import os

from ..errors import LayerError


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


def read_list_file(path, with_label):
    """[(line number, entry, label)] of a list file; blank lines are skipped.

    with_label: lines are ``entry label`` (the label after the LAST run of whitespace, as
    Caffe 1.0's ImageData reads them, so entries may contain spaces); otherwise the whole
    line is the entry.
    """
    entries = []
    with open(path, encoding='utf-8') as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if not with_label:
                entries.append((number, line, None))
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise LayerError(f'{path} line {number}: expected "path label", got "{line}"')
            entry, label = parts
            try:
                value = int(label)
            except ValueError:
                raise LayerError(f'{path} line {number}: label "{label}" is not an '
                                 f'integer') from None
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
