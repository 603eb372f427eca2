"""Test scaffolding (run as a script by tests/test_mpi.py and benchmarks/bench_parallel.py):
a data-parallel training run, the way ``caffelite train`` runs one under mpiexec, with
extras that tests and benchmarks need (recording a blob, dumping the weights, injecting a
fault). Under ``mpiexec -n K`` it trains with K workers; started alone it is one worker.

    mpiexec -n 2 python tests/mpi_harness.py --solver S.prototxt [--snapshot S.solverstate]
        [--bucket-mb 25] [--no-overlap] [--record BLOB] [--dump PREFIX] [--check-replicas]
        [--fail-at RANK:ITER | --kill-at RANK:ITER] [--time]

--dump PREFIX writes PREFIX.rank<R>.npz on every rank: the learnable parameters after
training (``param_<i>``), with --record BLOB the blob's data after every forward
(``record``, one row per iteration), and the solver's final iteration.
--fail-at R:I makes rank R raise at the start of iteration I; --kill-at R:I makes it
SIGKILL itself there (both for fault tests). --time prints, on rank 0, the median seconds
per iteration (start to start, everything included) after --warmup iterations.
"""
import argparse
import logging
import os
import signal
import sys
import time

import numpy as np

from caffelite import parallel
from caffelite.errors import CaffeliteError
from caffelite.solvers.log import glog_handler
from caffelite.solvers.params import read_solver_param


def _rank_iter(text):
    rank, _, it = text.partition(':')
    return int(rank), int(it)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='python tests/mpi_harness.py', description=__doc__)
    p.add_argument('--solver', required=True)
    p.add_argument('--snapshot', help='a .solverstate to resume from (read by rank 0)')
    p.add_argument('--bucket-mb', type=float, default=25.0)
    p.add_argument('--no-overlap', action='store_true',
                   help='reduce every bucket after backward instead of during it')
    p.add_argument('--record', help='record this blob\'s data after every forward')
    p.add_argument('--dump', help='write PREFIX.rank<R>.npz (weights, records)')
    p.add_argument('--check-replicas', action='store_true',
                   help='at the end, log the largest weight difference between ranks')
    p.add_argument('--fail-at', type=_rank_iter, metavar='RANK:ITER')
    p.add_argument('--kill-at', type=_rank_iter, metavar='RANK:ITER')
    p.add_argument('--time', action='store_true',
                   help='print the median seconds per iteration (after --warmup)')
    p.add_argument('--warmup', type=int, default=1, help='iterations left out of --time')
    return p.parse_args(argv)


def _inject_faults(solver, rank, args):
    def hook():
        if args.fail_at and args.fail_at == (rank, solver.iter):
            raise RuntimeError(f'injected failure at iteration {solver.iter}')
        if args.kill_at and args.kill_at == (rank, solver.iter):
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    solver.add_callback(on_start=hook)


def run(args, context):
    param = read_solver_param(args.solver)
    rank = context.rank if context else 0
    solver = parallel.train_solver(param, context, solver_path=args.solver,
                                   bucket_mb=args.bucket_mb, overlap=not args.no_overlap)
    dp = solver.sync                     # the DataParallel; None for one worker
    _inject_faults(solver, rank, args)
    records, stamps = [], []
    if args.record:
        solver.add_callback(on_gradients_ready=lambda: records.append(
            solver.net.blobs[args.record].data.copy()))
    solver.add_callback(on_start=lambda: stamps.append(time.perf_counter()))
    if args.snapshot:
        solver.restore(args.snapshot)    # under MPI: rank 0 reads, broadcasts
    try:
        solver.solve()
    finally:
        parallel.stop_prefetching(solver)
    stamps.append(time.perf_counter())
    if dp is not None and rank == 0:
        stats = dp.reducer.stats
        n = max(stats['iterations'], 1)
        print(f'reduction: {len(dp.reducer.buckets)} buckets, {stats["iterations"]} '
              f'iterations, {stats["issued_during_backward"]} issued during backward, '
              f'{stats["issued_after_backward"]} after; per iteration '
              f'{stats["issue_seconds"] / n * 1e3:.2f} ms packing/issuing in backward, '
              f'{stats["finish_seconds"] / n * 1e3:.2f} ms waiting before the update',
              flush=True)
    if args.check_replicas and dp is not None:
        worst = dp.max_weight_difference()
        if rank == 0:
            print(f'max weight difference between ranks: {worst:g}', flush=True)
    steps = np.diff(stamps)[args.warmup:]
    if args.time and rank == 0 and len(steps):
        print(f'seconds per iteration: {np.median(steps):.6f} (median of {len(steps)}, '
              f'min {steps.min():.6f})', flush=True)
    if args.dump:
        arrays = {f'param_{i}': blob.data for i, blob in enumerate(solver.net.learnable_params)}
        if records:
            arrays['record'] = np.stack(records)
        np.savez(f'{args.dump}.rank{rank}.npz', iter=solver.iter, **arrays)
    return 0


def main(argv=None):
    args = parse_args(argv)
    context = parallel.context_from_environment()
    is_root = context is None or context.is_root
    glog_handler(sys.stdout, logging.INFO if is_root else logging.WARNING)
    if context is None:
        try:
            return run(args, None)
        except CaffeliteError as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
    with parallel.abort_on_error(context):
        return run(args, context)


if __name__ == '__main__':
    sys.exit(main())
