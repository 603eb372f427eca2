"""LSTM forward + backward: caffelite (NumPy) beside PyTorch's nn.LSTM (CPU), at LRCN sizes.

One iteration is what training costs the layer: forward over T steps, then backward of the
sum of the outputs, with the gradients of x and of every parameter (caffelite: top diff = 1,
backward to x and the param diffs; torch: zero_grad, y.sum().backward() with x.requires_grad).
Both run float32, in the same process, with the same thread count, iterations interleaved
(caffelite, torch, caffelite, ...) so that a noisy machine hits both alike; each number is the
median of --runs timed iterations after --warmup untimed ones.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lstm.py \
        [--threads 1] [--runs 7] [--warmup 2] [--sizes small,activity,captioning] \
        [--profile] [--clock wall|cpu]

The thread limits must be in the environment before NumPy loads OpenBLAS, so this script sets
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS from --threads and then imports NumPy.
It prints the kernel family OpenBLAS chose ("OpenBLAS core") and warns when OPENBLAS_CORETYPE
or OPENBLAS_L2_SIZE are set: forcing the AVX2 (Haswell) kernels on an AVX-512 CPU roughly halves
caffelite's GEMM speed (see benchmarks/README.md, "The environment").
"""
import argparse
import os
import sys

SIZES = {   # name: (T, N, D, H)
    'small': (10, 16, 128, 128),
    'activity': (16, 24, 4096, 256),      # LRCN activity recognition: fc6 features -> LSTM 256
    'captioning': (20, 100, 1000, 1000),  # LRCN captioning: embedded words -> LSTM 1000
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=1, help='threads for NumPy BLAS and torch')
    p.add_argument('--runs', type=int, default=7, help='timed iterations (median reported)')
    p.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
    p.add_argument('--sizes', default=','.join(SIZES), help='comma list of ' + ', '.join(SIZES))
    p.add_argument('--profile', action='store_true',
                   help='also time caffelite forward and backward separately')
    p.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                   help='wall-clock time, or process CPU time (steadier on a shared machine; '
                        'counts every thread, so compare like with like)')
    return p.parse_args()


ARGS = parse_args()
for _var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_var] = str(ARGS.threads)

import ctypes  # noqa: E402
import glob  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from google.protobuf import text_format  # noqa: E402

from caffelite.blob import Blob  # noqa: E402
from caffelite.layers import create_layer  # noqa: E402
from caffelite.proto import caffelite_pb2 as pb  # noqa: E402


def openblas_core():
    """The kernel family NumPy's OpenBLAS chose (best effort; '?' if it cannot be asked)."""
    libdir = os.path.join(os.path.dirname(np.__file__), '..', 'numpy.libs')
    for path in glob.glob(os.path.join(libdir, '*openblas*')):
        lib = ctypes.CDLL(path)
        for name in ('scipy_openblas_get_corename64_', 'scipy_openblas_get_corename',
                     'openblas_get_corename64_', 'openblas_get_corename'):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return '?'


class CaffeliteLSTM:
    def __init__(self, steps, streams, dim, hidden, rng):
        text = (f'name: "lstm" type: "LSTM" recurrent_param {{ num_output: {hidden} '
                f'weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }} }}')
        self.layer = create_layer(text_format.Parse(text, pb.LayerParameter()), pb.TRAIN,
                                  dtype=np.float32)
        self.x, self.cont, self.top = Blob((steps, streams, dim)), Blob((steps, streams)), Blob()
        self.x.data[...] = rng.standard_normal(self.x.shape)
        self.cont.data[...] = 1
        self.cont.data[0] = 0                 # every stream starts a sequence at t = 0
        self.bottom, self.tops = [self.x, self.cont], [self.top]
        self.layer.setup(self.bottom, self.tops)
        self.layer.reshape(self.bottom, self.tops)
        self.top.diff[...] = 1                # gradient of sum(h)

    def forward(self):
        self.layer.forward(self.bottom, self.tops)

    def backward(self):
        self.layer.backward(self.tops, [True, False], self.bottom)

    def step(self):
        self.forward()
        self.backward()


class TorchLSTM:
    def __init__(self, steps, streams, dim, hidden, rng):
        import torch
        self.torch = torch
        self.lstm = torch.nn.LSTM(dim, hidden)
        self.x = torch.from_numpy(rng.standard_normal((steps, streams, dim)).astype(np.float32))
        self.x.requires_grad_(True)

    def step(self):
        self.lstm.zero_grad()
        self.x.grad = None
        y, _ = self.lstm(self.x)
        y.sum().backward()


def timed(fn):
    clock = time.process_time if ARGS.clock == 'cpu' else time.perf_counter
    start = clock()
    fn()
    return (clock() - start) * 1e3


def main():
    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(ARGS.threads)
    rng = np.random.default_rng(0)
    for var in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'):
        if os.environ.get(var):
            print(f'warning: {var}={os.environ[var]} is set; OpenBLAS does not tune itself to '
                  f'this CPU (see benchmarks/README.md)')
    print(f'threads {ARGS.threads}, {ARGS.clock} clock, OpenBLAS core {openblas_core()}, '
          f'numpy {np.__version__}, torch {torch.__version__ if torch else "absent"}; '
          f'median of {ARGS.runs} after {ARGS.warmup} warm-up, float32, forward + backward')
    print(f'{"size":<11} {"T":>3} {"N":>4} {"D":>5} {"H":>5} {"caffelite ms":>13} '
          f'{"torch ms":>9} {"ratio":>6}')
    for name in ARGS.sizes.split(','):
        steps, streams, dim, hidden = SIZES[name]
        ours = CaffeliteLSTM(steps, streams, dim, hidden, rng)
        theirs = TorchLSTM(steps, streams, dim, hidden, rng) if torch else None
        for _ in range(ARGS.warmup):
            ours.step()
            if theirs:
                theirs.step()
        t_ours, t_theirs = [], []
        for _ in range(ARGS.runs):
            t_ours.append(timed(ours.step))
            if theirs:
                t_theirs.append(timed(theirs.step))
        a = statistics.median(t_ours)
        b = statistics.median(t_theirs) if theirs else float('nan')
        print(f'{name:<11} {steps:>3} {streams:>4} {dim:>5} {hidden:>5} {a:>13.2f} '
              f'{b:>9.2f} {a / b:>6.2f}', flush=True)
        if ARGS.profile:
            fwd, bwd = [], []
            for _ in range(ARGS.runs):
                fwd.append(timed(ours.forward))
                bwd.append(timed(ours.backward))
            print(f'{"":<11} caffelite forward {statistics.median(fwd):.2f} ms, '
                  f'backward {statistics.median(bwd):.2f} ms')


if __name__ == '__main__':
    main()
