"""The ``caffelite`` command, Caffe's ``caffe`` tool: train, test, time, device_query.

    caffelite train --solver S.prototxt [--weights W.caffemodel[,W2...] | --snapshot S.solverstate]
    caffelite test  --model net.prototxt --weights W.caffemodel [--iterations 50]
    caffelite time  --model net.prototxt [--iterations 50] [--phase TRAIN]
    caffelite device_query [--gpu 0]
    caffelite export_onnx --model deploy.prototxt [--weights W.caffemodel] --output model.onnx

Flags take one dash or two (``-solver x``, ``--solver=x``), as Caffe's gflags do. Log lines go
to stderr in glog's format, as Caffe's (``GLOG_minloglevel=1`` keeps only warnings and worse);
a CaffeliteError prints one message there and exits with 1.
"""
import argparse
import importlib
import os
import platform
import sys
import time

import numpy as np

from . import backend, parallel
from .errors import CaffeliteError, printable
from .proto import caffelite_pb2 as pb
from .solvers.log import fmt, glog_handler, logger
from .solvers.params import read_solver_param
from .solvers.signals import ACTIONS, SignalHandler


# -- flags ----------------------------------------------------------------------------------------
def _flag(parser, name, **kwargs):
    parser.add_argument('-' + name, '--' + name, dest=name, **kwargs)


def _int32(text):
    """An argparse type: an integer that fits Caffe's int32 flags."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, got "{text}"') from None
    if not -2 ** 31 <= value < 2 ** 31:
        raise argparse.ArgumentTypeError(f'{value} is out of range for a 32-bit integer')
    return value


def _device_flags(parser, phase_default=None):
    _flag(parser, 'gpu', metavar='ID', help='run on this GPU (needs CuPy); "all" = GPU 0')
    if phase_default:
        _flag(parser, 'phase', choices=('TRAIN', 'TEST'), default=phase_default,
              type=str.upper, help=f'network phase (default {phase_default})')
    _flag(parser, 'level', type=_int32, default=None, help='network level')
    _flag(parser, 'stage', action='append', default=[],
          help='network stage(s), comma-separated; may be repeated')


def build_parser():
    parser = argparse.ArgumentParser(
        prog='caffelite', allow_abbrev=False,
        description='Caffe, rebuilt on NumPy/CuPy: train, test and time nets from prototxt.',
        epilog='Caffe\'s tools run the same way: caffelite ' + ' | '.join(CAFFE_TOOLS) +
               ' [their Caffe flags and arguments]')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)

    train = commands.add_parser('train', allow_abbrev=False, help='train or fine-tune a model')
    _flag(train, 'solver', metavar='PROTOTXT', help='the solver definition')
    _flag(train, 'weights', metavar='CAFFEMODEL',
          help='weights to fine-tune from (comma-separated list)')
    _flag(train, 'snapshot', metavar='SOLVERSTATE', help='solver state to resume from')
    _device_flags(train)
    _flag(train, 'sigint_effect', choices=ACTIONS, default='stop',
          help='on SIGINT (Ctrl-C): stop (default, snapshots), snapshot, none')
    _flag(train, 'sighup_effect', choices=ACTIONS, default='snapshot',
          help='on SIGHUP: snapshot (default), stop, none')
    train.set_defaults(func=train_command)

    test = commands.add_parser('test', allow_abbrev=False, help='score a model')
    _flag(test, 'model', metavar='PROTOTXT', help='the net definition')
    _flag(test, 'weights', metavar='CAFFEMODEL', help='trained weights (comma-separated list)')
    _flag(test, 'iterations', type=_int32, default=50, help='batches to run (default 50)')
    _device_flags(test, 'TEST')
    test.set_defaults(func=test_command)

    timing = commands.add_parser('time', allow_abbrev=False,
                                 help='benchmark forward/backward per layer')
    _flag(timing, 'model', metavar='PROTOTXT', help='the net definition')
    _flag(timing, 'weights', metavar='CAFFEMODEL', help='optional weights')
    _flag(timing, 'iterations', type=_int32, default=50, help='iterations to time (default 50)')
    _device_flags(timing, 'TRAIN')
    timing.set_defaults(func=time_command)

    query = commands.add_parser('device_query', allow_abbrev=False,
                                help='show the CPU/BLAS setup, or a GPU\'s properties')
    _flag(query, 'gpu', metavar='ID', help='the GPU to describe')
    query.set_defaults(func=device_query_command)
    _add_export_onnx(commands)
    return parser


def _stages(args):
    return [s.strip() for entry in args.stage for s in entry.split(',') if s.strip()]


def _phase(args):
    return pb.TRAIN if args.phase == 'TRAIN' else pb.TEST


def _weights_list(text):
    return [w.strip() for w in text.split(',') if w.strip()]


# -- devices --------------------------------------------------------------------------------------
def _gpu_ids(spec):
    """Device ids from Caffe's -gpu value: "0", "0,1", "all" (every visible GPU)."""
    if spec.strip().lower() == 'all':
        try:
            import cupy
            return list(range(cupy.cuda.runtime.getDeviceCount())) or [0]
        except Exception:
            return [0]
    try:
        ids = [int(x) for x in spec.split(',') if x.strip()]
    except ValueError:
        raise CaffeliteError(f'invalid --gpu "{spec}": give device ids such as 0 or 0,1') \
            from None
    if not ids or min(ids) < 0:
        raise CaffeliteError(f'invalid --gpu "{spec}": give device ids such as 0 or 0,1')
    return ids


