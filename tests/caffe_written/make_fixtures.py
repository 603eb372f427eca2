"""Writes this folder's fixtures: files as real BVLC Caffe 1.0 writes them.

Two steps, from this folder:

    python make_fixtures.py data                 # any Python with h5py: data/train.h5
    <real Caffe's python> make_fixtures.py snapshots

The second runs under real Caffe (pycaffe): for each solver type it trains net.prototxt for 3
iterations, snapshots (binary proto for every type, HDF5 for three of them), trains 3 more, and
saves the parameters and the loss after iteration 6, and the TEST-phase outputs of the
iteration-3 model, as snap/<Type>_after.npz. The snapshots at
iteration 3, those arrays and the solver prototxts are what tests/test_caffe_written.py reads.
The batch is the whole data set, so every iteration sees the same input in a fresh process too.
"""
import os
import sys

import numpy as np

SOLVERS = {   # type: (base_lr, extra fields, also snapshot as HDF5)
    'SGD': (0.01, 'momentum: 0.9', True),
    'Nesterov': (0.01, 'momentum: 0.9', False),
    'AdaGrad': (0.01, '', False),
    'RMSProp': (0.01, 'rms_decay: 0.98', False),
    'AdaDelta': (1.0, 'momentum: 0.95 delta: 1e-6', True),
    'Adam': (0.01, 'momentum: 0.9 momentum2: 0.999', True),
}


def write_data():
    import h5py
    rng = np.random.RandomState(0)
    os.makedirs('data', exist_ok=True)
    with h5py.File('data/train.h5', 'w') as f:
        f['data'] = rng.randn(8, 3, 8, 8).astype(np.float32)
        f['label'] = rng.randint(0, 4, size=8).astype(np.float32)
        f['words'] = rng.randint(0, 10, size=(8, 2)).astype(np.float32)     # T x N
        cont = np.ones((8, 2), np.float32)
        cont[0] = 0
        cont[5, 1] = 0                                   # stream 1 restarts mid-batch
        f['cont'] = cont
        f['target'] = rng.randn(8, 2, 3).astype(np.float32)
    with open('data/train.txt', 'w') as f:
        f.write('data/train.h5\n')


def write_snapshots():
    import caffe
    caffe.set_mode_cpu()
    os.makedirs('snap', exist_ok=True)
    for name, (lr, extra, hdf5) in SOLVERS.items():
        for fmt in ('BINARYPROTO', 'HDF5') if hdf5 else ('BINARYPROTO',):
            prefix = f'snap/{name}_{fmt}'
            with open(f'{prefix}_solver.prototxt', 'w') as f:
                f.write(f'net: "net.prototxt"\ntype: "{name}" base_lr: {lr} lr_policy: "step" '
                        f'gamma: 0.5 stepsize: 2 weight_decay: 0.0005 {extra}\nmax_iter: 6 '
                        f'display: 0 random_seed: 7 snapshot_prefix: "{prefix}" '
                        f'snapshot_format: {fmt}\n')
            solver = caffe.get_solver(f'{prefix}_solver.prototxt')
            solver.step(3)
            solver.snapshot()
            solver.step(3)
            arrays = {f'{layer}_{i}': blob.data for layer, blobs in solver.net.params.items()
                      for i, blob in enumerate(blobs)}
            arrays['loss'] = solver.net.blobs['loss'].data
            ext = '.h5' if fmt == 'HDF5' else ''
            test_net = caffe.Net('net.prototxt', f'{prefix}_iter_3.caffemodel{ext}', caffe.TEST)
            test_net.forward()
            for blob in ('ip', 'lstm', 'loss', 'seq_loss'):   # the iteration-3 model in TEST
                arrays[f'test_{blob}'] = test_net.blobs[blob].data
            np.savez(f'snap/{name}_after.npz', **arrays)
    os._exit(0)       # pycaffe 1.0 may abort while destroying a Solver


if __name__ == '__main__':
    {'data': write_data, 'snapshots': write_snapshots}[sys.argv[1]]()
