"""Bad input gives one clear message (file, line, layer, cause) and exit 1, never a traceback:
one test per cause the issue-15 fuzz run found (the seeded fuzzer itself is test_fuzz.py)."""
import os

import h5py
import numpy as np
import pytest

import caffelite
from caffelite import cli, io
from caffelite.errors import CaffeliteError
from caffelite.proto import caffelite_pb2 as pb
from caffelite.solvers import base as solver_base
import layer_testing
from cli_testing import error_lines

NET = layer_testing.TINY_NET
SOLVER = '''net: "net.prototxt"
base_lr: 0.01
lr_policy: "fixed"
max_iter: 2
snapshot_prefix: "snaps/tiny"
random_seed: 1
'''


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'net.prototxt').write_text(NET)
    (tmp_path / 'solver.prototxt').write_text(SOLVER)
    return tmp_path


def fails(capsys, argv, *fragments):
    """Run the command line in-process: exit status 1, one error line naming ``fragments``."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    lines = error_lines(err)
    assert len(lines) == 1, err                          # one line besides the log
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def solver_snapshot(work):
    solver = caffelite.SGDSolver('solver.prototxt')
    solver.step(1)
    return solver, solver.snapshot()


# -- bytes that are not UTF-8 ----------------------------------------------------------------
def test_latin1_comment_is_harmless(work, capsys):
    (work / 'net.prototxt').write_bytes(b'# r\xe9seau de Caf\xe9\n' + NET.encode())
    assert cli.main(['time', '--model', 'net.prototxt', '--iterations', '1']) == 0
    capsys.readouterr()
    (work / 'upgraded.prototxt').unlink(missing_ok=True)
    assert cli.main(['upgrade_net_proto_text', 'net.prototxt', 'upgraded.prototxt']) == 0


def test_stray_byte_outside_a_comment_is_a_parse_error_with_its_line(work, capsys):
    (work / 'net.prototxt').write_bytes(NET.encode().replace(b'name: "ip"', b'na\xffme: "ip"'))
    fails(capsys, ['time', '--model', 'net.prototxt'], 'net.prototxt', 'cannot parse',
          'byte 0xff at line 5')


def test_binary_file_as_model_or_as_the_solvers_net(work, capsys):
    _, (weights, _) = solver_snapshot(work)
    fails(capsys, ['time', '--model', weights], weights, 'cannot parse', 'not UTF-8')
    (work / 'solver.prototxt').write_text(SOLVER.replace('net.prototxt', weights))
    fails(capsys, ['train', '--solver', 'solver.prototxt'], weights, 'not UTF-8')
    fails(capsys, ['upgrade_net_proto_text', weights, 'out.prototxt'], weights, 'not UTF-8')
    fails(capsys, ['upgrade_solver_proto_text', weights, 'out.prototxt'], weights,
          'cannot parse as SolverParameter')


def test_parse_error_does_not_echo_a_huge_line(work, capsys):
    (work / 'net.prototxt').write_text('layer { name: "' + 'x' * 50000 + '" type: }\n')
    line = fails(capsys, ['time', '--model', 'net.prototxt'], 'net.prototxt', 'cannot parse')
    assert len(line) < 1000


# -- sizes -----------------------------------------------------------------------------------
@pytest.mark.parametrize('layer', [
    'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1000000 '
    'dim: 1000000 } } }',
    'layer { name: "in" type: "DummyData" top: "x" dummy_data_param { shape { dim: 1000000 '
    'dim: 1000000 } } }'])
def test_a_blob_over_int_max_is_refused_at_set_up(work, capsys, layer):
    (work / 'big.prototxt').write_text(layer)
    fails(capsys, ['time', '--model', 'big.prototxt'], 'layer "in"', '1000000000000 elements',
          'INT_MAX')


def test_blob_reshape_caps_the_count():
    blob = caffelite.Blob((2, 3))
    with pytest.raises(ValueError, match='INT_MAX'):
        blob.reshape(2 ** 16, 2 ** 16)
    with pytest.raises(ValueError, match='INT_MAX'):     # no int64 wrap-around
        blob.reshape(2 ** 32, 2 ** 32, 2 ** 32)
    assert blob.shape == (2, 3)


# -- HDF5 weights ----------------------------------------------------------------------------
def _h5(path, build):
    with h5py.File(path, 'w') as f:
        build(f)
    return str(path)


@pytest.mark.parametrize('build, fragment', [
    (lambda f: f.create_group('data').create_group('ip').create_dataset('w', data=[1.0]),
     'named 0..0'),
    (lambda f: f.create_group('data').create_dataset('ip', data=[1.0]), 'data/ip is a dataset'),
    (lambda f: f.create_dataset('data', data=[1.0]), 'no "data" group'),
    (lambda f: f.create_group('data').create_group('ip').create_group('0'),
     'data/ip/0 is not a numeric dataset')])
def test_hdf5_weights_with_an_unexpected_layout(work, capsys, build, fragment):
    path = _h5(work / 'w.h5', build)
    fails(capsys, ['test', '--model', 'net.prototxt', '--weights', path, '--iterations', '1'],
          path, fragment)


def test_truncated_or_non_hdf5_weights(work, capsys):
    good = _h5(work / 'good.h5', lambda f: f.create_group('data').create_group('ip')
               .create_dataset('0', data=np.zeros((2, 3))))
    (work / 'cut.h5').write_bytes(open(good, 'rb').read()[:300])
    (work / 'text.h5').write_text('not hdf5')
    for name in ('cut.h5', 'text.h5'):
        fails(capsys, ['test', '--model', 'net.prototxt', '--weights', name,
                       '--iterations', '1'], f'weights file {name}', 'HDF5')


def test_count_mismatch_says_count(work):
    net = caffelite.Net('net.prototxt', caffelite.TRAIN)
    param = io.net_to_proto(net)
    blob = [layer for layer in param.layer if layer.name == 'ip'][0].blobs[0]
    del blob.data[3:]
    (work / 'w.caffemodel').write_bytes(param.SerializeToString())
    with pytest.raises(CaffeliteError) as err:
        net.copy_from('w.caffemodel')
    assert 'count' in str(err.value) and 'shape mismatch' not in str(err.value)


# -- solver states ---------------------------------------------------------------------------
@pytest.mark.parametrize('build, fragment', [
    (lambda f: (f.create_dataset('iter', data=np.bytes_(b'abc')), f.create_group('history')),
     '"iter" must hold one integer'),
    (lambda f: (f.create_dataset('iter', data=[1.5]), f.create_group('history')),
     '"iter" must hold one integer'),
    (lambda f: (f.create_dataset('iter', data=[1]), f.create_dataset('current_step', data=[0]),
                f.create_dataset('learned_net', data=[2.0]), f.create_group('history')),
     '"learned_net" must be a string'),
    (lambda f: f.create_dataset('history', data=[0]), 'no "history" group'),
    (lambda f: f.create_group('history').create_group('0'), 'history/0 is not a numeric')])
def test_hdf5_solverstate_with_wrong_types(work, capsys, build, fragment):
    path = _h5(work / 's.solverstate.h5', build)
    fails(capsys, ['train', '--solver', 'solver.prototxt', '--snapshot', path], path, fragment)


def test_binary_solverstate_with_a_damaged_history_blob(work, capsys):
    state = pb.SolverState(iter=1)
    state.history.add().shape.dim.extend([2, 3])
    (work / 's.solverstate').write_bytes(state.SerializeToString())
    fails(capsys, ['train', '--solver', 'solver.prototxt', '--snapshot', 's.solverstate'],
          's.solverstate', 'history blob 0')


# -- snapshots -------------------------------------------------------------------------------
def test_full_disk_on_an_hdf5_snapshot_names_the_file(work, monkeypatch):
    (work / 'solver.prototxt').write_text(SOLVER + 'snapshot_format: HDF5\n')
    solver = caffelite.SGDSolver('solver.prototxt')

    def no_space(*args, **kwargs):
        raise RuntimeError("Can't write data (file write failed: No space left on device)")
    monkeypatch.setattr(h5py.Group, 'create_dataset', no_space)
    with pytest.raises(CaffeliteError, match=r'snaps/tiny_iter_0\.caffemodel\.h5.*No space'):
        solver.snapshot()


def test_a_failed_solverstate_write_names_the_solverstate(work, monkeypatch):
    solver = caffelite.SGDSolver('solver.prototxt')

    def no_space(path, state):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(solver_base, 'write_state_binary', no_space)
    with pytest.raises(CaffeliteError, match=r'tiny_iter_0\.solverstate\b'):
        solver.snapshot()


def test_snapshots_get_the_umask_mode_as_in_caffe(work):
    old = os.umask(0o022)
    try:
        _, paths = solver_snapshot(work)
    finally:
        os.umask(old)
    for path in paths:
        assert os.stat(path).st_mode & 0o777 == 0o644, path


def test_the_write_probe_has_a_name_of_its_own(work):
    # Another run's probe under the old fixed name (here a folder, which cannot be
    # opened as a file) does not stop this run, and is left alone.
    (work / 'solver.prototxt').write_text(SOLVER + 'snapshot: 1\n')
    os.makedirs('snaps/tiny_iter_0.tempfile')
    caffelite.SGDSolver('solver.prototxt')
    assert os.listdir('snaps') == ['tiny_iter_0.tempfile']


# -- what the messages say -------------------------------------------------------------------
def test_solver_content_errors_name_the_solver_file(work, capsys):
    (work / 'solver.prototxt').write_text(SOLVER.replace('"fixed"', '"cosine"'))
    fails(capsys, ['train', '--solver', 'solver.prototxt'], 'solver.prototxt: unknown lr_policy')
    (work / 'solver.prototxt').write_text(SOLVER + 'test_iter: 1\n')
    fails(capsys, ['train', '--solver', 'solver.prototxt'], 'solver.prototxt: ',
          'test_interval')


def _image_data_net(source):
    return f'''layer {{ name: "img" type: "ImageData" top: "data" top: "label"
        image_data_param {{ source: "{source}" batch_size: 1 }} }}'''


def test_a_list_file_that_is_not_text_names_it(work, capsys):
    (work / 'list.txt').write_bytes(b'\x89PNG\r\n\x1a\n\0\0\0\rIHDR')
    (work / 'img.prototxt').write_text(_image_data_net('list.txt'))
    fails(capsys, ['time', '--model', 'img.prototxt'], 'layer "img"', 'list file list.txt',
          'not a text file')


def test_a_decompression_bomb_names_the_image(work, capsys):
    from PIL import Image
    Image.new('L', (64, 64)).save(work / 'big.png')
    (work / 'list.txt').write_text('big.png 0\n')
    (work / 'img.prototxt').write_text(_image_data_net('list.txt'))
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 64 * 64 // 4      # Pillow refuses > 2x this as a bomb
    try:
        fails(capsys, ['time', '--model', 'img.prototxt'], 'big.png', 'too large')
    finally:
        Image.MAX_IMAGE_PIXELS = old


def test_hdf5_data_with_a_group_where_a_dataset_belongs_names_the_file(work, capsys):
    with h5py.File(work / 'd.h5', 'w') as f:
        f.create_group('data')
        f.create_dataset('label', data=np.zeros(4))
    (work / 'list.txt').write_text('d.h5\n')
    (work / 'h5.prototxt').write_text(
        'layer { name: "h5" type: "HDF5Data" top: "data" top: "label" '
        'hdf5_data_param { source: "list.txt" batch_size: 2 } }')
    fails(capsys, ['time', '--model', 'h5.prototxt'], 'layer "h5"', 'd.h5', 'no dataset data')


def test_negative_gpu_id_is_refused_before_any_device_is_touched(work, capsys):
    from caffelite import backend
    before = (backend.mode(), backend._state['device'])
    fails(capsys, ['time', '--model', 'net.prototxt', '--gpu', '-1', '--iterations', '1'],
          'invalid --gpu "-1"')
    assert (backend.mode(), backend._state['device']) == before
