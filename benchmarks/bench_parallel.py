"""Data-parallel training on one machine: K processes x 1 thread against 1 process x K threads.

Each configuration trains the same global batch G per iteration for --iters iterations with
``python tests/mpi_harness.py --time`` (solver: SGD, momentum 0.9; everything an iteration
does is timed: data, forward, backward, the gradient allreduce, the update):

    1p x 1t   one process, one BLAS thread, batch G              (the baseline)
    1p x Kt   one process, K BLAS threads, batch G               (threads)
    Kp x 1t   mpiexec -n K, one BLAS thread each, batch G / K    (data-parallel over MPI)
    Kp x 1t, no overlap: the same, every bucket reduced after backward

Nets: LeNet (benchmarks/nets/lenet_train.prototxt; HDF5Data of random 28x28 images, dealt by
rank) and the LRCN captioning language model at COCO size (Embed 8801 -> 1000, LSTM 1000,
LSTM 1000, InnerProduct 8801 over T = 20 steps, softmax; 33.7 M parameters, 135 MB of
float32 gradients per step; DummyData inputs). It also times a bare MPI Allreduce of that
gradient size between the K processes (the machine's effective bandwidth).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_parallel.py \\
        [--workers 2] [--nets lenet,lstm] [--iters 6] [--warmup 2] [--lenet-batch 64] \\
        [--lstm-batch 32] [--modes 1x1,1xK,Kx1,Kx1-no-overlap]

Needs mpi4py and mpiexec (pip install -e .[mpi]). Thread counts are set through
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS in each subprocess.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LSTM_NET = '''name: "lrcn_language_model"
layer {{ name: "data" type: "DummyData" top: "input_sentence" top: "cont_sentence"
  top: "target_sentence"
  dummy_data_param {{ shape {{ dim: {T} dim: {N} }} shape {{ dim: {T} dim: {N} }}
    shape {{ dim: {T} dim: {N} }}
    data_filler {{ type: "constant" value: 7 }} data_filler {{ type: "constant" value: 1 }}
    data_filler {{ type: "constant" value: 11 }} }} }}
layer {{ name: "embedding" type: "Embed" bottom: "input_sentence" top: "embedded_input"
  embed_param {{ input_dim: {V} num_output: {H} bias_term: false
    weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }} }} }}
layer {{ name: "lstm1" type: "LSTM" bottom: "embedded_input" bottom: "cont_sentence"
  top: "lstm1" recurrent_param {{ num_output: {H}
    weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }}
    bias_filler {{ type: "constant" value: 0 }} }} }}
layer {{ name: "lstm2" type: "LSTM" bottom: "lstm1" bottom: "cont_sentence" top: "lstm2"
  recurrent_param {{ num_output: {H}
    weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }}
    bias_filler {{ type: "constant" value: 0 }} }} }}
layer {{ name: "predict" type: "InnerProduct" bottom: "lstm2" top: "predict"
  inner_product_param {{ num_output: {V} axis: 2
    weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }}
    bias_filler {{ type: "constant" value: 0 }} }} }}
layer {{ name: "cross_entropy_loss" type: "SoftmaxWithLoss" bottom: "predict"
  bottom: "target_sentence" top: "cross_entropy_loss" loss_param {{ ignore_label: -1 }}
  softmax_param {{ axis: 2 }} }}
'''

SOLVER = '''net: "{net}"
base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "fixed"
max_iter: {iters} display: 0 random_seed: 1
'''

ALLREDUCE_WORKER = '''
import sys, time, numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
buf = np.ones(int(float(sys.argv[1]) * 2 ** 20) // 4, np.float32)
times = []
for _ in range(int(sys.argv[2])):
    comm.Barrier(); t = time.perf_counter()
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    times.append(time.perf_counter() - t)
if comm.rank == 0:
    print('allreduce seconds: %.6f' % float(np.median(times[1:])))
'''


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--workers', type=int, default=2, help='K (processes or threads)')
    p.add_argument('--nets', default='lenet,lstm')
    p.add_argument('--iters', type=int, default=6, help='timed iterations')
    p.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
    p.add_argument('--lenet-batch', type=int, default=64, help='global batch (images)')
    p.add_argument('--lstm-batch', type=int, default=32, help='global batch (sequences)')
    p.add_argument('--lstm-steps', type=int, default=20)
    p.add_argument('--vocabulary', type=int, default=8801)
    p.add_argument('--hidden', type=int, default=1000)
    p.add_argument('--modes', default='1x1,1xK,Kx1,Kx1-no-overlap')
    p.add_argument('--scaling-only', type=float, metavar='STEP_MS', default=None,
                   help='only print the scaling estimate for this measured LSTM step time '
                        '(ms, one worker at --lstm-batch)')
    p.add_argument('--allreduce-mb', type=float, default=None,
                   help='MB for the bare Allreduce timing (default: the LSTM\'s gradients)')
    return p.parse_args()


def lenet_files(folder, batch, rows=2048):
    """LeNet with HDF5Data (random images, labels 0..9) instead of its Input layer."""
    import h5py
    rng = np.random.default_rng(0)
    with h5py.File(os.path.join(folder, 'mnist_like.h5'), 'w') as f:
        f['data'] = rng.random((rows, 1, 28, 28), np.float32)
        f['label'] = rng.integers(0, 10, rows).astype(np.float32)
    with open(os.path.join(folder, 'lenet_list.txt'), 'w') as f:
        f.write(os.path.join(folder, 'mnist_like.h5') + '\n')
    with open(os.path.join(REPO, 'benchmarks', 'nets', 'lenet_train.prototxt')) as f:
        text = f.read()
    data = (f'layer {{ name: "data" type: "HDF5Data" top: "data" top: "label" '
            f'hdf5_data_param {{ source: "lenet_list.txt" batch_size: {batch} }} }}')
    text = re.sub(r'layer \{ name: "data" type: "Input".*?\} \} \}', data, text, count=1,
                  flags=re.S)
    assert 'HDF5Data' in text, 'could not replace the Input layer of lenet_train.prototxt'
    return text


def write_solver(folder, name, net_text, iters):
    with open(os.path.join(folder, f'{name}.prototxt'), 'w') as f:
        f.write(net_text)
    path = os.path.join(folder, f'{name}_solver.prototxt')
    with open(path, 'w') as f:
        f.write(SOLVER.format(net=f'{name}.prototxt', iters=iters))
    return path


def environment(threads):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        env[var] = str(threads)
    return env


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    found = here if os.path.exists(here) else shutil.which('mpiexec')
    if not found:
        sys.exit('no mpiexec: pip install -e .[mpi]')
    return found


def run_mode(folder, solver, processes, threads, warmup, extra=()):
    command = [sys.executable, os.path.join(REPO, 'tests', 'mpi_harness.py'), '--solver', solver,
               '--time', '--warmup', str(warmup), *extra]
    if processes > 1:
        command = [mpiexec(), '-n', str(processes)] + command
    done = subprocess.run(command, cwd=folder, env=environment(threads), capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        sys.exit(f'{" ".join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}')
    seconds = float(re.search(r'seconds per iteration: ([0-9.]+)', done.stdout).group(1))
    reduction = re.search(r'per iteration (.*)', done.stdout)
    return seconds, reduction.group(1) if reduction else ''


def time_allreduce(folder, workers, megabytes, repeats=6):
    script = os.path.join(folder, 'allreduce_worker.py')
    with open(script, 'w') as f:
        f.write(ALLREDUCE_WORKER)
    done = subprocess.run([mpiexec(), '-n', str(workers), sys.executable, script,
                           str(megabytes), str(repeats)], env=environment(1),
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        sys.exit(f'allreduce timing failed:\n{done.stderr[-2000:]}')
    return float(re.search(r'allreduce seconds: ([0-9.]+)', done.stdout).group(1))


# The ring-allreduce cost model: t = 2(K-1)/K * bytes / bandwidth + 2(K-1) * latency per
# bucket. Links: one node holds 8 workers (10 GB/s, 1 us between them); beyond 8, the ring
# also crosses 100 Gb/s InfiniBand (12.5 GB/s, 5 us per message through the MPI stack), and
# the slowest link of the ring (10 GB/s) sets its bandwidth.
LINKS = {8: (10e9, 1e-6), 64: (10e9, 5e-6), 512: (10e9, 5e-6)}


def ring_allreduce_seconds(workers, nbytes, buckets, bandwidth, latency):
    return 2 * (workers - 1) / workers * nbytes / bandwidth + \
        buckets * 2 * (workers - 1) * latency


def scaling_table(step_seconds, batch, nbytes, buckets, backward_share=2 / 3):
    """Rows (K, comm ms, step ms without overlap, efficiency, step ms with the reduction
    hidden behind backward, efficiency, sequences/s) for weak scaling: every worker keeps
    ``batch`` sequences and ``step_seconds`` of compute. With overlap, the reduction runs
    behind backward (``backward_share`` of the step) except the last bucket's."""
    rows = []
    for workers, (bandwidth, latency) in LINKS.items():
        comm = ring_allreduce_seconds(workers, nbytes, buckets, bandwidth, latency)
        serial = step_seconds + comm
        tail = comm / buckets                          # the bucket issued last
        hidden = step_seconds + max(tail, comm - backward_share * step_seconds)
        rows.append((workers, comm * 1e3, serial * 1e3, step_seconds / serial,
                     hidden * 1e3, step_seconds / hidden, workers * batch / hidden))
    return rows


