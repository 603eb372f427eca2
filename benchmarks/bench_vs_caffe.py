"""caffelite beside real BVLC Caffe 1.0: the same prototxt, forward + backward, in one run.

For each net the script writes one prototxt (data layers replaced by ``Input``, as the real
Caffe build has no HDF5/LMDB/image layers) and one ``.npz`` of inputs, then starts two worker
processes on them: real Caffe through ``~/.cache/caffe-peer/run.sh`` (see
/work/shared/real-caffe/README.md) and caffelite with this Python. Both get the same thread
count (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``) and neither sees ``OPENBLAS_CORETYPE`` or
``OPENBLAS_L2_SIZE``. The parent asks them for one iteration at a time, in turn (the order
alternates every round), so a drifting machine load hits both alike; an iteration is: clear
the parameter diffs, forward, backward. Each figure is the median over ``--runs`` iterations
after ``--warmup``; the ratio column is the median of the per-round ratios caffelite / Caffe,
then its range over ``--repeats`` repeats. With more than one thread the parent waits
``--pause`` seconds (default 0.3) before every iteration: after its last BLAS call an
OpenBLAS worker thread keeps spinning (sched_yield) for about 2^28 cycles (~0.1 s,
OpenBLAS's THREAD_TIMEOUT) before it sleeps, so without the pause the worker that has just
finished spins on the cores the other one is timed on. At the end each worker reports its peak resident
memory (``ru_maxrss``: the net, its blobs and the interpreter).

"BLAS ms" is the part of caffelite's iteration spent inside its matrix products (every
``numpy.matmul`` and cblas gemm call, timed in place, so with the caches as the net leaves
them), and "floor" that time over Caffe's whole iteration (median of the per-round ratios):
the ratio caffelite would reach if everything but its BLAS calls cost nothing. Both
frameworks call OpenBLAS for the same products, so a goal below the floor asks for a faster
BLAS, not a faster framework.

Weights without a filler (CaffeNet's deploy net) get the same random values in both workers
(``fill_zero_weights``), so that no net runs on all-zero activations.

Without a Caffe build the Caffe column reads "-" and caffelite is timed alone.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_vs_caffe.py \
        [--nets lenet,caffenet,lstm_activity,lstm_captioning,lrcn,coco] [--threads 2] \
        [--runs 5] [--warmup 2] [--repeats 1] [--clock wall|cpu] [--pause S] [--profile]
        [--caffe ~/.cache/caffe-peer/run.sh] [--no-caffe]

``--profile`` adds, per net, both frameworks' per-layer forward and backward CPU ms side by
side (medians of --runs profiled iterations of the last repeat).

This file is also the worker: ``bench_vs_caffe.py --worker caffe|caffelite PROTOTXT NPZ``
(stdlib and NumPy only at import, so that it runs in the Caffe build's own Python).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_CAFFE = os.path.expanduser('~/.cache/caffe-peer/run.sh')


# --------------------------------------------------------------------------------------------
# The nets: (prototxt, inputs) per name
# --------------------------------------------------------------------------------------------
def _lstm_net(steps, streams, dim, hidden):
    """One LSTM layer over Input x (T x N x D) and cont (T x N); force_backward gives dx."""
    text = f'''name: "lstm" force_backward: true
layer {{ name: "input" type: "Input" top: "x" top: "cont"
  input_param {{ shape {{ dim: {steps} dim: {streams} dim: {dim} }}
                shape {{ dim: {steps} dim: {streams} }} }} }}
layer {{ name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
  recurrent_param {{ num_output: {hidden}
    weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }}
    bias_filler {{ type: "constant" value: 0 }} }} }}
'''
    rng = np.random.default_rng(0)
    cont = np.ones((steps, streams), np.float32)
    cont[0] = 0                                    # every stream starts at t = 0
    arrays = {'x': rng.standard_normal((steps, streams, dim)).astype(np.float32),
              'cont': cont, 'diff:h': np.ones((steps, streams, hidden), np.float32)}
    return text, arrays


def _with_inputs(path, inputs, force_backward=False):
    """The TRAIN net of ``path`` with its data layers replaced by one Input layer whose tops
    have the shapes in ``inputs`` (name: shape)."""
    from google.protobuf import text_format
    sys.path.insert(0, ROOT)
    from caffelite.net_rules import filter_net, replace_data_layers
    from caffelite.prototxt import read_prototxt
    from caffelite.proto import caffelite_pb2 as pb

    param = filter_net(read_prototxt(path, pb.NetParameter()), pb.NetState(phase=pb.TRAIN))
    replace_data_layers(param, inputs)
    if force_backward:
        param.force_backward = True
    return text_format.MessageToString(param)


def _caption_inputs(image_shape, steps, streams, vocabulary, classes=None):
    rng = np.random.default_rng(0)
    cont = np.ones((steps, streams), np.float32)
    cont[0] = 0
    words = rng.integers(0, vocabulary, size=(steps, streams)).astype(np.float32)
    target = rng.integers(0, vocabulary, size=(steps, streams)).astype(np.float32)
    target[-3:, ::2] = -1                          # some ignored (padding) positions
    return {'data': rng.standard_normal((streams,) + image_shape).astype(np.float32),
            'label': np.zeros(streams, np.float32), 'cont_sentence': cont,
            'input_sentence': words, 'target_sentence': target}


def build_net(name):
    """(prototxt text, {blob: array} inputs, 'diff:blob' entries = output diffs) for ``name``."""
    rng = np.random.default_rng(0)
    if name == 'lenet':
        with open(os.path.join(HERE, 'nets', 'lenet_train.prototxt')) as f:
            text = f.read()
        return text, {'data': rng.standard_normal((64, 1, 28, 28)).astype(np.float32),
                      'label': rng.integers(0, 10, 64).astype(np.float32)}
    if name == 'caffenet':
        with open(os.path.join(ROOT, 'prototxt', 'caffenet_deploy.prototxt')) as f:
            text = 'force_backward: true\n' + f.read()
        return text, {'data': rng.standard_normal((10, 3, 227, 227)).astype(np.float32),
                      'diff:prob': rng.standard_normal((10, 1000)).astype(np.float32)}
    if name == 'lstm_activity':
        return _lstm_net(16, 24, 4096, 256)
    if name == 'lstm_captioning':
        return _lstm_net(20, 100, 1000, 1000)
    if name in ('lrcn', 'coco'):
        image, streams, vocabulary, path = (
            ((3, 64, 64), 50, 37, 'lrcn.prototxt') if name == 'lrcn' else
            ((3, 227, 227), 10, 8801, 'lrcn_full_caffenet.prototxt'))
        arrays = _caption_inputs(image, 20, streams, vocabulary)
        shapes = {k: v.shape for k, v in arrays.items()}
        return _with_inputs(os.path.join(ROOT, 'prototxt', path), shapes), arrays
    raise SystemExit(f'unknown net "{name}"; known: {", ".join(NETS)}')


NETS = {
    'lenet': 'LeNet, batch 64',
    'caffenet': 'CaffeNet deploy + force_backward, batch 10',
    'lstm_activity': 'LSTM T=16 N=24 D=4096 H=256',
    'lstm_captioning': 'LSTM T=20 N=100 D=1000 H=1000',
    'lrcn': 'main job (prototxt/lrcn.prototxt), N=50',
    'coco': 'LRCN COCO (CaffeNet + 2 LSTM 1000, vocab 8801), N=10',
}


# --------------------------------------------------------------------------------------------
# Worker side (runs under either Python)
# --------------------------------------------------------------------------------------------
def _time_blas():
    """Route caffelite's matrix products (``numpy.matmul``, which the layers call as
    ``xp.matmul``, and the cblas gemm behind ``gemm_accumulate``) through a timer; returns
    the one-element list the seconds spent inside them accumulate in."""
    from caffelite.layers import gemm
    spent = [0.0]

    def timed(function):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return call
    np.matmul = timed(np.matmul)
    for dtype, function in list(gemm._GEMM.items()):
        gemm._GEMM[dtype] = timed(function)
    return spent


def _open_net(framework, prototxt):
    """(net, one_iteration, one_profiled_iteration, blas seconds) for real Caffe or caffelite;
    the profiled iteration returns [name, type, forward ms, backward ms] per layer (``caffe
    time``'s table); the last is the list caffelite's time in BLAS accumulates in (None for
    Caffe)."""
    clock = time.process_time
    if framework == 'caffe':
        import caffe
        caffe.set_mode_cpu()
        net = caffe.Net(prototxt, caffe.TRAIN)
        last = len(net.layers) - 1

        def step():
            net.clear_param_diffs()
            net._forward(0, last)
            net._backward(last, 0)

        def profiled():
            net.clear_param_diffs()
            rows = [[name, layer.type, 0.0, 0.0]
                    for name, layer in zip(net._layer_names, net.layers)]
            for i in range(last + 1):
                start = clock()
                net._forward(i, i)
                rows[i][2] = (clock() - start) * 1e3
            for i in range(last, -1, -1):
                start = clock()
                net._backward(i, i)
                rows[i][3] = (clock() - start) * 1e3
            return rows
        return net, step, profiled, None
    sys.path.insert(0, ROOT)
    import caffelite
    blas = _time_blas()
    caffelite.set_random_seed(1)
    net = caffelite.Net(prototxt, caffelite.TRAIN)

    def step():
        net.clear_param_diffs()
        net.forward_backward()

    def profiled():
        net.clear_param_diffs()
        rows = [[layer.name, layer.type, 0.0, 0.0] for layer in net.layers]
        for i, layer in enumerate(net.layers):
            start = clock()
            layer.reshape(net.bottom_vecs[i], net.top_vecs[i])
            layer.forward(net.bottom_vecs[i], net.top_vecs[i])
            rows[i][2] = (clock() - start) * 1e3
        net.seed_loss_diffs()
        for i in range(len(net.layers) - 1, -1, -1):
            if net.layer_need_backward[i]:
                start = clock()
                net.layers[i].backward(net.top_vecs[i], net.bottom_need_backward[i],
                                       net.bottom_vecs[i])
                rows[i][3] = (clock() - start) * 1e3
        return rows
    return net, step, profiled, blas


def fill_zero_weights(net):
    """Weights a prototxt gives no filler (CaffeNet's deploy net) are all zero: every
    activation would be 0 and every pooling window a tie. Fill each all-zero weight blob with
    N(0, 1 / fan_in) from a generator seeded by the blob's position, the same numbers in
    both workers."""
    for index, blobs in enumerate(net.params.values()):
        data = blobs[0].data
        if data.size and not data.any():
            fan_in = data.size // data.shape[0]
            rng = np.random.default_rng(index)
            data[...] = (rng.standard_normal(data.shape) / np.sqrt(fan_in)).reshape(data.shape)


def set_inputs(net, arrays):
    """Write build_net's ``arrays`` (blob: data, 'diff:blob': top diff) into ``net``, then
    fill its filler-less weights (``fill_zero_weights``)."""
    for key in arrays:
        blob = net.blobs[key[5:] if key.startswith('diff:') else key]
        (blob.diff if key.startswith('diff:') else blob.data)[...] = arrays[key]
    fill_zero_weights(net)


def worker(framework, prototxt, npz):
    """Answer 'step' with the iteration's wall and CPU ms (and caffelite's wall ms inside
    BLAS), 'profile' with one iteration's per-layer CPU ms, 'quit' with the peak RSS."""
    net, step, profiled, blas = _open_net(framework, prototxt)
    with np.load(npz) as arrays:
        set_inputs(net, arrays)
    out = sys.stdout
    out.write(json.dumps({'ready': True}) + '\n')
    out.flush()
    for line in sys.stdin:
        command = line.strip()
        if command == 'step':
            wall, cpu, in_blas = time.perf_counter(), time.process_time(), blas and blas[0]
            step()
            reply = {'wall': (time.perf_counter() - wall) * 1e3,
                     'cpu': (time.process_time() - cpu) * 1e3}
            if blas:
                reply['blas'] = (blas[0] - in_blas) * 1e3
        elif command == 'profile':
            reply = {'layers': profiled()}
        else:
            reply = {'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        out.write(json.dumps(reply) + '\n')
        out.flush()
        if 'maxrss_mb' in reply:
            break
    os._exit(0)  # pycaffe may abort in its destructors; the answers are out


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, command, prototxt, npz, threads):
        env = {k: v for k, v in os.environ.items()
               if k not in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE')}
        for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env[var] = str(threads)
        env['PYTHONPATH'] = ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH')
                                    else '')
        self.proc = subprocess.Popen(command + [prototxt, npz], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.ask(None)

    def ask(self, what):
        if what is not None:
            self.proc.stdin.write(what + '\n')
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f'worker {self.proc.args[:3]} ended (exit {self.proc.returncode})')
        return json.loads(line)

    def close(self):
        rss = self.ask('quit')['maxrss_mb']
        self.proc.wait()
        return rss


def profile_layers(workers, args):
    """{framework: {layer name: (type, forward ms, backward ms)}}: per-layer medians of
    CPU time over --runs profiled iterations (after --warmup), interleaved."""
    runs = {k: [] for k in workers}
    for it in range(args.warmup + args.runs):
        for key, w in workers.items():
            time.sleep(args.pause)
            rows = w.ask('profile')['layers']
            if it >= args.warmup:
                runs[key].append(rows)
    table = {}
    for key, iterations in runs.items():
        table[key] = {name: (kind, statistics.median(r[j][2] for r in iterations),
                             statistics.median(r[j][3] for r in iterations))
                      for j, (name, kind, _, _) in enumerate(iterations[0])}
    return table


def print_profile(table):
    """Per layer, in caffelite's order (then Caffe's extra layers): forward and backward ms."""
    ours, theirs = table['caffelite'], table.get('caffe', {})
    names = list(ours) + [n for n in theirs if n not in ours]
    print(f'    {"layer":<34}{"type":<16}{"caffelite fwd/bwd ms":>22}{"caffe fwd/bwd ms":>20}')
    for name in names:
        kind = (ours.get(name) or theirs.get(name))[0]
        cells = []
        for side in (ours, theirs):
            cells.append(f'{side[name][1]:8.2f} {side[name][2]:8.2f}' if name in side
                         else f'{"-":>8} {"-":>8}')
        print(f'    {name:<34}{kind:<16}{cells[0]:>22}{cells[1]:>20}')


def default_pause(threads):
    """Seconds to wait before each timed iteration: 0.3 with more than one BLAS thread (an
    idle OpenBLAS thread spins ~0.1 s after its last call, see above), else 0."""
    return 0.3 if threads > 1 else 0.0


def load_average():
    return os.getloadavg()[0]


def cpu_line():
    model, avx512 = '?', False
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and model == '?':
                    model = line.split(':', 1)[1].strip()
                if line.startswith('flags'):
                    avx512 = ' avx512f ' in f' {line} '
    except OSError:
        pass
    return f'{model}, {os.cpu_count()} CPUs, {"AVX-512" if avx512 else "no AVX-512"}'


def time_net(name, args, caffe_cmd, workdir):
    text, arrays = build_net(name)
    prototxt = os.path.join(workdir, f'{name}.prototxt')
    npz = os.path.join(workdir, f'{name}.npz')
    with open(prototxt, 'w') as f:
        f.write(text)
    np.savez(npz, **arrays)
    ours_cmd = [sys.executable, os.path.abspath(__file__), '--worker', 'caffelite']
    ratios = []
    for _ in range(args.repeats):
        result = {}
        load = load_average()
        workers = {'caffelite': Worker(ours_cmd, prototxt, npz, args.threads)}
        if caffe_cmd:
            workers['caffe'] = Worker(caffe_cmd, prototxt, npz, args.threads)
        order = list(workers)
        times = {k: [] for k in workers}
        blas = []
        for it in range(args.warmup + args.runs):
            for key in (order if it % 2 == 0 else order[::-1]):
                time.sleep(args.pause)
                reply = workers[key].ask('step')
                if it >= args.warmup:
                    times[key].append(reply[args.clock])
                    if 'blas' in reply:
                        blas.append(reply['blas'])
        if args.profile:
            result['profile'] = profile_layers(workers, args)
        rss = {k: w.close() for k, w in workers.items()}
        result.update({k: statistics.median(v) for k, v in times.items()})
        result['blas'] = statistics.median(blas)
        if 'caffe' in times:
            ratios.append(statistics.median(a / b for a, b in
                                            zip(times['caffelite'], times['caffe'])))
            result['floor'] = statistics.median(a / b for a, b in zip(blas, times['caffe']))
        result['rss'] = rss
        result['load'] = (load, load_average())
    return result, ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--nets', default=','.join(NETS))
    ap.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=1, help='fresh worker pairs per net; the '
                    'ratio column gives their range')
    ap.add_argument('--clock', choices=('wall', 'cpu'), default='wall')
    ap.add_argument('--pause', type=float, default=None, help='seconds to wait before each '
                    'iteration, so that the other worker\'s BLAS threads stop spinning '
                    '(default 0.3 with more than one thread, else 0)')
    ap.add_argument('--caffe', default=DEFAULT_CAFFE, help='run.sh of the real Caffe build')
    ap.add_argument('--no-caffe', action='store_true')
    ap.add_argument('--profile', action='store_true', help='per-layer CPU ms of both, '
                    'side by side (Caffe\'s `caffe time` table)')
    args = ap.parse_args(argv)
    if args.pause is None:
        args.pause = default_pause(args.threads)
    caffe_cmd = None
    if not args.no_caffe:
        if os.access(args.caffe, os.X_OK):
            caffe_cmd = [args.caffe, os.path.abspath(__file__), '--worker', 'caffe']
        else:
            print(f'real Caffe not built ({args.caffe} missing): caffelite column only')
    print(f'{cpu_line()}; {args.threads} threads each; {args.clock} clock; median of '
          f'{args.runs} after {args.warmup} warm-up, x{args.repeats}; pause {args.pause} s; '
          f'numpy {np.__version__}')
    print(f'{"net":<16}{"caffelite ms":>13}{"caffe ms":>10}{"ratio":>7}{"range":>13}'
          f'{"BLAS ms":>9}{"floor":>7}{"RSS MB ours/caffe":>19}{"load":>11}  what')
    with tempfile.TemporaryDirectory() as workdir:
        for name in [n.strip() for n in args.nets.split(',') if n.strip()]:
            if name not in NETS:
                raise SystemExit(f'unknown net "{name}"; known: {", ".join(NETS)}')
            r, ratios = time_net(name, args, caffe_cmd, workdir)
            caffe_ms = f'{r["caffe"]:10.1f}' if 'caffe' in r else f'{"-":>10}'
            ratio = f'{statistics.median(ratios):7.2f}' if ratios else f'{"-":>7}'
            span = f'{min(ratios):.2f}-{max(ratios):.2f}' if ratios else '-'
            rss = f'{r["rss"]["caffelite"]:.0f}/' + (f'{r["rss"]["caffe"]:.0f}'
                                                     if 'caffe' in r['rss'] else '-')
            floor = f'{r["floor"]:7.2f}' if 'floor' in r else f'{"-":>7}'
            print(f'{name:<16}{r["caffelite"]:13.1f}{caffe_ms}{ratio}{span:>13}'
                  f'{r["blas"]:9.1f}{floor}{rss:>19}'
                  f'{r["load"][0]:>5.1f}-{r["load"][1]:<4.1f}  {NETS[name]}', flush=True)
            if args.profile:
                print_profile(r['profile'])


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--worker':
        worker(*sys.argv[2:])
    else:
        main()
