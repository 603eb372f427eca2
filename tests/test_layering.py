"""The package's import graph runs one way, top down (README, "Layout"):

    command line, tools, pycaffe facade -> parallel -> solvers -> net -> layers -> data
    -> blob, io, backend, ... -> proto, errors

Every module of ``caffelite`` is given a level below; a module may import (at import time) only
modules of its own level or lower, and the import-time graph has no cycle. Imports inside a
function (optional dependencies such as cupy and mpi4py, the lazy pycaffe re-exports of
``caffelite.io`` and ``caffelite.layers``) are not import-time edges. A new module must be
given a level here, which keeps this map of the layers true.
"""
import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / 'caffelite'

# (level, module names); a name covers the modules below it too, except 'caffelite' (the
# package's __init__, which imports the public API), which stands for itself alone.
LEVELS = [
    (0, ['caffelite.proto', 'caffelite.errors']),
    (1, ['caffelite.backend', 'caffelite.blob', 'caffelite.filler', 'caffelite.prototxt',
         'caffelite.upgrade', 'caffelite.worker', 'caffelite.net_spec', 'caffelite.io',
         'caffelite.proto_wire', 'caffelite.fakegpu']),
    (2, ['caffelite.data']),
    (3, ['caffelite.layers']),
    (4, ['caffelite.net', 'caffelite.net_rules', 'caffelite.gradient_check',
         'caffelite.pycaffe_net']),
    (5, ['caffelite.solvers', 'caffelite.solver']),
    (6, ['caffelite.parallel']),
    (7, ['caffelite', 'caffelite.__main__', 'caffelite.cli', 'caffelite.caffe_tools',
         'caffelite.lrcn', 'caffelite.onnx', 'caffelite.classifier', 'caffelite.draw',
         'caffelite.coord_map', 'caffelite.plotting', 'caffelite.pycaffe_runtime']),
]


def module_name(path):
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob('*.py'))}


def level_of(module):
    """The level of the longest prefix naming ``module`` or a package above it."""
    best = None
    for level, prefixes in LEVELS:
        for prefix in prefixes:
            below = prefix != 'caffelite' and module.startswith(prefix + '.')
            if module == prefix or below:
                if best is None or len(prefix) > len(best[1]):
                    best = (level, prefix)
    return None if best is None else best[0]


def resolve(importer, node):
    """The caffelite modules an import statement names (a ``from X import name`` names
    X.name when that is a module, else X)."""
    package = importer if MODULES[importer].name == '__init__.py' else importer.rpartition('.')[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split('.')[0] == 'caffelite']
    if node.level:
        base = package.split('.')
        base = base[:len(base) - (node.level - 1)]
        target = '.'.join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ''
    if target.split('.')[0] != 'caffelite':
        return []
    names = [f'{target}.{a.name}' for a in node.names]
    found = [n for n in names if n in MODULES]
    return found if len(found) == len(names) else found + [target]


def import_time_imports(module):
    """Imports executed when ``module`` is imported: those not inside a function body."""
    tree = ast.parse(MODULES[module].read_text(encoding='utf-8'))
    edges = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in resolve(module, child) if t != module)
            visit(child)
    visit(tree)
    return edges


GRAPH = {m: import_time_imports(m) for m in MODULES}


def test_every_module_has_a_level():
    missing = [m for m in MODULES if level_of(m) is None]
    assert not missing, f'give these modules a level in tests/test_layering.py: {missing}'


def test_no_import_goes_up_a_level():
    upward = [f'{m} (level {level_of(m)}) imports {t} (level {level_of(t)})'
              for m, targets in GRAPH.items() for t in sorted(targets)
              if t in MODULES and level_of(t) > level_of(m)]
    assert not upward, '\n'.join(upward)


def test_import_time_graph_has_no_cycle():
    # A module importing its own package's __init__ (Python runs it first anyway) is no cycle.
    def children(m):
        return [t for t in GRAPH[m] if t in MODULES and not m.startswith(t + '.')]

    state, stack, cycles = {}, [], []

    def walk(m):
        state[m] = 'open'
        stack.append(m)
        for t in children(m):
            if state.get(t) == 'open':
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                walk(t)
        stack.pop()
        state[m] = 'done'

    for m in MODULES:
        if m not in state:
            walk(m)
    assert not cycles, '\n'.join(' -> '.join(c) for c in cycles)


@pytest.mark.parametrize('low', ['caffelite.layers', 'caffelite.blob', 'caffelite.io',
                                 'caffelite.proto', 'caffelite.data'])
def test_low_packages_import_nothing_above_net(low):
    net_level = level_of('caffelite.net')
    offenders = [f'{m} imports {t}' for m, targets in GRAPH.items()
                 if m == low or m.startswith(low + '.')
                 for t in targets if t in MODULES and level_of(t) >= net_level]
    assert not offenders, '\n'.join(offenders)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walker itself: a layer module importing the solvers is reported."""
    fake = dict(GRAPH)
    fake['caffelite.layers.common'] = GRAPH['caffelite.layers.common'] | {'caffelite.solvers'}
    monkeypatch.setattr(__import__(__name__), 'GRAPH', fake)
    with pytest.raises(AssertionError, match='caffelite.layers.common .* imports caffelite.solvers'):
        test_no_import_goes_up_a_level()
