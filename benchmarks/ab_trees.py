"""One net under two caffelite variants, interleaved on one pinned CPU: an A/B test for a
change to caffelite itself.

With ``--threads N`` (N > 1) the workers get N BLAS threads each and are not pinned, and the
parent waits ``--pause`` seconds before every iteration (bench_vs_caffe.py's reason: an idle
OpenBLAS thread spins for a while after its last call).

A variant is a checkout of the repository (``--a PATH``, ``--b PATH``) and/or environment
settings (``--env-a K=V,...``, ``--env-b K=V,...``; e.g. ``CAFFELITE_NUMBA=0``). Each runs in
its own worker process with one BLAS thread, both pinned to the same CPU (``--cpu``, through
``os.sched_setaffinity`` where the OS has it), and the parent asks them for one iteration at a time, in turn (the order alternates
every round). On a VM whose speed drifts by tens of percent over minutes, this gives a few
percent where separate runs give twenty. An iteration is bench_vs_caffe.py's: clear the
parameter diffs, forward, backward, on the same inputs (``--net``: one of its nets).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab_trees.py \\
        --net lrcn --a ../old-checkout [--b .] [--env-a K=V,...] [--env-b K=V,...] \\
        [--runs 9] [--warmup 2] [--cpu 0] [--threads 1] [--pause 0.3]

Prints, per variant, the median wall and CPU ms and which caffelite it imported, then b / a.

This file is also the worker: ``ab_trees.py --worker NET CPU`` (caffelite from ``$PYTHONPATH``;
CPU -1: not pinned).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(net_name, cpu):
    """Pin this process to ``cpu`` (unless it is -1), build ``net_name``
    (bench_vs_caffe.build_net), then answer each input line with one iteration's [wall ms,
    CPU ms]."""
    import tempfile
    if hasattr(os, 'sched_setaffinity') and int(cpu) >= 0:
        os.sched_setaffinity(0, {int(cpu)})
    sys.path.insert(1, HERE)
    import bench_vs_caffe
    import caffelite
    text, arrays = bench_vs_caffe.build_net(net_name)
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, 'net.prototxt')
        with open(path, 'w') as f:
            f.write(text)
        caffelite.set_random_seed(1)
        net = caffelite.Net(path, caffelite.TRAIN)
    bench_vs_caffe.set_inputs(net, arrays)
    print(json.dumps({'caffelite': os.path.dirname(os.path.dirname(caffelite.__file__))}),
          flush=True)
    for _ in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        net.clear_param_diffs()
        net.forward_backward()
        print(json.dumps([(time.perf_counter() - wall) * 1e3,
                          (time.process_time() - cpu) * 1e3]), flush=True)


def _settings(text):
    """'K=V,K2=V2' -> {K: V, K2: V2}."""
    pairs = [item.split('=', 1) for item in text.split(',') if item]
    bad = [item for item in pairs if len(item) != 2]
    if bad:
        raise SystemExit(f'--env-a / --env-b take K=V[,K=V...], got {text!r}')
    return dict(pairs)


def start(net_name, tree, settings, cpu, threads):
    env = {k: v for k, v in os.environ.items()
           if k not in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE')}
    for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        env[var] = str(threads)
    env['PYTHONPATH'] = os.path.abspath(tree)
    env.update(settings)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--worker', net_name,
                             str(cpu)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f'the worker for {tree} ended (exit {proc.wait()})')
    return proc, json.loads(line)['caffelite']


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--net', default='lrcn')
    ap.add_argument('--a', default=os.path.dirname(HERE), help='checkout A (default: this one)')
    ap.add_argument('--b', default=os.path.dirname(HERE), help='checkout B (default: this one)')
    ap.add_argument('--env-a', default='', help='K=V[,K=V...] for A')
    ap.add_argument('--env-b', default='', help='K=V[,K=V...] for B')
    ap.add_argument('--runs', type=int, default=9)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--cpu', type=int, default=0, help='the CPU both workers are pinned to')
    ap.add_argument('--threads', type=int, default=1,
                    help='BLAS threads per worker; more than one: not pinned')
    ap.add_argument('--pause', type=float, default=None,
                    help='seconds to wait before each iteration (default 0.3 with more than '
                         'one thread, else 0)')
    args = ap.parse_args(argv)
    cpu = args.cpu if args.threads == 1 else -1
    sys.path.insert(1, HERE)
    from bench_vs_caffe import default_pause
    pause = args.pause if args.pause is not None else default_pause(args.threads)
    variants = {'a': (args.a, _settings(args.env_a)), 'b': (args.b, _settings(args.env_b))}
    workers = {key: start(args.net, tree, settings, cpu, args.threads)
               for key, (tree, settings) in variants.items()}
    times = {key: [] for key in workers}
    try:
        for it in range(args.warmup + args.runs):
            for key in ('a', 'b') if it % 2 == 0 else ('b', 'a'):
                proc = workers[key][0]
                time.sleep(pause)
                proc.stdin.write('step\n')
                proc.stdin.flush()
                reply = json.loads(proc.stdout.readline())
                if it >= args.warmup:
                    times[key].append(reply)
    finally:
        for proc, _ in workers.values():
            proc.kill()
    medians = {}
    for key, (tree, settings) in variants.items():
        wall = statistics.median(t[0] for t in times[key])
        cpu_ms = statistics.median(t[1] for t in times[key])
        medians[key] = wall
        extra = ' ' + ','.join(f'{k}={v}' for k, v in settings.items()) if settings else ''
        print(f'{key}: wall {wall:8.2f} ms  cpu {cpu_ms:8.2f} ms  caffelite {workers[key][1]}{extra}')
    where = f'one thread, CPU {cpu}' if cpu >= 0 else f'{args.threads} threads, not pinned'
    print(f'{args.net}: b / a = {medians["b"] / medians["a"]:.3f} (median of {args.runs}, '
          f'{where})')


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--worker':
        worker(*sys.argv[2:])
    else:
        main()
