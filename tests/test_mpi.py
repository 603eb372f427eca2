"""Data-parallel training over MPI (caffelite.parallel): record dealing, the equivalence of
K workers at batch B with one worker at batch K x B, faults, and resuming across worker
counts.

The MPI tests start ``mpiexec -n 2 python tests/mpi_harness.py ...`` (mpi4py with the
``mpich`` wheel from PyPI: ``pip install -e .[mpi]``); they are skipped, with the reason,
where mpi4py or mpiexec is missing. The other tests (dealing by rank in the data layers,
buckets, the fault wrapper) need no MPI.
"""
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from google.protobuf import text_format

from caffelite import parallel
from caffelite.parallel.mpi import first_use_by_blob, make_buckets, worker_solver_param
from caffelite.proto import caffelite_pb2 as pb
from caffelite.worker import WorkerContext, current, using
import layer_testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(REPO, 'tests', 'mpi_harness.py')
ROWS = (10, 14)         # two HDF5 files: 24 rows, one epoch = 6 steps of 4 rows
TIMEOUT = 90


# -- fixtures --------------------------------------------------------------------------------

def write_data(folder):
    import h5py
    rng = np.random.default_rng(3)
    start, names = 0, []
    for k, n in enumerate(ROWS):
        x = rng.standard_normal((n, 5)).astype(np.float32)
        x[:, 0] = np.arange(start, start + n)          # column 0: the row's id in the stream
        y = rng.integers(0, 3, n).astype(np.float32)
        with h5py.File(folder / f'part{k}.h5', 'w') as f:
            f['data'], f['label'] = x, y
        names.append(f'part{k}.h5')
        start += n
    (folder / 'train.txt').write_text('\n'.join(names) + '\n')


NET = '''name: "tiny"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "train.txt" batch_size: {batch} {shuffle} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param {{ num_output: 8 weight_filler {{ type: "gaussian" std: 0.3 }}
                               bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
'''

SOLVER = '''net: "{net}"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.01 lr_policy: "step" gamma: 0.5 stepsize: 3
max_iter: {max_iter} iter_size: {iter_size} display: 1 random_seed: 7
snapshot: 2 snapshot_prefix: "{prefix}"
'''


def make_solver(folder, name, batch, iter_size=1, max_iter=6, shuffle=False):
    (folder / f'{name}.prototxt').write_text(
        NET.format(batch=batch, shuffle='shuffle: true' if shuffle else ''))
    path = folder / f'{name}_solver.prototxt'
    path.write_text(SOLVER.format(net=f'{name}.prototxt', max_iter=max_iter,
                                  iter_size=iter_size, prefix=f'{name}_snap'))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    write_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def mpiexec_path():
    pytest.importorskip('mpi4py', reason='mpi4py is not installed: the MPI tests need '
                                         'pip install -e .[mpi] (mpi4py + the mpich wheel)')
    here = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    found = here if os.path.exists(here) else shutil.which('mpiexec')
    if not found:
        pytest.skip('mpi4py is installed but no mpiexec was found (pip install mpich)')
    return found


