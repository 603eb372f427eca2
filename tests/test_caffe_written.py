"""Files written by real BVLC Caffe (tests/caffe_written/, made by its make_fixtures.py under
pycaffe): caffemodels and solverstates of every solver type, in binary proto and HDF5.

caffelite restores each solverstate, trains the 3 iterations Caffe trained after it, and must
reach Caffe's parameters and loss; a caffemodel loaded into a TEST net must give Caffe's TEST
outputs (BatchNorm from its stored statistics, the LSTM's carried state reset, Embed, PReLU,
Deconvolution). The net's BatchNorm statistics are compared only in TEST outputs: the Caffe that
wrote the files (BVLC master after 1.0) no longer pins their lr_mult to 0, so its solver shrinks
them by weight decay where Caffe 1.0 and caffelite leave them to the forward pass.
"""
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import caffelite as caffe
from caffelite.upgrade import UpgradeWarning

pytest.importorskip('h5py', reason='the fixture net reads its batch through HDF5Data')

FIXTURES = Path(__file__).resolve().parent / 'caffe_written'
ROOT = Path(__file__).resolve().parents[1]
CASES = [('SGD', 'BINARYPROTO'), ('SGD', 'HDF5'), ('Nesterov', 'BINARYPROTO'),
         ('AdaGrad', 'BINARYPROTO'), ('RMSProp', 'BINARYPROTO'), ('AdaDelta', 'BINARYPROTO'),
         ('AdaDelta', 'HDF5'), ('Adam', 'BINARYPROTO'), ('Adam', 'HDF5')]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A copy of the fixtures as the working directory (Caffe's paths are relative to it)."""
    work = tmp_path / 'caffe_written'
    shutil.copytree(FIXTURES, work, ignore=shutil.ignore_patterns('*.py'))
    monkeypatch.chdir(work)
    return work


def _files(name, fmt):
    ext = '.h5' if fmt == 'HDF5' else ''
    prefix = f'snap/{name}_{fmt}'
    return (f'{prefix}_solver.prototxt', f'{prefix}_iter_3.caffemodel{ext}',
            f'{prefix}_iter_3.solverstate{ext}', np.load(f'snap/{name}_after.npz'))


def _assert_learned_params_match(params, caffe_after):
    for layer, blobs in params.items():
        if layer == 'bn':
            continue
        for i, blob in enumerate(blobs):
            np.testing.assert_allclose(blob.data, caffe_after[f'{layer}_{i}'], rtol=1e-4,
                                       atol=1e-6, err_msg=f'{layer} param {i}')


@pytest.mark.parametrize('name,fmt', CASES)
def test_restored_solver_continues_as_caffe(folder, name, fmt):
    solver_file, _, state, caffe_after = _files(name, fmt)
    solver = caffe.get_solver(solver_file)
    assert type(solver).__name__ == f'{name}Solver'
    solver.restore(state)
    assert solver.iter == 3
    solver.step(3)
    assert solver.iter == 6
    _assert_learned_params_match(solver.net.params, caffe_after)
    np.testing.assert_allclose(solver.net.blobs['loss'].data, caffe_after['loss'], rtol=1e-5)


@pytest.mark.parametrize('name,fmt', [('SGD', 'BINARYPROTO'), ('Adam', 'HDF5'),
                                      ('RMSProp', 'BINARYPROTO')])
def test_caffemodel_in_a_test_net_gives_caffes_outputs(folder, name, fmt):
    _, model, _, caffe_after = _files(name, fmt)
    net = caffe.Net('net.prototxt', model, caffe.TEST)
    assert [b.data.shape for b in net.params['lstm']] == [(12, 5), (12,), (12, 3)]
    net.forward()
    for blob in ('ip', 'lstm', 'loss', 'seq_loss'):
        np.testing.assert_allclose(net.blobs[blob].data, caffe_after[f'test_{blob}'],
                                   rtol=1e-4, atol=1e-6, err_msg=blob)


@pytest.mark.parametrize('name,fmt', [('Nesterov', 'BINARYPROTO'), ('AdaDelta', 'HDF5')])
def test_cli_resumes_from_a_caffe_solverstate(folder, name, fmt):
    """``caffelite train --snapshot`` on Caffe's state runs to max_iter and snapshots there;
    that snapshot holds Caffe's parameters after iteration 6."""
    solver_file, _, state, caffe_after = _files(name, fmt)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    run = subprocess.run([sys.executable, '-m', 'caffelite', 'train', '--solver', solver_file,
                          '--snapshot', state], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    assert run.returncode == 0, run.stdout
    assert 'restored iteration 3' in run.stdout
    ext = '.h5' if fmt == 'HDF5' else ''
    with warnings.catch_warnings():
        warnings.simplefilter('error', UpgradeWarning)   # its BatchNorm specs need no upgrade
        net = caffe.Net('net.prototxt', f'snap/{name}_{fmt}_iter_6.caffemodel{ext}', caffe.TEST)
    _assert_learned_params_match(net.params, caffe_after)