def print_scaling(step_seconds, batch, nbytes, buckets, label):
    print(f'\nscaling estimate, {label}: {step_seconds * 1e3:.0f} ms compute per step for '
          f'{batch} sequences per worker, {nbytes / 1e6:.1f} MB of gradients in {buckets} '
          f'buckets')
    print('     K   allreduce ms   step ms (eff.)   overlapped step ms (eff.)   sequences/s')
    for k, comm, serial, eff, hidden, eff2, rate in scaling_table(step_seconds, batch, nbytes,
                                                                    buckets):
        print(f'  {k:4d}   {comm:12.1f}   {serial:7.1f} ({eff:4.0%})   {hidden:13.1f} '
              f'({eff2:4.0%})   {rate:14.0f}')


def lstm_blob_sizes(vocabulary, hidden):
    """Parameter blob sizes of LSTM_NET in backward (reduction) order."""
    lstm = [4 * hidden * hidden, 4 * hidden, 4 * hidden * hidden]      # W_xc, b_c, W_hc
    return [vocabulary * hidden, vocabulary] + lstm + lstm + [vocabulary * hidden]


def lstm_parameters(vocabulary, hidden):
    return sum(lstm_blob_sizes(vocabulary, hidden))


def lstm_buckets(vocabulary, hidden, bucket_mb=25.0):
    """How many buckets caffelite.parallel.mpi.make_buckets makes of LSTM_NET's gradients."""
    from caffelite.blob import Blob
    from caffelite.parallel.mpi import make_buckets
    blobs = [Blob((n,)) for n in lstm_blob_sizes(vocabulary, hidden)]
    return len(make_buckets(blobs, int(bucket_mb * 2 ** 20)))