def _gpu_id(spec):
    """One device id (test, time, device_query take one GPU)."""
    ids = _gpu_ids(spec)
    if len(ids) != 1 and spec.strip().lower() != 'all':
        raise CaffeliteError(f'--gpu {spec}: this command runs on one GPU; give one id '
                             f'(several GPUs are for train)')
    return ids[0]


def use_gpu(device_id):
    """Switch the backend to GPU ``device_id``; a CaffeliteError when that cannot be done."""
    try:
        backend.set_device(device_id)
        backend.set_mode_gpu()
    except CaffeliteError:
        raise
    except Exception as err:        # CUDA errors from CuPy (no device, bad id, driver)
        raise CaffeliteError(f'cannot use GPU {device_id}: {err}') from None
    logger.info('Use GPU with device ID %d', device_id)


def _select_device(args, solver_param=None):
    if args.gpu is not None:
        use_gpu(_gpu_id(args.gpu))
    elif solver_param is not None and solver_param.HasField('solver_mode') and \
            solver_param.solver_mode == pb.SolverParameter.GPU:
        # Caffe: with no -gpu flag, the solver file's solver_mode / device_id decide.
        try:
            use_gpu(solver_param.device_id)
        except CaffeliteError as err:
            logger.warning('solver_mode is GPU but %s; running on the CPU', err)
    else:
        logger.info('Use CPU.')


def _synchronize():
    if backend.mode() == 'gpu':
        backend.xp().cuda.Device().synchronize()


# -- train ----------------------------------------------------------------------------------------
class Progress:
    """A one-line progress display (iteration, rate, time left) on a terminal; it erases
    itself before each log line (``clear``) and redraws at the next iteration."""

    def __init__(self, solver, stream):
        self.solver, self.stream = solver, stream
        self.start_time, self.start_iter = None, None
        self.last_draw, self.drawn = 0.0, False

    def on_start(self):
        now = time.perf_counter()
        if self.start_time is None:
            self.start_time, self.start_iter = now, self.solver.iter
            return
        if now - self.last_draw < 0.2:
            return
        done = self.solver.iter - self.start_iter
        rate = done / max(now - self.start_time, 1e-9)
        total = self.solver.param.max_iter
        left = (total - self.solver.iter) / rate if rate > 0 else float('inf')
        eta = time.strftime('%H:%M:%S', time.gmtime(left)) if np.isfinite(left) else '--'
        self.stream.write(f'\r[{self.solver.iter}/{total}] {rate:.2f} iter/s, '
                          f'{eta} left\033[K')
        self.stream.flush()
        self.last_draw, self.drawn = now, True

    def clear(self):
        if self.drawn:
            self.stream.write('\r\033[K')
            self.stream.flush()
            self.drawn = False


