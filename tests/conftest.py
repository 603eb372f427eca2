"""pytest set-up shared by every test file.

- The markers ``mpi``, ``slow`` and ``gpu`` are registered here (``--strict-markers`` passes).
  They select, they do not skip: ``make test`` runs everything; ``pytest -m "not slow"`` or
  ``-m "not mpi and not gpu"`` leaves those tests out.
- The layer-test helpers (a layer from its prototxt text, Blobs from arrays, a layer set up and
  run on them, a data layer set up on its tops) live in ``layer_testing.py`` beside this file,
  as plain functions: the tests call them from module-level helpers and parametrized bodies,
  where a fixture cannot be called. This file puts that folder on ``sys.path`` so that
  ``import layer_testing`` works under every pytest import mode.
"""
import os
import sys

MARKERS = {
    'mpi': 'starts several workers under mpiexec (needs mpi4py and an MPI runtime)',
    'slow': 'takes seconds: a full reference net or a long training run',
    'gpu': 'needs CuPy and an NVIDIA GPU',
    'fuzz': 'the seeded bad-input fuzzer (test_fuzz.py), well under a minute',
}

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_configure(config):
    for name, meaning in MARKERS.items():
        config.addinivalue_line('markers', f'{name}: {meaning}')
