"""The side-by-side benchmark runs without a Caffe build and reports caffelite's time in BLAS
(a smoke test: no timing is asserted; speed is measured in benchmarks/, not in tests)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_vs_caffe_runs_without_caffe_and_times_blas():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'benchmarks', 'bench_vs_caffe.py'), '--nets',
         'lenet', '--no-caffe', '--runs', '1', '--warmup', '0', '--threads', '1'],
        capture_output=True, text=True, timeout=300, check=True)
    header, row = result.stdout.strip().splitlines()[-2:]
    assert 'BLAS ms' in header and 'floor' in header
    cells = row.split()
    assert cells[0] == 'lenet'
    total, blas = float(cells[1]), float(cells[5])
    assert 0 < blas < total                  # LeNet's convolutions and InnerProducts call BLAS
    assert cells[2:5] == ['-', '-', '-'] and cells[6] == '-'   # no Caffe column, no floor


@pytest.mark.parametrize('threads, where', [(1, 'one thread, CPU 0'),
                                            (2, '2 threads, not pinned')])
def test_ab_trees_compares_two_variants_of_one_checkout(threads, where):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'benchmarks', 'ab_trees.py'), '--net', 'lenet',
         '--env-a', 'CAFFELITE_NUMBA=0', '--runs', '1', '--warmup', '0',
         '--threads', str(threads), '--pause', '0'],
        capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith('a: wall') and 'CAFFELITE_NUMBA=0' in lines[0]
    assert lines[1].startswith('b: wall') and ROOT in lines[1]
    assert lines[2].startswith('lenet: b / a = ') and lines[2].endswith(f', {where})')