def launch(folder, *args, n=2, timeout=TIMEOUT):
    """Run ``mpiexec -n N python tests/mpi_harness.py ARGS`` in ``folder``; returns
    (CompletedProcess, seconds)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
    command = [mpiexec_path(), '-n', str(n), sys.executable, HARNESS, *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return done, time.perf_counter() - start


def check_ok(done):
    assert done.returncode == 0, f'exit {done.returncode}\n{done.stdout[-3000:]}\n' \
                                 f'{done.stderr[-3000:]}'


def train_one_worker(solver_path, record=None, snapshot=None):
    """K=1 in this process: (final learnable params, per-iteration records, solver)."""
    from caffelite.solvers import get_solver
    assert current().size == 1
    solver = get_solver(str(solver_path))
    records = []
    if record:
        solver.add_callback(on_gradients_ready=lambda: records.append(
            solver.net.blobs[record].data.copy()))
    if snapshot:
        solver.restore(str(snapshot))
    solver.solve()
    params = [p.data.copy() for p in solver.net.learnable_params]
    for layer in solver.net.layers:
        if hasattr(layer, 'stop_prefetch'):
            layer.stop_prefetch()
    return params, records, solver


def load_dump(prefix, rank):
    with np.load(f'{prefix}.rank{rank}.npz') as f:
        params = [f[f'param_{i}'] for i in range(len([k for k in f.files
                                                       if k.startswith('param_')]))]
        return params, (f['record'] if 'record' in f.files else None), int(f['iter'])


def assert_params_close(a, b, rtol=1e-5, atol=1e-6):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f'param {i}')


# -- no MPI needed ------------------------------------------------------------------------------

def hdf5_layer(folder, batch, shuffle=False):
    text = (f'name: "data" type: "HDF5Data" top: "data" top: "label" hdf5_data_param '
            f'{{ source: "{folder / "train.txt"}" batch_size: {batch} '
            f'{"shuffle: true" if shuffle else ""} }}')
    return layer_testing.data_layer(text, seed=None, prefetch_depth=0)


def read_ids(layer, top, steps):
    ids = []
    for _ in range(steps):
        layer.forward([], top)
        ids.append(top[0].data[:, 0].astype(int).tolist())
    return ids


@pytest.mark.parametrize('shuffle', [False, True])
def test_hdf5_shards_from_the_context_are_disjoint_and_cover_the_epoch(workdir, shuffle):
    total = sum(ROWS)
    seen = {}
    for rank in (0, 1):
        with using(WorkerContext(rank, 2, shared_seed=11)):
            layer, top = hdf5_layer(workdir, 3, shuffle)
            assert (layer.solver_rank, layer.solver_count) == (rank, 2)
            seen[rank] = read_ids(layer, top, total // 6)        # one epoch: 2 x 4 x 3 rows
    first, second = sum(seen[0], []), sum(seen[1], [])
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(total))
    assert current().size == 1                                  # restored after the block


def test_two_workers_at_batch_b_read_what_one_worker_reads_at_2b(workdir):
    one, _ = hdf5_layer(workdir, 4)
    whole = read_ids(one, _, 9)                                 # 1.5 epochs, across files
    halves = []
    for rank in (0, 1):
        with using(WorkerContext(rank, 2)):
            layer, top = hdf5_layer(workdir, 2)
        halves.append(read_ids(layer, top, 9))
    for step in range(9):
        assert sorted(halves[0][step] + halves[1][step]) == sorted(whole[step])


def test_assigned_rank_overrides_the_context_and_test_phase_reads_everything(workdir):
    with using(WorkerContext(1, 3)):
        lp = text_format.Parse('name: "d" type: "Data" top: "data" data_param { source: "x" '
                               'batch_size: 1 }', pb.LayerParameter())
        data = layer_testing.make(lp, dtype=np.float32)
        assert (data.solver_rank, data.solver_count) == (1, 3)   # Data reads the context too
        data.solver_rank = 2
        assert data.solver_rank == 2 and layer_testing.make(lp).solver_rank == 1
        text = (f'name: "t" type: "HDF5Data" top: "data" top: "label" hdf5_data_param '
                f'{{ source: "{workdir / "train.txt"}" batch_size: 4 }}')
        layer, top = layer_testing.data_layer(text, pb.TEST, seed=None, prefetch_depth=0)
        assert read_ids(layer, top, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_imports_run_one_way_layers_below_parallel_and_mpi_below_nccl():
    """The layers read the worker identity from caffelite.worker, never caffelite.parallel;
    mpi.py does not import nccl.py; importing caffelite.parallel loads no MPI."""
    code = ('import sys, caffelite, caffelite.layers\n'
            'assert not [m for m in sys.modules if m.startswith("caffelite.parallel")]\n'
            'import caffelite.parallel, caffelite.parallel.mpi\n'
            'assert "caffelite.parallel.nccl" not in sys.modules\n'
            'assert "mpi4py" not in sys.modules and "mpi4py.MPI" not in sys.modules\n'
            'assert caffelite.parallel.current is caffelite.worker.current\n')
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


def test_launched_by_mpi_reads_the_launcher_environment():
    assert parallel.launched_by_mpi({}) == 0
    assert parallel.launched_by_mpi({'PMI_SIZE': '4', 'PMI_RANK': '1'}) == 4
    assert parallel.launched_by_mpi({'OMPI_COMM_WORLD_SIZE': '8'}) == 8


def test_buckets_follow_backward_order_and_shared_params_wait_for_the_lowest_layer():
    import caffelite
    net = caffelite.Net(text_format.Parse('''
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 } } }
        layer { name: "a" type: "InnerProduct" bottom: "x" top: "a"
                param { name: "shared_w" } param { name: "shared_b" }
                inner_product_param { num_output: 4 } }
        layer { name: "b" type: "InnerProduct" bottom: "a" top: "b"
                inner_product_param { num_output: 4 } }
        layer { name: "c" type: "InnerProduct" bottom: "b" top: "c"
                param { name: "shared_w" } param { name: "shared_b" }
                inner_product_param { num_output: 4 } }''', pb.NetParameter()), pb.TRAIN)
    first = first_use_by_blob(net)
    a_w, a_b, b_w, b_b = net.learnable_params
    assert first[id(a_w)] == 1 and first[id(b_w)] == 2          # shared: final after layer a
    one_each = make_buckets(sorted(net.learnable_params, key=lambda p: -first[id(p)]), 1,
                            lambda p: first[id(p)])
    assert [b.blobs for b in one_each] == [[b_w], [b_b], [a_w], [a_b]]
    assert [b.ready_layer for b in one_each] == [2, 2, 1, 1]
    big = make_buckets(net.learnable_params, 10 ** 6, lambda p: first[id(p)])
    assert len(big) == 1 and big[0].ready_layer == 1 and big[0].buffer.size == 2 * (16 + 4)
    big[0].pack('xdata')
    saved = [p.data.copy() for p in net.learnable_params]
    for p in net.learnable_params:
        p.data[...] = 0
    big[0].unpack('xdata', 2.0)
    for p, s in zip(net.learnable_params, saved):
        np.testing.assert_array_equal(p.data, 2 * s)


def test_only_rank_zero_tests_displays_and_snapshots():
    param = text_format.Parse('net: "n" test_iter: 5 test_interval: 10 display: 20 '
                              'snapshot: 100 test_initialization: true', pb.SolverParameter())
    assert worker_solver_param(param, 0) == param
    other = worker_solver_param(param, 1)
    assert (list(other.test_iter), other.test_interval, other.display, other.snapshot,
            other.snapshot_after_train, other.test_initialization) == ([], 0, 0, 0, False, False)
    assert list(param.test_iter) == [5]                          # the original is untouched


def test_data_layers_that_do_not_deal_are_refused():
    from types import SimpleNamespace
    from caffelite.errors import CaffeliteError
    from caffelite.parallel.mpi import check_data_layers

    def layer(text):
        return layer_testing.make(text, dtype=np.float32)
    window = layer('name: "win" type: "WindowData" top: "data" top: "label" '
                   'window_data_param { source: "windows.txt" batch_size: 2 }')
    dealing = layer('name: "h5" type: "HDF5Data" top: "x" hdf5_data_param { source: "a" '
                    'batch_size: 2 }')
    check_data_layers(SimpleNamespace(layers=[dealing]))
    with pytest.raises(CaffeliteError, match='layer "win" \\(WindowData\\) does not split'):
        check_data_layers(SimpleNamespace(layers=[dealing, window]))


class FakeContext(WorkerContext):
    def __init__(self, rank, size):
        super().__init__(rank, size)
        self.aborted = None

    def abort(self, code=1):
        self.aborted = code


def test_abort_on_error_names_the_rank_and_aborts(monkeypatch, capsys):
    from caffelite.errors import CaffeliteError
    from caffelite.parallel import faults
    monkeypatch.setattr(faults, 'ABORT_DELAY', 0)
    ctx = FakeContext(3, 4)
    with parallel.abort_on_error(ctx):
        raise CaffeliteError('bad prototxt')
    assert ctx.aborted == 1
    assert 'rank 3 failed: CaffeliteError: bad prototxt' in capsys.readouterr().err
    ctx = FakeContext(1, 2)
    with parallel.abort_on_error(ctx):
        sys.exit(2)
    assert ctx.aborted == 1 and 'rank 1 failed' in capsys.readouterr().err
    with pytest.raises(ValueError):                 # a single worker just raises
        with parallel.abort_on_error(FakeContext(0, 1)):
            raise ValueError('x')


# -- over MPI -----------------------------------------------------------------------------------

@pytest.mark.mpi
def test_two_workers_at_batch_b_train_like_one_at_2b(workdir):
    """SGD with momentum, weight decay and a step lr, 6 iterations over 2 files; one bucket
    per parameter blob, reduced during backward. Also: the replicas stay identical, the
    shards are disjoint and cover the epoch, rank 0 alone snapshots."""
    two = make_solver(workdir, 'k2', batch=2)
    one = make_solver(workdir, 'k1', batch=4)
    done, _ = launch(workdir, '--solver', two, '--record', 'data', '--dump', 'k2',
                     '--check-replicas', '--bucket-mb', '1e-6')
    check_ok(done)
    assert 'max weight difference between ranks: 0\n' in done.stdout
    assert 'reduction: 4 buckets, 6 iterations, 24 issued during backward, 0 after' \
        in done.stdout
    p0, rec0, it0 = load_dump('k2', 0)
    p1, rec1, _ = load_dump('k2', 1)
    ref, ref_rec, _ = train_one_worker(one, record='data')
    assert it0 == 6
    for x, y in zip(p0, p1):
        np.testing.assert_array_equal(x, y)
    assert_params_close(p0, ref)
    from caffelite.solvers import get_solver
    initial = get_solver(str(one)).net.learnable_params
    assert max(float(np.abs(p - q.data).max()) for p, q in zip(ref, initial)) > 1e-2
    ids0, ids1 = rec0[:, :, 0].astype(int), rec1[:, :, 0].astype(int)
    for step in range(6):
        assert sorted(ids0[step].tolist() + ids1[step].tolist()) == \
            sorted(np.asarray(ref_rec[step])[:, 0].astype(int).tolist())
    assert not set(ids0.ravel()) & set(ids1.ravel())
    assert sorted(ids0.ravel().tolist() + ids1.ravel().tolist()) == list(range(sum(ROWS)))
    assert sorted(p.name for p in workdir.glob('k2_snap_iter_*')) == [
        f'k2_snap_iter_{i}.{ext}' for i in (2, 4, 6) for ext in ('caffemodel', 'solverstate')]

    # A snapshot rank 0 wrote under K=2 resumes with K=1, exactly as K=1's own snapshot.
    from_k2, _, solver = train_one_worker(one, snapshot=workdir / 'k2_snap_iter_4.solverstate')
    from_k1, _, _ = train_one_worker(one, snapshot=workdir / 'k1_snap_iter_4.solverstate')
    assert solver.iter == 6
    assert_params_close(from_k2, from_k1)


@pytest.mark.mpi
def test_iter_size_accumulates_before_the_reduction(workdir):
    """iter_size 2: only the last forward/backward pass of an iteration reduces."""
    two = make_solver(workdir, 'k2', batch=2, iter_size=2, max_iter=4)
    one = make_solver(workdir, 'k1', batch=4, iter_size=2, max_iter=4)
    done, _ = launch(workdir, '--solver', two, '--dump', 'k2', '--bucket-mb', '1e-6')
    check_ok(done)
    assert 'reduction: 4 buckets, 4 iterations, 16 issued during backward' in done.stdout
    assert_params_close(load_dump('k2', 0)[0], train_one_worker(one)[0])


@pytest.mark.mpi
def test_a_k1_snapshot_resumes_with_two_workers(workdir):
    train_one_worker(make_solver(workdir, 'first', batch=4, max_iter=4))
    one = make_solver(workdir, 'k1', batch=4, max_iter=6)
    two = make_solver(workdir, 'k2', batch=2, max_iter=6)
    done, _ = launch(workdir, '--solver', two, '--snapshot', 'first_snap_iter_4.solverstate',
                     '--dump', 'k2', '--no-overlap')
    check_ok(done)
    assert 'reduction: 1 buckets, 2 iterations, 0 issued during backward, 2 after' \
        in done.stdout
    params, _, last = load_dump('k2', 1)
    assert last == 6
    assert_params_close(params, train_one_worker(
        one, snapshot=workdir / 'first_snap_iter_4.solverstate')[0])


@pytest.mark.mpi
def test_a_raising_worker_ends_the_run_naming_its_rank(workdir):
    two = make_solver(workdir, 'k2', batch=2, max_iter=50)
    done, seconds = launch(workdir, '--solver', two, '--fail-at', '1:3')
    assert done.returncode != 0
    assert 'rank 1 failed: RuntimeError: injected failure at iteration 3' in done.stderr
    assert seconds < 30
    # The last complete snapshot (iteration 2) is intact and resumes.
    assert not list(workdir.glob('k2_snap_iter_4*'))
    one = make_solver(workdir, 'k1', batch=4, max_iter=4)
    assert train_one_worker(one, snapshot=workdir / 'k2_snap_iter_2.solverstate')[2].iter == 4


@pytest.mark.mpi
def test_a_killed_worker_ends_the_run_and_its_pid_maps_to_its_rank(workdir):
    two = make_solver(workdir, 'k2', batch=2, max_iter=50)
    done, seconds = launch(workdir, '--solver', two, '--kill-at', '1:2')
    assert done.returncode != 0 and seconds < 30
    pids = dict(re.findall(r'rank (\d+) = (\d+)', done.stdout))
    output = done.stdout + done.stderr
    assert 'BAD TERMINATION' in output and f'PID {pids["1"]} ' in output


def test_lrcn_image_and_caption_batches_stay_paired_on_every_worker(tmp_path):
    """LRCN captioning pairs ImageData batch j (N images) with HDF5Data batch j (T rows of N
    time-major columns): both deal whole batches, so each worker keeps the pairs whole."""
    import h5py
    from PIL import Image
    T, N, chunks = 3, 2, 5
    lines = []
    for i in range(N * chunks):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f'img{i}.png')
        lines.append(f'img{i}.png {i}')
    (tmp_path / 'images.txt').write_text('\n'.join(lines) + '\n')
    stream = np.repeat(np.arange(N * chunks).reshape(chunks, 1, N), T, axis=1).reshape(-1, N)
    with h5py.File(tmp_path / 'captions.h5', 'w') as f:
        f['input_sentence'] = stream.astype(np.float32)              # (T * chunks, N)
    (tmp_path / 'captions.txt').write_text(str(tmp_path / 'captions.h5') + '\n')
    for rank in (0, 1):
        with using(WorkerContext(rank, 2, shared_seed=5)):
            image, image_top = layer_testing.data_layer(
                f'name: "img" type: "ImageData" top: "data" top: "label" image_data_param '
                f'{{ source: "{tmp_path / "images.txt"}" root_folder: "{tmp_path}/" '
                f'batch_size: {N} }}', seed=None, prefetch_depth=0)
            caption, caption_top = layer_testing.data_layer(
                f'name: "cap" type: "HDF5Data" top: "input_sentence" hdf5_data_param '
                f'{{ source: "{tmp_path / "captions.txt"}" batch_size: {T} }}', seed=None,
                prefetch_depth=0)
        for step in range(4):                      # wraps around the 5 batches
            image.forward([], image_top)
            caption.forward([], caption_top)
            labels = image_top[1].data.astype(int).tolist()
            assert (caption_top[0].data.astype(int) == labels).all()   # every time step
            batch = (rank + 2 * step) % chunks
            assert labels == list(range(batch * N, batch * N + N))


def _gpu_count():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - no CuPy, no driver or no device: no GPU here
        return 0


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_count() < 2, reason='NCCL training needs CuPy and at least 2 GPUs')
def test_nccl_two_gpus_train_like_one_gpu_at_twice_the_batch(workdir):
    single = make_solver(workdir, 'single', batch=4)
    double = make_solver(workdir, 'double', batch=2)
    for solver, gpus in ((single, '0'), (double, '0,1')):
        result = subprocess.run([sys.executable, '-m', 'caffelite', 'train', '--solver',
                                 str(solver), '--gpu', gpus], cwd=workdir, capture_output=True,
                                text=True, timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
    import caffelite as caffe
    nets = [caffe.Net(str(workdir / f'{n}.prototxt'), caffe.TRAIN,
                      weights=str(workdir / f'{n}_snap_iter_6.caffemodel'))
            for n in ('single', 'double')]
    for name in nets[0].params:
        for a, b in zip(nets[0].params[name], nets[1].params[name]):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-5)