def train_command(args, handler):
    if not args.solver:
        raise CaffeliteError('need a solver definition to train: --solver S.prototxt')
    if args.snapshot and args.weights:
        raise CaffeliteError('give a snapshot to resume training or weights to fine-tune, '
                             'not both')
    param = read_solver_param(args.solver)
    if args.level is not None:
        param.train_state.level = args.level
    if _stages(args):
        param.train_state.stage.extend(_stages(args))
    if args.snapshot:
        del param.weights[:]
    elif args.weights:
        del param.weights[:]
        param.weights.append(args.weights)
    gpus = _gpu_ids(args.gpu) if args.gpu is not None else []
    context = parallel.context_from_environment(gpus)   # None unless mpiexec -n K > 1
    if context is None and len(gpus) > 1:     # --gpu 0,1 typed without mpiexec
        parallel.relaunch(len(gpus))          # execs mpiexec -n 2 caffelite train ...
    with parallel.abort_on_error(context):    # a failing rank ends every rank, naming itself
        return _train(args, handler, param, context)


def _train(args, handler, param, context):
    """Train with one worker (``context`` None) or as one of several; the same solver calls
    either way (under several workers the solver's sync reduces, agrees and restores)."""
    parallel.quiet_unless_root(context)       # rank 0 alone logs
    if context is None or context.kind != 'nccl':     # NCCLContext already chose its GPU
        _select_device(args, param)
    solver = parallel.train_solver(param, context, solver_path=args.solver)
    if (context is None or context.is_root) and sys.stderr.isatty():
        progress = Progress(solver, sys.stderr)
        solver.on_start.append(progress.on_start)
        handler.before_emit = progress.clear
    try:
        with SignalHandler(args.sigint_effect, args.sighup_effect) as signals:
            solver.set_action_function(signals.requested_action)
            if args.snapshot:
                logger.info('Resuming from %s', args.snapshot)
                solver.restore(args.snapshot)   # under MPI: rank 0 reads, broadcasts
            logger.info('Starting Optimization')
            solver.solve()
    finally:
        parallel.stop_prefetching(solver)     # no prefetch thread left inside h5py at exit
    handler.before_emit = None
    return 0


# -- test -----------------------------------------------------------------------------------------
def _load_net(args):
    from .net import Net
    if not args.model:
        raise CaffeliteError(f'need a model definition to {args.command}: --model net.prototxt')
    if not os.path.exists(args.model):
        raise CaffeliteError(f'model file {args.model} does not exist')
    net = Net(args.model, _phase(args), level=args.level or 0, stages=_stages(args))
    for path in _weights_list(args.weights or ''):
        net.copy_from(path)
    return net


def test_command(args, handler):
    """Caffe's ``caffe test``: per-batch outputs, then the mean loss and mean outputs."""
    if not args.weights:
        raise CaffeliteError('need model weights to score: --weights W.caffemodel')
    if args.iterations < 1:
        raise CaffeliteError(f'--iterations must be >= 1, got {args.iterations}')
    _select_device(args)
    net = _load_net(args)
    logger.info('Running for %d iterations.', args.iterations)
    scores, names, loss = None, [], 0.0
    for i in range(args.iterations):
        loss += net.forward_from_to(0, len(net.layers) - 1)
        values, names = [], []
        for name in net.outputs:
            for value in np.asarray(net.blobs[name].data, np.float64).ravel():
                logger.info('Batch %d, %s = %s', i, name, fmt(value))
                values.append(value)
                names.append(name)
        scores = np.array(values) if scores is None else scores + values
    logger.info('Loss: %s', fmt(loss / args.iterations))
    for name, total in zip(names, scores):
        mean = total / args.iterations
        weight = net.blob_loss_weights.get(name, 0.0)
        note = f' (* {fmt(weight)} = {fmt(weight * mean)} loss)' if weight else ''
        logger.info('%s = %s%s', name, fmt(mean), note)
    return 0


# -- time -----------------------------------------------------------------------------------------
def _timed(function):
    _synchronize()
    start = time.perf_counter()
    function()
    _synchronize()
    return time.perf_counter() - start


