"""The ``caffelite`` command (``python -m caffelite``): train / resume / fine-tune, test, time,
device_query, signals, and the error paths (one message on stderr after the log, exit code 1)."""
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from caffelite.cli import Progress, build_parser
import layer_testing
from cli_testing import error_lines, log_lines

REPO = Path(__file__).resolve().parents[1]

NET = layer_testing.TINY_NET

SOLVER = '''
net: "net.prototxt"
base_lr: 0.01
momentum: 0.9
lr_policy: "fixed"
display: 2
max_iter: 4
snapshot: 2
snapshot_prefix: "snaps/tiny"
test_iter: 2
test_interval: 2
random_seed: 3
'''


def caffelite(*args, cwd, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, '-m', 'caffelite', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def work(tmp_path):
    (tmp_path / 'net.prototxt').write_text(NET)
    (tmp_path / 'solver.prototxt').write_text(SOLVER)
    return tmp_path


def assert_fails(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert 'Traceback' not in result.stderr, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr                # one line besides the log
    message = lines[0]
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- train, resume, fine-tune ---------------------------------------------------------------------

def test_train_resume_finetune_and_log_format(work):
    result = caffelite('train', '-solver', 'solver.prototxt', cwd=work)
    assert result.returncode == 0, result.stderr
    out = result.stderr                                  # the log, as Caffe's, on stderr
    number = r'[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?'
    glog = r'I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] '
    for pattern in (rf'Iteration 2 \({number} iter/s, {number}s/2 iters\), loss = {number}',
                    rf'    Train net output #0: loss = {number} \(\* 1 = {number} loss\)',
                    r'Iteration 2, lr = 0\.01',
                    r'Iteration 2, Testing net \(#0\)',
                    rf'    Test net output #0: loss = {number} \(\* 1 = {number} loss\)',
                    r'Snapshotting to binary proto file snaps/tiny_iter_2\.caffemodel',
                    r'Optimization Done\.'):
        assert re.search('^' + glog + pattern + '$', out, re.M), pattern
    snaps = sorted(os.listdir(work / 'snaps'))
    assert snaps == ['tiny_iter_2.caffemodel', 'tiny_iter_2.solverstate',
                     'tiny_iter_4.caffemodel', 'tiny_iter_4.solverstate']

    resumed = caffelite('train', '--solver=solver.prototxt',
                        '--snapshot', 'snaps/tiny_iter_2.solverstate', cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    assert 'Resuming from snaps/tiny_iter_2.solverstate' in resumed.stderr
    assert 'Iteration 0' not in resumed.stderr and 'Iteration 2, lr' in resumed.stderr

    tuned = caffelite('train', '-solver', 'solver.prototxt',
                      '-weights', 'snaps/tiny_iter_4.caffemodel', cwd=work)
    assert tuned.returncode == 0, tuned.stderr
    assert 'Finetuning from snaps/tiny_iter_4.caffemodel' in tuned.stderr

    both = caffelite('train', '-solver', 'solver.prototxt', '-weights', 'a.caffemodel',
                     '-snapshot', 'b.solverstate', cwd=work)
    assert_fails(both, 'not both')


def test_the_log_goes_to_stderr_as_caffes_and_glog_minloglevel_quiets_it(work):
    result = caffelite('train', '-solver', 'solver.prototxt', cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ''                             # `2> train.log` keeps the log
    assert any('Optimization Done.' in line for line in log_lines(result.stderr))
    env = dict(os.environ, GLOG_minloglevel='1')
    quiet = subprocess.run([sys.executable, '-m', 'caffelite', 'train', '-solver',
                            'solver.prototxt'], cwd=work, capture_output=True, text=True,
                           env=dict(env, PYTHONPATH=str(REPO)), timeout=120)
    assert quiet.returncode == 0 and quiet.stdout == '' and quiet.stderr == '', quiet.stderr
    bad = subprocess.run([sys.executable, '-m', 'caffelite', 'train', '-solver', 'none.txt'],
                         cwd=work, capture_output=True, text=True,
                         env=dict(env, PYTHONPATH=str(REPO)), timeout=120)
    assert_fails(bad, 'none.txt')                          # errors still show


def test_sighup_snapshots_and_sigint_stops(work):
    # No test net: a SIGINT during a test pass would stop at the SIGHUP snapshot's iteration.
    (work / 'solver.prototxt').write_text(
        SOLVER.replace('max_iter: 4', 'max_iter: 100000000').replace('display: 2', 'display: 1')
        .replace('snapshot: 2', 'snapshot: 0').replace('test_iter: 2', '')
        .replace('test_interval: 2', ''))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, '-m', 'caffelite', 'train', '-solver',
                             'solver.prototxt'], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []

    def wait_for(text):
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            assert line, ''.join(lines)
            lines.append(line)
            if text in line:
                return line
        raise AssertionError(f'no "{text}" in time')

    try:
        wait_for('Iteration 3,')
        proc.send_signal(signal.SIGHUP)
        first = wait_for('Snapshotting solver state')
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines.append(out)
    text = ''.join(lines)
    assert proc.returncode == 0, text
    assert 'Optimization stopped early.' in text
    states = sorted(n for n in os.listdir(work / 'snaps') if n.endswith('.solverstate'))
    assert len(states) == 2, states                       # SIGHUP's, then SIGINT's final one
    assert states[0].split('.')[0] in first or states[1].split('.')[0] in first


def test_progress_display_erases_itself():
    class FakeSolver:
        iter = 0
        param = type('P', (), {'max_iter': 10})()

    stream, solver = io.StringIO(), FakeSolver()
    progress = Progress(solver, stream)
    progress.on_start()                                   # starts the clock
    solver.iter = 5
    time.sleep(0.01)
    progress.last_draw = 0
    progress.on_start()
    assert re.search(r'\r\[5/10\] [0-9.]+ iter/s, \d\d:\d\d:\d\d left\x1b\[K$', stream.getvalue())
    progress.clear()
    assert stream.getvalue().endswith('\r\x1b[K')


# -- error paths ----------------------------------------------------------------------------------

def test_missing_solver_file(work):
    assert_fails(caffelite('train', '--solver', 'nope.prototxt', cwd=work),
                 'nope.prototxt', 'does not exist')
    assert_fails(caffelite('train', cwd=work), 'need a solver definition')


def test_unknown_solver_type(work):
    (work / 'solver.prototxt').write_text(SOLVER + 'type: "Momentum"\n')
    assert_fails(caffelite('train', '--solver', 'solver.prototxt', cwd=work),
                 'unknown solver type "Momentum"', 'SGD', 'Adam')


def test_unknown_lr_policy(work):
    (work / 'solver.prototxt').write_text(SOLVER.replace('"fixed"', '"cosine"'))
    assert_fails(caffelite('train', '--solver', 'solver.prototxt', cwd=work),
                 'unknown lr_policy "cosine"', 'multistep')


def test_test_iter_count_mismatch(work):
    (work / 'solver.prototxt').write_text(
        SOLVER.replace('net: "net.prototxt"', 'train_net: "net.prototxt"\n'
                       'test_net: "net.prototxt"\ntest_net: "net.prototxt"'))
    assert_fails(caffelite('train', '--solver', 'solver.prototxt', cwd=work),
                 'test_iter must be given once for each test net', '2 test net(s)',
                 '1 test_iter')


def test_missing_net_file_names_both_places(work, tmp_path):
    (work / 'solver.prototxt').write_text(SOLVER.replace('net.prototxt', 'gone.prototxt'))
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    message = assert_fails(caffelite('train', '--solver', str(work / 'solver.prototxt'),
                                     cwd=elsewhere), 'net file "gone.prototxt" not found')
    assert str(elsewhere / 'gone.prototxt') in message and str(work / 'gone.prototxt') in message


def test_parse_error_names_file_and_line(work):
    (work / 'solver.prototxt').write_text(SOLVER + 'base_lr 0.1 }\n')
    message = assert_fails(caffelite('train', '--solver', 'solver.prototxt', cwd=work),
                           'solver.prototxt')
    assert re.search(r'\b13:\d+\b', message), message          # line 13


def test_snapshot_from_a_different_net(work):
    assert caffelite('train', '--solver', 'solver.prototxt', cwd=work).returncode == 0
    other = work / 'other'
    other.mkdir()
    (other / 'other_net.prototxt').write_text(NET.replace('"ip"', '"fc"'))
    (other / 'solver.prototxt').write_text(SOLVER.replace('net.prototxt', 'other_net.prototxt'))
    assert_fails(caffelite('train', '--solver', 'other/solver.prototxt',
                           '--snapshot', 'snaps/tiny_iter_4.solverstate', cwd=work),
                 'snaps/tiny_iter_4.solverstate', 'different net')


def test_non_finite_loss_stops_training(work):
    (work / 'solver.prototxt').write_text(SOLVER.replace('base_lr: 0.01', 'base_lr: 1e38'))
    assert_fails(caffelite('train', '--solver', 'solver.prototxt', cwd=work),
                 'Iteration 1: the loss is', 'the first non-finite output is top')


def test_gpu_without_cupy_is_a_clear_error(work, monkeypatch):
    monkeypatch.delenv('CAFFELITE_FAKE_GPU', raising=False)   # the real CuPy, not the fake
    try:
        import cupy  # noqa: F401
        pytest.skip('CuPy is installed here')
    except ImportError:
        pass
    assert_fails(caffelite('train', '--solver', 'solver.prototxt', '--gpu', '0', cwd=work),
                 'CuPy')
    assert_fails(caffelite('device_query', '-gpu', '0', cwd=work), 'CuPy')
    assert_fails(caffelite('time', '--model', 'net.prototxt', '--gpu', '0,1', cwd=work),
                 'several GPUs')


# -- test, time, device_query ---------------------------------------------------------------------

def test_test_command_prints_batches_and_means(work):
    from caffelite.net import Net
    Net(str(work / 'net.prototxt'), 0).save(str(work / 'w.caffemodel'))
    result = caffelite('test', '-model', 'net.prototxt', '-weights', 'w.caffemodel',
                       '-iterations', '3', cwd=work)
    assert result.returncode == 0, result.stderr
    batches = re.findall(r'\] Batch (\d), loss = ([0-9.e+-]+)$', result.stderr, re.M)
    assert [b[0] for b in batches] == ['0', '1', '2']
    mean = np.mean([float(b[1]) for b in batches])
    final = re.search(r'\] loss = ([0-9.e+-]+) \(\* 1 = ([0-9.e+-]+) loss\)$', result.stderr, re.M)
    assert float(final.group(1)) == pytest.approx(mean, rel=1e-4)
    assert re.search(r'\] Loss: ([0-9.e+-]+)$', result.stderr, re.M)
    assert_fails(caffelite('test', '-model', 'net.prototxt', cwd=work), 'need model weights')
    assert_fails(caffelite('test', '-model', 'missing.prototxt', '-weights', 'w.caffemodel',
                           cwd=work), 'missing.prototxt')


def test_time_command_reports_every_layer(work):
    result = caffelite('time', '--model', 'net.prototxt', '--iterations', '3', cwd=work)
    assert result.returncode == 0, result.stderr
    out = result.stderr                                  # the log, as Caffe's, on stderr
    for layer in ('data', 'ip', 'loss'):
        assert re.search(rf'\] +{layer}\tforward: [0-9.e+-]+ ms\.$', out, re.M), layer
        assert re.search(rf'\] +{layer}\tbackward: [0-9.e+-]+ ms\.$', out, re.M), layer
    for total in ('Average Forward pass', 'Average Backward pass', 'Average Forward-Backward',
                  'Total Time'):
        assert re.search(rf'\] {total}: [0-9.e+-]+ ms\.$', out, re.M), total
    assert len(re.findall(r'Iteration: \d forward-backward time', out)) == 3


def test_device_query_on_cpu(work):
    result = caffelite('device_query', cwd=work)
    assert result.returncode == 0, result.stderr
    assert f'NumPy: {np.__version__}' in result.stderr and 'CPU cores:' in result.stderr


def test_flags_take_one_or_two_dashes():
    parser = build_parser()
    for argv in (['train', '-solver', 's.prototxt', '-gpu', '0', '-stage', 'a,b', '-level', '2'],
                 ['train', '--solver=s.prototxt', '--gpu', '0', '--stage', 'a', '--stage', 'b',
                  '--level=2']):
        args = parser.parse_args(argv)
        assert (args.solver, args.gpu, args.level) == ('s.prototxt', '0', 2)
    args = parser.parse_args(['test', '-model', 'm', '-weights', 'w', '-iterations', '7',
                              '-phase', 'train'])
    assert (args.model, args.weights, args.iterations, args.phase) == ('m', 'w', 7, 'TRAIN')
    assert parser.parse_args(['time', '-model', 'm']).phase == 'TRAIN'
    assert parser.parse_args(['train', '-solver', 's']).sigint_effect == 'stop'
    assert parser.parse_args(['train', '-solver', 's']).sighup_effect == 'snapshot'


# -- tools: the digits set, the LeNet example, the log plotter ------------------------------------

def test_make_digits_and_the_lenet_example(tmp_path, monkeypatch):
    """The shipped LeNet solver/net run on a small generated set (from another folder)."""
    from tools import make_digits
    from caffelite.solver import get_solver
    from caffelite.solvers.params import read_solver_param
    assert make_digits.main(['--out', str(tmp_path / 'data' / 'digits'), '--train', '70',
                             '--test', '30', '--seed', '3']) == 0
    import h5py
    with h5py.File(tmp_path / 'data' / 'digits' / 'digits_train.h5', 'r') as f:
        data, label = f['data'][()], f['label'][()]
    assert data.shape == (70, 1, 28, 28) and data.dtype == np.float32
    assert 0 <= data.min() and data.max() <= 1 and data.std() > 0.1
    assert set(np.unique(label)) <= set(range(10)) and len(np.unique(label)) > 5
    assert (tmp_path / 'data' / 'digits' / 'train.txt').read_text() == 'digits_train.h5\n'

    monkeypatch.chdir(tmp_path)
    path = str(REPO / 'prototxt' / 'lenet_solver.prototxt')
    param = read_solver_param(path)
    assert (param.base_lr, param.momentum, param.lr_policy) == (
        pytest.approx(0.01), pytest.approx(0.9), 'inv')
    param.max_iter, param.test_iter[0], param.snapshot = 2, 1, 0
    param.snapshot_after_train = False
    solver = get_solver(param, solver_path=path)
    assert [n for n in solver.net._layer_names] == ['mnist', 'conv1', 'pool1', 'conv2', 'pool2',
                                                    'ip1', 'relu1', 'ip2', 'loss']
    assert [p.shape for p in solver.net.learnable_params] == [
        (20, 1, 5, 5), (20,), (50, 20, 5, 5), (50,), (500, 800), (500,), (10, 500), (10,)]
    solver.solve()
    assert solver.iter == 2
    assert 'accuracy' in solver.test_nets[0].outputs


LOG = '''I1125 10:00:00.000000  1 solver.cpp:1] Solving LeNet
I1125 10:00:00.100000  1 solver.cpp:2] Iteration 0, Testing net (#0)
I1125 10:00:00.200000  1 solver.cpp:3]     Test net output #0: accuracy = 0.1
I1125 10:00:00.200000  1 solver.cpp:3]     Test net output #1: loss = 2.3 (* 1 = 2.3 loss)
I1125 10:00:00.300000  1 solver.cpp:4] Iteration 0 (0 iter/s, 0.1s/100 iters), loss = 2.31
I1125 10:00:00.300000  1 solver.cpp:4]     Train net output #0: loss = 2.31 (* 1 = 2.31 loss)
I1125 10:00:01.300000  1 solver.cpp:4] Iteration 100 (100 iter/s, 1s/100 iters), loss = 0.5
I1125 10:00:02.100000  1 solver.cpp:2] Iteration 200, Testing net (#0)
I1125 10:00:02.200000  1 solver.cpp:3]     Test net output #0: accuracy = 0.9
I1125 10:00:02.200000  1 solver.cpp:3]     Test net output #1: loss = 0.3 (* 1 = 0.3 loss)
I1125 10:00:02.300000  1 solver.cpp:4] Iteration 200, loss = 0.25
'''


def test_plot_training_log(tmp_path):
    from tools import plot_training_log
    series = plot_training_log.parse_log(LOG.splitlines())
    assert series['train loss'] == [(0, 2.31), (100, 0.5), (200, 0.25)]
    assert series['test accuracy'] == [(0, 0.1), (200, 0.9)]
    assert series['test loss'] == [(0, 2.3), (200, 0.3)]
    (tmp_path / 'train.log').write_text(LOG)
    png = tmp_path / 'curves.png'
    assert plot_training_log.main([str(tmp_path / 'train.log'), str(png)]) == 0
    from PIL import Image
    with Image.open(png) as image:
        assert image.format == 'PNG' and image.size[0] > 500
        colours = np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 3                          # curves drawn in colour
    (tmp_path / 'empty.log').write_text('nothing here\n')
    assert plot_training_log.main([str(tmp_path / 'empty.log'), str(png)]) == 1


def test_caffe_tools_run_as_subcommands(work):
    old = work / 'old.prototxt'
    old.write_text('name: "v1"\nlayers { name: "ip" type: INNER_PRODUCT bottom: "data" '
                   'top: "ip" blobs_lr: 2 inner_product_param { num_output: 3 } }\n')
    result = caffelite('upgrade_net_proto_text', 'old.prototxt', 'new.prototxt', cwd=work)
    assert result.returncode == 0, result.stderr
    text = (work / 'new.prototxt').read_text()
    assert 'type: "InnerProduct"' in text and 'lr_mult: 2' in text
    assert caffelite('compute_image_mean', cwd=work).returncode != 0