def main():
    args = parse_args()
    k = args.workers
    grad_bytes = lstm_parameters(args.vocabulary, args.hidden) * 4
    buckets = lstm_buckets(args.vocabulary, args.hidden)
    label = 'LRCN captioning language model'
    if args.scaling_only:
        print_scaling(args.scaling_only / 1e3, args.lstm_batch, grad_bytes, buckets, label)
        return
    modes = [m.replace('K', str(k)) for m in args.modes.split(',')]
    for var in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'):
        if os.environ.get(var):
            print(f'warning: {var}={os.environ[var]} is set (see benchmarks/README.md)')
    print(f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; '
          f'numpy {np.__version__}; {args.iters} timed iterations after {args.warmup}')
    lstm_step = None
    with tempfile.TemporaryDirectory() as folder:
        for net in args.nets.split(','):
            batch = args.lenet_batch if net == 'lenet' else args.lstm_batch
            if batch % k:
                sys.exit(f'--{net}-batch {batch} is not a multiple of --workers {k}')
            unit = 'images' if net == 'lenet' else 'sequences'
            print(f'\n{net}: global batch {batch} {unit}')
            for mode in modes:
                processes, threads = (int(x) for x in mode.split('-')[0].split('x'))
                per_worker = batch // processes
                if net == 'lenet':
                    text = lenet_files(folder, per_worker)
                else:
                    text = LSTM_NET.format(T=args.lstm_steps, N=per_worker, V=args.vocabulary,
                                           H=args.hidden)
                name = f'{net}_{mode}'
                solver = write_solver(folder, name, text, args.iters + args.warmup + 1)
                extra = ['--no-overlap'] if mode.endswith('no-overlap') else []
                start = time.perf_counter()
                seconds, reduction = run_mode(folder, solver, processes, threads, args.warmup,
                                              extra)
                if net == 'lstm' and mode == '1x1':
                    lstm_step = seconds
                print(f'  {mode:16s} {processes}p x {threads}t, batch {per_worker:3d}/worker: '
                      f'{seconds * 1e3:9.1f} ms/iter  {batch / seconds:8.1f} {unit}/s'
                      f'   [{time.perf_counter() - start:.0f} s]'
                      + (f'\n{"":20s}{reduction}' if reduction else ''))
        megabytes = args.allreduce_mb or grad_bytes / 2 ** 20
        seconds = time_allreduce(folder, k, megabytes)
        moved = 2 * (k - 1) / k * megabytes * 2 ** 20
        print(f'\nbare MPI Allreduce of {megabytes:.1f} MiB float32 over {k} processes: '
              f'{seconds * 1e3:.1f} ms (ring-model bandwidth 2(K-1)/K x bytes / time = '
              f'{moved / seconds / 1e9:.2f} GB/s)')
    if lstm_step:
        print_scaling(lstm_step, args.lstm_batch, grad_bytes, buckets,
                      f'{label}, measured above (1p x 1t)')


if __name__ == '__main__':
    main()