def time_command(args, handler):
    """Caffe's ``caffe time``: mean forward (reshape + forward) and backward time of every
    layer, and of whole passes, over --iterations forward-backward passes."""
    if args.iterations < 1:
        raise CaffeliteError(f'--iterations must be >= 1, got {args.iterations}')
    _select_device(args)
    net = _load_net(args)
    layers, n = net.layers, len(net.layers)
    logger.info('Performing Forward')
    logger.info('Initial loss: %s', fmt(net.forward_from_to(0, n - 1)))
    logger.info('Performing Backward')
    net.backward()
    forward_per_layer, backward_per_layer = np.zeros(n), np.zeros(n)
    forward_total = backward_total = 0.0
    logger.info('*** Benchmark begins ***')
    logger.info('Testing for %d iterations.', args.iterations)
    total_start = time.perf_counter()
    for j in range(args.iterations):
        iteration_start = time.perf_counter()
        for i in range(n):
            bottom, top, layer = net.bottom_vecs[i], net.top_vecs[i], layers[i]
            forward_per_layer[i] += _timed(lambda: (layer.reshape(bottom, top),
                                                    layer.forward(bottom, top)))
        forward_total += time.perf_counter() - iteration_start
        backward_start = time.perf_counter()
        net.seed_loss_diffs()
        for i in reversed(range(n)):
            if net.layer_need_backward[i]:
                bottom, top, layer = net.bottom_vecs[i], net.top_vecs[i], layers[i]
                backward_per_layer[i] += _timed(
                    lambda: layer.backward(top, net.bottom_need_backward[i], bottom))
        _synchronize()
        backward_total += time.perf_counter() - backward_start
        logger.info('Iteration: %d forward-backward time: %s ms.', j + 1,
                    fmt((time.perf_counter() - iteration_start) * 1e3))
    total = time.perf_counter() - total_start
    per = 1e3 / args.iterations
    logger.info('Average time per layer: ')
    for name, fwd, bwd in zip(net._layer_names, forward_per_layer, backward_per_layer):
        logger.info('%10s\tforward: %s ms.', name, fmt(fwd * per))
        logger.info('%10s\tbackward: %s ms.', name, fmt(bwd * per))
    logger.info('Average Forward pass: %s ms.', fmt(forward_total * per))
    logger.info('Average Backward pass: %s ms.', fmt(backward_total * per))
    logger.info('Average Forward-Backward: %s ms.', fmt(total * per))
    logger.info('Total Time: %s ms.', fmt(total * 1e3))
    logger.info('*** Benchmark ends ***')
    return 0


# -- device_query ---------------------------------------------------------------------------------
def _blas_lines():
    try:
        config = np.show_config(mode='dicts')
        deps = config.get('Build Dependencies', {})
        return [f'{kind.upper()}: {info.get("name", "?")} {info.get("version", "")}'.rstrip()
                for kind, info in deps.items() if kind in ('blas', 'lapack')]
    except Exception:           # older NumPy: no dict mode
        return ['BLAS: (unknown; numpy.show_config() prints it)']


def device_query_command(args, handler):
    if args.gpu is None:
        logger.info('Querying the CPU')
        logger.info('Platform: %s', platform.platform())
        logger.info('Processor: %s', platform.processor() or platform.machine())
        logger.info('CPU cores: %s', os.cpu_count())
        logger.info('Python: %s', platform.python_version())
        logger.info('NumPy: %s', np.__version__)
        for line in _blas_lines():
            logger.info('%s', line)
        try:
            import cupy
            logger.info('CuPy: %s (%d GPU(s))', cupy.__version__,
                        cupy.cuda.runtime.getDeviceCount())
        except Exception:
            logger.info('CuPy: not available (GPU mode needs it: pip install caffelite[gpu])')
        return 0
    device_id = _gpu_id(args.gpu)
    use_gpu(device_id)
    props = backend.xp().cuda.runtime.getDeviceProperties(device_id)
    logger.info('Querying GPUs %d', device_id)
    logger.info('Device id:                     %d', device_id)
    rows = [('Major revision number', 'major'), ('Minor revision number', 'minor'),
            ('Name', 'name'), ('Total global memory', 'totalGlobalMem'),
            ('Total shared memory per block', 'sharedMemPerBlock'),
            ('Total registers per block', 'regsPerBlock'), ('Warp size', 'warpSize'),
            ('Maximum memory pitch', 'memPitch'),
            ('Maximum threads per block', 'maxThreadsPerBlock'),
            ('Maximum dimension of block', 'maxThreadsDim'),
            ('Maximum dimension of grid', 'maxGridSize'), ('Clock rate', 'clockRate'),
            ('Total constant memory', 'totalConstMem'),
            ('Texture alignment', 'textureAlignment'),
            ('Concurrent copy and execution', 'deviceOverlap'),
            ('Number of multiprocessors', 'multiProcessorCount'),
            ('Kernel execution timeout', 'kernelExecTimeoutEnabled')]
    for label, key in rows:
        value = props.get(key, '?')
        if isinstance(value, bytes):
            value = value.decode(errors='replace')
        if isinstance(value, (list, tuple)):
            value = ', '.join(str(v) for v in value)
        logger.info('%-31s%s', label + ':', value)
    return 0


