"""pytest set-up shared by every test file.

- The markers ``mpi``, ``slow`` and ``gpu`` are registered here (``--strict-markers`` passes).
  They select, they do not skip: ``make test`` runs everything; ``pytest -m "not slow"`` or
  ``-m "not mpi and not gpu"`` leaves those tests out.
- The layer-test helpers (a layer from its prototxt text, Blobs from arrays, a layer set up and
  run on them, a data layer set up on its tops, HDF5 data files) live in ``layer_testing.py``
  beside this file, as plain functions: the tests call them from module-level helpers and
  parametrized bodies, where a fixture cannot be called. The fixture ``hdf5_file`` below
  writes HDF5 data files into the test's tmp_path.
- This file puts ``tests/`` (for ``import layer_testing``) and the repository root (for the
  scripts under ``tools/``) on ``sys.path``, so the tests run the same under ``pytest`` and
  ``python -m pytest``.
- The ``array_backend`` fixture runs a test once per array backend: ``numpy`` (CPU mode),
  ``fakegpu`` (GPU mode on caffelite.fakegpu: NumPy under CuPy's host/device rules, on any
  machine) and ``cupy`` (GPU mode on a real GPU; marked ``gpu``, skipped without CuPy or a
  device). A layer test module opts in with
  ``pytestmark = pytest.mark.usefixtures('array_backend')``: its blobs are written and read
  through ``blob.data`` / ``blob.diff`` (host arrays), so the same assertions and tolerances
  hold on every backend. ``CAFFELITE_FAKE_GPU=1 python -m pytest tests`` runs every other
  test in GPU mode on the fake device as well.
"""
import os
import sys

import pytest

MARKERS = {
    'mpi': 'starts several workers under mpiexec (needs mpi4py and an MPI runtime)',
    'slow': 'takes seconds: a full reference net or a long training run',
    'gpu': 'needs CuPy and an NVIDIA GPU',
    'fuzz': 'the seeded bad-input fuzzer (test_fuzz.py), well under a minute',
}

HERE = os.path.dirname(os.path.abspath(__file__))
for folder in (HERE, os.path.dirname(HERE)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

import layer_testing  # noqa: E402  (needs HERE on sys.path)

from backend_testing import FAKE_GPU_VARIABLE, use_backend  # noqa: E402


def pytest_configure(config):
    for name, meaning in MARKERS.items():
        config.addinivalue_line('markers', f'{name}: {meaning}')


@pytest.fixture
def hdf5_file(tmp_path):
    """``hdf5_file(name, **datasets)``: writes tmp_path/name with those datasets, returns its path."""
    return lambda name, **datasets: layer_testing.write_hdf5(tmp_path / name, **datasets)


@pytest.fixture(params=['numpy', 'fakegpu', pytest.param('cupy', marks=pytest.mark.gpu)])
def array_backend(request):
    """The backend a test runs on, set as the mode for its duration; yields its name."""
    with use_backend(request.param) as name:
        yield name


@pytest.fixture(autouse=True)
def _gpu_mode_from_the_environment(request):
    """With CAFFELITE_FAKE_GPU=1 set, every test that does not choose its backend runs in GPU
    mode on the fake device (``CAFFELITE_FAKE_GPU=1 python -m pytest tests``)."""
    if 'array_backend' in request.fixturenames or \
            os.environ.get(FAKE_GPU_VARIABLE, '') in ('', '0'):
        yield
        return
    with use_backend('fakegpu'):
        yield
