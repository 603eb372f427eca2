"""caffelite on the GPU (CuPy) beside PyTorch CUDA: LeNet, CaffeNet, the LSTM at both LRCN
sizes and the main job's LRCN training step, in one run.

    python benchmarks/bench_gpu.py [--device cupy|fakegpu] [--benches lenet,caffenet,...]
                                   [--runs 5] [--warmup 2] [--caffenet-batch 256]
                                   [--lenet-batch 64] [--no-torch] [--dry-run] [--json F]

One iteration: LeNet / CaffeNet (benchmarks/nets/, the layers of bench_convnets.py): clear
the parameter gradients, forward, backward; LSTM (T x N x D -> H, bench_lstm.py's sizes):
forward over T steps and backward of sum(h); LRCN: one solver step of
prototxt/lrcn_solver.prototxt (data layers, forward, backward, Adam, clipping; the data must
be prepared first: python tools/prepare_lrcn_data.py), against the same model in PyTorch
(conv stack, Embed, LSTM 128, LSTM 128 with the image feature as input at every step,
Linear 37, cross-entropy ignoring -1, Adam, clipping) on random tensors already on the GPU.
Both frameworks run float32 in this process, iterations interleaved, each followed by a device
synchronize; figures are medians of --runs iterations after --warmup untimed ones.
``--device fakegpu`` runs caffelite on caffelite.fakegpu (and PyTorch on the CPU): a check of
the plumbing, not of speed; ``--dry-run`` shrinks every size and runs one iteration.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from caffelite import backend  # noqa: E402
from bench_convnets import NETS, caffelite_net, inputs, time_interleaved, torch_model  # noqa: E402

LSTM_SIZES = {   # name: (T, N, D, H), as bench_lstm.py
    'lstm-activity': (16, 24, 4096, 256),
    'lstm-captioning': (20, 100, 1000, 1000),
}
BENCHES = ('lenet', 'caffenet', 'lstm-activity', 'lstm-captioning', 'lrcn')
LRCN_SOLVER = os.path.join(REPO, 'prototxt', 'lrcn_solver.prototxt')


def synchronize():
    """Wait for the caffelite device (no-op on the CPU)."""
    if backend.mode() == 'gpu':
        backend.xp().cuda.Device().synchronize()


def synced(step, sync):
    def run():
        step()
        sync()
    return run


# -- caffelite ------------------------------------------------------------------------------------
def caffelite_convnet(name, batch):
    net = caffelite_net(name, batch)

    def step():
        net.clear_param_diffs()
        net.forward_backward()
    return step


def caffelite_lstm(steps, streams, dim, hidden):
    from caffelite.blob import Blob
    from caffelite.layers import create_layer
    from caffelite.proto import caffelite_pb2 as pb
    from caffelite.prototxt import parse_prototxt_text
    layer = create_layer(parse_prototxt_text(
        f'name: "lstm" type: "LSTM" recurrent_param {{ num_output: {hidden} '
        f'weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }} }}', pb.LayerParameter()),
        pb.TRAIN, dtype=np.float32)
    x, cont, top = Blob((steps, streams, dim)), Blob((steps, streams)), Blob()
    x.data[...] = np.random.default_rng(0).standard_normal(x.shape)
    cont.data[...] = 1
    cont.data[0] = 0
    layer.set_up([x, cont], [top])
    top.diff[...] = 1

    def step():
        for p in layer.blobs:
            p.xdiff[...] = 0
        layer.forward([x, cont], [top])
        layer.backward([top], [True, False], [x, cont])
    return step


def caffelite_lrcn():
    """One step of the main job's solver; runs from the repository root (the net's data
    sources are relative to it)."""
    from caffelite.solver import get_solver
    from caffelite.solvers.params import read_solver_param
    param = read_solver_param(LRCN_SOLVER)
    param.ClearField('test_iter')     # no test net: no test passes inside the timed steps
    param.ClearField('test_state')
    param.display = 0
    param.snapshot_after_train = False
    os.chdir(REPO)
    solver = get_solver(param, solver_path=LRCN_SOLVER)
    solver.step(1)
    return lambda: solver.step(1)


# -- PyTorch --------------------------------------------------------------------------------------
def torch_convnet(torch, device, name, batch):
    spec = NETS[name]
    torch.manual_seed(1)
    model = torch_model(name, torch.nn).to(device).train()
    data, label = inputs(batch, spec['shape'], spec['classes'])
    x, y = torch.from_numpy(data).to(device), torch.from_numpy(label).long().to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
    return step


def torch_lstm(torch, device, steps, streams, dim, hidden):
    lstm = torch.nn.LSTM(dim, hidden).to(device)
    x = torch.randn(steps, streams, dim, device=device, requires_grad=True)

    def step():
        lstm.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = lstm(x)
        y.sum().backward()
    return step


def torch_lrcn(torch, device, steps=20, streams=50, vocab=37):
    """prototxt/lrcn.prototxt's model in PyTorch (LSTM2's static image input is a second input
    concatenated at every step: the same W_xc_static x_static term)."""
    nn = torch.nn

    class LRCN(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = nn.Sequential(
                nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                nn.Flatten(), nn.Linear(64 * 4 * 4, 128))
            self.embed = nn.Embedding(vocab + 1, 64)
            self.lstm1 = nn.LSTM(64, 128)
            self.lstm2 = nn.LSTM(128 + 128, 128)
            self.predict = nn.Linear(128, vocab)

        def forward(self, images, words):
            feature = self.cnn(images)
            h1, _ = self.lstm1(self.embed(words))
            static = feature.unsqueeze(0).expand(h1.shape[0], -1, -1)
            h2, _ = self.lstm2(torch.cat([h1, static], dim=2))
            return self.predict(h2)

    torch.manual_seed(1)
    model = LRCN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    images = torch.randn(streams, 3, 64, 64, device=device)
    words = torch.randint(0, vocab, (steps, streams), device=device)
    targets = torch.randint(-1, vocab, (steps, streams), device=device)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images, words).reshape(-1, vocab), targets.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
        optimizer.step()
    return step


# -- the run --------------------------------------------------------------------------------------
def build(name, args, torch, torch_device):
    """(caffelite step, torch step or None, description) for bench ``name``."""
    small = args.dry_run
    if name in NETS:
        batch = 2 if small else (args.lenet_batch if name == 'lenet' else args.caffenet_batch)
        ours = caffelite_convnet(name, batch)
        theirs = torch and torch_convnet(torch, torch_device, name, batch)
        return ours, theirs, f'batch {batch}'
    if name in LSTM_SIZES:
        t, n, d, h = (3, 2, 8, 4) if small else LSTM_SIZES[name]
        ours = caffelite_lstm(t, n, d, h)
        theirs = torch and torch_lstm(torch, torch_device, t, n, d, h)
        return ours, theirs, f'T={t} N={n} D={d} H={h}'
    ours = caffelite_lrcn()
    theirs = torch and torch_lrcn(torch, torch_device)
    return ours, theirs, 'solver step, T=20 N=50'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--device', choices=('cupy', 'fakegpu'), default='cupy',
                    help='caffelite on CuPy (the GPU) or on caffelite.fakegpu (plumbing check)')
    ap.add_argument('--benches', default=','.join(BENCHES),
                    help='comma list of ' + ', '.join(BENCHES))
    ap.add_argument('--runs', type=int, default=5, help='timed iterations (median reported)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
    ap.add_argument('--caffenet-batch', type=int, default=256)
    ap.add_argument('--lenet-batch', type=int, default=64)
    ap.add_argument('--no-torch', action='store_true', help='caffelite only')
    ap.add_argument('--dry-run', action='store_true',
                    help='tiny sizes, one iteration, no warm-up: checks that everything runs')
    ap.add_argument('--json', help='also write the results to this file')
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.benches.split(',') if n.strip()]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        ap.error(f'unknown bench(es) {", ".join(unknown)}; choose from {", ".join(BENCHES)}')
    if args.dry_run:
        args.runs, args.warmup = 1, 0

    if args.device == 'fakegpu':
        os.environ['CAFFELITE_FAKE_GPU'] = '1'
    backend.set_mode_gpu()
    torch, torch_device, torch_sync = None, None, lambda: None
    if not args.no_torch:
        import torch
        torch_device = 'cuda' if args.device == 'cupy' else 'cpu'
        if torch_device == 'cuda':
            torch_sync = torch.cuda.synchronize
    print(f'caffelite on {args.device} ({backend.xp().__name__}); PyTorch '
          f'{"off" if torch is None else torch.__version__ + " on " + torch_device}; '
          f'median of {args.runs} after {args.warmup} warm-up')
    results = []
    for name in names:
        if name == 'lrcn' and not os.path.exists(os.path.join(REPO, 'data', 'shapes_captions')):
            print(f'{name:<16} skipped: no data (python tools/prepare_lrcn_data.py)')
            continue
        ours, theirs, what = build(name, args, torch, torch_device)
        steps = [synced(ours, synchronize)] + ([synced(theirs, torch_sync)] if theirs else [])
        times = time_interleaved(steps, args.warmup, args.runs)
        row = {'bench': name, 'size': what, 'caffelite_ms': statistics.median(times[0])}
        if theirs:
            row['torch_ms'] = statistics.median(times[1])
            row['ratio'] = row['caffelite_ms'] / row['torch_ms']
        results.append(row)
        torch_part = (f'  torch {row["torch_ms"]:9.2f} ms  caffelite/torch {row["ratio"]:6.2f}'
                      if theirs else '')
        print(f'{name:<16} {what:<24} caffelite {row["caffelite_ms"]:9.2f} ms{torch_part}',
              flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'device': args.device, 'runs': args.runs, 'warmup': args.warmup,
                       'time': time.strftime('%Y-%m-%d %H:%M:%S'), 'results': results}, f,
                      indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
