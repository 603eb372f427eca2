"""Forward + backward time of LeNet and CaffeNet: caffelite (NumPy) beside PyTorch (CPU).

Both frameworks run the same nets (benchmarks/nets/*.prototxt for caffelite, the same layers
written with torch.nn) on the same random inputs, with the same number of threads; each
number is the median of --runs timed iterations after --warmup untimed ones. One iteration is
what a training step costs before the update: clear the parameter gradients, forward,
backward (no gradient for the input data, as in Caffe).

    python benchmarks/bench_convnets.py [--batch 16] [--lenet-batch 64] [--runs 5]
                                        [--threads N] [--profile] [--nets lenet,caffenet]
                                        [--clock wall|cpu] [--no-torch]

--profile adds caffelite's per-layer forward/backward times (Caffe's `caffe time`).
See benchmarks/README.md for the environment to run it in.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import caffelite  # noqa: E402

NETS = {
    'lenet': dict(prototxt='lenet_train.prototxt', shape=(1, 28, 28), classes=10),
    'caffenet': dict(prototxt='caffenet_train.prototxt', shape=(3, 227, 227), classes=1000),
}


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------
def numpy_blas_threads():
    """(threads NumPy's BLAS uses, how that was found)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            if os.environ.get(var):
                return int(os.environ[var]), f'${var} (threadpoolctl not installed)'
        return len(os.sched_getaffinity(0)), 'CPU count (threadpoolctl not installed)'
    blas = [i for i in threadpool_info() if i.get('user_api') == 'blas']
    return (max(i['num_threads'] for i in blas), 'threadpoolctl') if blas else \
        (len(os.sched_getaffinity(0)), 'CPU count (no BLAS seen by threadpoolctl)')


def limit_numpy_threads(n):
    """Ask NumPy's BLAS for ``n`` threads; returns a context object or None."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n, user_api='blas')


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def time_interleaved(steps, warmup, runs, clock=time.perf_counter):
    """Run the steps in turn (a, b, a, b, ...) so that both see the same machine load;
    returns per step its list of times in ms (``clock``: wall or process CPU time)."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(runs):
        for step, record in zip(steps, times):
            start = clock()
            step()
            record.append((clock() - start) * 1e3)
    return times


def inputs(batch, shape, classes, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((batch,) + shape).astype(np.float32)
    label = rng.integers(0, classes, size=batch).astype(np.float32)
    return data, label


def caffelite_net(name, batch):
    spec = NETS[name]
    caffelite.set_random_seed(1)
    net = caffelite.Net(os.path.join(HERE, 'nets', spec['prototxt']), caffelite.TRAIN)
    data, label = inputs(batch, spec['shape'], spec['classes'])
    net.blobs['data'].reshape(data.shape)
    net.blobs['label'].reshape(label.shape)
    net.blobs['data'].data[...] = data
    net.blobs['label'].data[...] = label
    net.reshape()
    return net


def caffelite_step(net):
    def step():
        net.clear_param_diffs()
        net.forward_backward()
    return step


def profile_layers(net, warmup, runs):
    """Median forward and backward ms per layer (Caffe's `caffe time` table)."""
    fwd = {i: [] for i in range(len(net.layers))}
    bwd = {i: [] for i in range(len(net.layers))}
    for it in range(warmup + runs):
        net.clear_param_diffs()
        for i, layer in enumerate(net.layers):
            b, t = net.bottom_vecs[i], net.top_vecs[i]
            start = time.perf_counter()
            layer.reshape(b, t)
            layer.forward(b, t)
            if it >= warmup:
                fwd[i].append((time.perf_counter() - start) * 1e3)
        net._seed_loss_diffs()
        for i in range(len(net.layers) - 1, -1, -1):
            start = time.perf_counter()
            if net.layer_need_backward[i]:
                net.layers[i].backward(net.top_vecs[i], net.bottom_need_backward[i],
                                       net.bottom_vecs[i])
            if it >= warmup:
                bwd[i].append((time.perf_counter() - start) * 1e3)
    print(f'    {"layer":<12}{"type":<16}{"forward ms":>12}{"backward ms":>13}')
    for i, layer in enumerate(net.layers):
        f, b = statistics.median(fwd[i]), statistics.median(bwd[i])
        if f + b >= 0.05:
            print(f'    {layer.name:<12}{layer.type:<16}{f:>12.2f}{b:>13.2f}')


# --------------------------------------------------------------------------------------------
# The same nets in PyTorch
# --------------------------------------------------------------------------------------------
def torch_model(name, nn):
    if name == 'lenet':
        return nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(inplace=True), nn.Linear(500, 10))
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 1000))


