"""Forward time of the same model in caffelite (NumPy) and, exported by caffelite.onnx, in
onnxruntime (CPU execution provider), with random weights.

Both run float32 in one process with the same thread count (OpenBLAS for caffelite, the
session's intra-op threads for onnxruntime), iterations interleaved; each number is the median
of --runs timed forwards after --warmup untimed ones. Outputs are checked to agree first.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_onnx.py \
        [--threads 1] [--runs 7] [--warmup 2] [--models caffenet,lrcn_image,lrcn_word,activity]

The thread limits must be in the environment before NumPy loads OpenBLAS, so this script sets
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS from --threads and then imports NumPy.
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ('caffenet', 'lrcn_image', 'lrcn_word', 'activity')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--runs', type=int, default=7)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--models', default=','.join(MODELS))
    return p.parse_args()


def build(name):
    """(label, Net, feeds, export input shapes) for one benchmark model."""
    import numpy as np
    import caffelite
    from caffelite.net_rules import filter_net
    from caffelite.prototxt import read_prototxt
    from caffelite.proto import caffelite_pb2 as pb
    proto = os.path.join(ROOT, 'prototxt')
    if name == 'caffenet':
        net = caffelite.Net(os.path.join(proto, 'caffenet_deploy.prototxt'), caffelite.TEST)
        shapes, label = {'data': (10, 3, 227, 227)}, 'CaffeNet deploy, batch 10'
    elif name == 'lrcn_image':
        net = caffelite.Net(os.path.join(proto, 'lrcn_deploy_image.prototxt'), caffelite.TEST)
        shapes, label = {'data': (50, 3, 64, 64)}, 'LRCN image net, 50 images 64x64'
    elif name == 'lrcn_word':
        net = caffelite.Net(os.path.join(proto, 'lrcn_deploy_word.prototxt'), caffelite.TEST)
        shapes = {'input_sentence': (1, 50), 'cont_sentence': (1, 50),
                  'image_features': (50, 128),
                  **{f'lstm{k}_{s}': (1, 50, 128) for k in (1, 2) for s in ('h0', 'c0')}}
        label = 'LRCN word net, one step of 50 streams'
    else:
        path = os.path.join(proto, 'activity_lstm.prototxt')
        state = pb.NetState(phase=pb.TEST, stage=['rgb'])
        param = filter_net(read_prototxt(path, pb.NetParameter()), state)
        layers = [l for l in param.layer if l.type not in ('VideoData', 'Silence')]
        del param.layer[:]
        inputs = param.layer.add(name='input', type='Input', top=['data', 'clip_markers'])
        inputs.input_param.shape.add().dim.extend((16 * 4, 3, 32, 32))
        inputs.input_param.shape.add().dim.extend((16, 4))
        param.layer.extend(layers)
        net = caffelite.Net(param, state=state, source=path)
        shapes, label = {}, 'activity LRCN, 4 clips of 16 frames 32x32'
    for name_, shape in shapes.items():
        net.blobs[name_].reshape(shape)
    net.reshape()
    rng = np.random.default_rng(0)
    for layer in net.layers:
        for blob in layer.blobs:
            fan = np.prod(blob.shape[1:]) if len(blob.shape) > 1 else 10
            blob.data[...] = rng.normal(0, 1 / np.sqrt(fan), blob.shape)
    feeds = {}
    for input_name in net.inputs:
        shape = net.blobs[input_name].shape
        if input_name in ('cont_sentence', 'clip_markers'):
            value = np.ones(shape)
            value[0] = 0
        elif input_name == 'input_sentence':
            value = rng.integers(0, 37, shape)
        else:
            value = rng.standard_normal(shape)
        feeds[input_name] = value.astype(np.float32)
    return label, net, feeds


def bench(label, net, feeds, threads, runs, warmup):
    import numpy as np
    from caffelite.onnx import export
    from caffelite.onnx.runtime import OnnxNet
    runner = OnnxNet(export(net).SerializeToString(), threads=threads)
    ref, got = net.forward(**feeds), runner.forward(**feeds)
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(value).max()))
    times = {'caffelite': [], 'onnxruntime': []}
    for i in range(warmup + runs):
        for which, run in (('caffelite', lambda: net.forward(**feeds)),
                           ('onnxruntime', lambda: runner.forward(**feeds))):
            start = time.perf_counter()
            run()
            if i >= warmup:
                times[which].append(time.perf_counter() - start)
    c, o = (statistics.median(times[k]) * 1e3 for k in ('caffelite', 'onnxruntime'))
    print(f'| {label} | {c:.2f} ms | {o:.2f} ms | {c / o:.2f}x |', flush=True)


def main():
    args = parse_args()
    for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, ROOT)
    import numpy as np
    import onnxruntime
    print(f'NumPy {np.__version__}, onnxruntime {onnxruntime.__version__}, '
          f'{args.threads} thread(s), median of {args.runs}')
    print('| model (forward) | caffelite | onnxruntime | caffelite / onnxruntime |')
    print('|---|---|---|---|')
    for name in args.models.split(','):
        bench(*build(name), args.threads, args.runs, args.warmup)


if __name__ == '__main__':
    main()