# -- export_onnx ----------------------------------------------------------------------------------
def _add_export_onnx(commands):
    export = commands.add_parser('export_onnx', allow_abbrev=False,
                                 help='export a deploy net and its weights to ONNX')
    _flag(export, 'model', metavar='PROTOTXT', help='the deploy net (Input layers)')
    _flag(export, 'weights', metavar='CAFFEMODEL', help='trained weights (comma-separated list)')
    _flag(export, 'output', metavar='ONNX', help='the ONNX file to write')
    _flag(export, 'opset', type=_int32, default=None, help='ONNX opset (default 17)')
    _flag(export, 'input', action='append', default=[], metavar='NAME:D0,D1,...',
          help='reshape an input first, e.g. data:1,3,227,227; may be repeated')
    _flag(export, 'level', type=_int32, default=None, help='network level')
    _flag(export, 'stage', action='append', default=[],
          help='network stage(s), comma-separated; may be repeated')
    export.set_defaults(func=export_onnx_command, phase='TEST', gpu=None)


def _input_shapes(specs):
    shapes = {}
    for spec in specs:
        name, _, dims = spec.rpartition(':')
        try:
            shapes[name] = tuple(int(d) for d in dims.split(','))
        except ValueError:
            name = ''
        if not name or any(d <= 0 for d in shapes[name]):
            raise CaffeliteError(f'invalid --input "{spec}": give NAME:D0,D1,... such as '
                                 f'data:1,3,227,227')
    return shapes


def export_onnx_command(args, handler):
    """Write the TEST-phase net of --model, with --weights, as an ONNX model."""
    if not args.output:
        raise CaffeliteError('need a file to write: --output model.onnx')
    try:
        from . import onnx as caffelite_onnx
    except ImportError as err:
        raise CaffeliteError(f'ONNX export needs the onnx extra (pip install -e \'.[onnx]\'): '
                             f'{err}') from None
    shapes = _input_shapes(args.input)
    net = _load_net(args)
    opset = args.opset or caffelite_onnx.DEFAULT_OPSET
    model = caffelite_onnx.export(net, args.output, opset=opset, input_shapes=shapes)
    logger.info('Wrote %s: opset %d, %d nodes, inputs %s, outputs %s', args.output, opset,
                len(model.graph.node), ', '.join(i.name for i in model.graph.input),
                ', '.join(o.name for o in model.graph.output))
    return 0


# -- entry point ----------------------------------------------------------------------------------
# Caffe's companion tools (caffelite/caffe_tools/); each parses its own Caffe-style flags.
CAFFE_TOOLS = ('convert_imageset', 'compute_image_mean', 'extract_features',
               'upgrade_net_proto_text', 'upgrade_net_proto_binary', 'upgrade_solver_proto_text')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in CAFFE_TOOLS:
        return importlib.import_module(f'.caffe_tools.{argv[0]}', __package__).main(argv[1:])
    args = build_parser().parse_args(argv)
    handler = glog_handler(sys.stderr)
    try:
        # A diverging run is reported by the solver (iteration and layer), not by NumPy.
        with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
            return args.func(args, handler)
    except (CaffeliteError, OSError) as err:
        if handler.before_emit is not None:
            handler.before_emit()           # erase the progress line
        sys.stdout.flush()
        print(f'caffelite {args.command}: error: {printable(err)}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f'caffelite {args.command}: interrupted', file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)


if __name__ == '__main__':
    sys.exit(main())