def torch_step(torch, name, batch):
    spec = NETS[name]
    torch.manual_seed(1)
    model = torch_model(name, torch.nn).train()
    data, label = inputs(batch, spec['shape'], spec['classes'])
    x, y = torch.from_numpy(data), torch.from_numpy(label).long()
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
    return step


# --------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--batch', type=int, default=16, help='CaffeNet batch (default 16)')
    ap.add_argument('--lenet-batch', type=int, default=64, help='LeNet batch (default 64)')
    ap.add_argument('--runs', type=int, default=5, help='timed iterations (median reported)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
    ap.add_argument('--threads', type=int, default=None,
                    help='threads for both (default: what NumPy\'s BLAS uses)')
    ap.add_argument('--nets', default='lenet,caffenet')
    ap.add_argument('--profile', action='store_true', help='per-layer caffelite times')
    ap.add_argument('--no-torch', action='store_true', help='time caffelite only')
    ap.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                    help='wall time, or process CPU time (all threads summed: steadier on a '
                         'shared machine, comparable across frameworks only with 1 thread)')
    args = ap.parse_args(argv)

    threads, how = numpy_blas_threads()
    limiter = None
    if args.threads:
        limiter = limit_numpy_threads(args.threads)
        if limiter is None and args.threads != threads:
            print(f'note: threadpoolctl is not installed, NumPy keeps {threads} BLAS threads; '
                  f'set OPENBLAS_NUM_THREADS={args.threads} to change it')
        else:
            threads, how = args.threads, '--threads'
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print('PyTorch is not installed: timing caffelite only')
    if torch is not None:
        torch.set_num_threads(threads)
    print(f'numpy {np.__version__}, BLAS threads {threads} ({how})'
          + (f'; torch {torch.__version__}, {torch.get_num_threads()} threads' if torch else ''))
    print(f'median of {args.runs} runs after {args.warmup} warm-up (caffelite and torch '
          f'interleaved); forward + backward, float32; {args.clock} clock')

    rows = []
    for name in [n.strip() for n in args.nets.split(',') if n.strip()]:
        batch = args.lenet_batch if name == 'lenet' else args.batch
        net = caffelite_net(name, batch)
        steps = [caffelite_step(net)]
        if torch is not None:
            steps.append(torch_step(torch, name, batch))
        clock = time.process_time if args.clock == 'cpu' else time.perf_counter
        times = time_interleaved(steps, args.warmup, args.runs, clock)
        ours = statistics.median(times[0])
        line = f'{name:<9} batch {batch:<4} caffelite {ours:8.1f} ms (min {min(times[0]):.1f})'
        theirs = None
        if torch is not None:
            theirs = statistics.median(times[1])
            # Ratio of each interleaved pair, then the median: robust to drifting load.
            pair = statistics.median(a / b for a, b in zip(*times))
            line += (f'   torch {theirs:8.1f} ms (min {min(times[1]):.1f})'
                     f'   caffelite/torch {pair:5.2f}x (of minima {min(times[0]) / min(times[1]):.2f}x)')
        print(line, flush=True)
        rows.append((name, batch, ours, theirs))
        if args.profile:
            profile_layers(net, 1, max(3, args.runs // 2))
    if limiter is not None:
        limiter.restore_original_limits()
    return rows


if __name__ == '__main__':
    main()
