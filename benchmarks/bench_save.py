"""Save and load times of CaffeNet's weights (a 244 MB .caffemodel) and its solver state.

    python benchmarks/bench_save.py [--runs 3] [--protobuf]

Times, each the median of --runs: ``net.save`` (the .caffemodel), ``net.copy_from`` (loading
it), ``write_state_binary`` / ``read_state`` (a .solverstate with one history blob per
parameter, as SGD writes it). Goal: save <= 2 x load. --protobuf also times the same
.caffemodel built with protobuf's own repeated-field API (``BlobProto.data.extend``), once.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import caffelite  # noqa: E402
from caffelite.proto import caffelite_pb2 as pb  # noqa: E402
from caffelite.solvers.snapshot import SolverStateData, read_state, write_state_binary  # noqa: E402


def timed(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def protobuf_save(net, path):
    """The .caffemodel built element by element with protobuf (the old way)."""
    param = pb.NetParameter(name=net.name)
    for lp, layer in zip(net.param.layer, net.layers):
        out = param.layer.add()
        out.CopyFrom(lp)
        for blob in layer.blobs:
            proto = out.blobs.add()
            proto.shape.dim.extend(blob.shape)
            proto.data.extend(blob.data.ravel())
    with open(path, 'wb') as f:
        f.write(param.SerializeToString())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--protobuf', action='store_true',
                        help='also time the protobuf repeated-field save once')
    args = parser.parse_args()
    net = caffelite.Net(os.path.join(HERE, 'nets', 'caffenet_train.prototxt'), caffelite.TEST)
    count = sum(blob.count for blob in net.learnable_params)
    history = [np.random.default_rng(0).standard_normal(b.shape).astype(np.float32)
               for b in net.learnable_params]
    with tempfile.TemporaryDirectory() as folder:
        model = os.path.join(folder, 'caffenet.caffemodel')
        state = os.path.join(folder, 'caffenet.solverstate')
        save = timed(lambda: net.save(model), args.runs)
        load = timed(lambda: net.copy_from(model), args.runs)
        state_save = timed(lambda: write_state_binary(
            state, SolverStateData(1, model, 0, history)), args.runs)
        state_load = timed(lambda: read_state(state), args.runs)
        size = os.path.getsize(model) / 2 ** 20
        print(f'CaffeNet: {count / 1e6:.1f} M parameters, .caffemodel {size:.0f} MiB; '
              f'median of {args.runs}')
        print(f'.caffemodel   save {save:6.2f} s   load {load:6.2f} s   '
              f'save/load {save / load:.2f}')
        print(f'.solverstate  save {state_save:6.2f} s   load {state_load:6.2f} s   '
              f'save/load {state_save / state_load:.2f}')
        if args.protobuf:
            old = timed(lambda: protobuf_save(net, model), 1)
            print(f'.caffemodel through BlobProto.data.extend: save {old:.2f} s')


if __name__ == '__main__':
    main()
