"""A seeded mutation fuzzer: bad input must end in the project's error (CaffeliteError, or
the command line's exit status 1 with one message line), never in another exception.

Each category mutates real inputs (tests/mutation.py) with fixed seeds, so every run tries
the same cases, and drives them through the entry points a user hits: ``caffelite.Net``,
``caffelite.get_solver``, ``solver.restore``, ``caffelite.cli.main`` (train / test / time,
and Caffe's upgrade tools). A category fails listing every case that escaped, with its seed
and mutation, so a failure is replayed by running that seed. ``-m "not fuzz"`` leaves it out.
"""
import contextlib
import glob
import io as stdio
import os
import random
import shutil

import h5py
import numpy as np
import pytest

import caffelite
from caffelite import cli
from caffelite.errors import CaffeliteError

import layer_testing
from cli_testing import error_lines
import mutation

pytestmark = pytest.mark.fuzz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository's nets, less the ones whose fully connected layers take a second to fill.
BIG = ('caffenet_deploy', 'bvlc_alexnet_deploy', 'bvlc_reference_caffenet_deploy',
       'bvlc_reference_rcnn_ilsvrc13_deploy', 'finetune_flickr_style_deploy',
       'net_surgery_bvlc_caffenet_full_conv', 'bvlc_googlenet')
PROTOTXTS = sorted(
    p for p in glob.glob(os.path.join(REPO, 'prototxt', '*.prototxt')) +
    glob.glob(os.path.join(REPO, 'tests', 'caffe_models', '*.prototxt'))
    if 'solver' not in os.path.basename(p) and not os.path.basename(p).startswith(BIG))
SOLVERS = sorted(glob.glob(os.path.join(REPO, 'prototxt', '*solver*.prototxt')) +
                 glob.glob(os.path.join(REPO, 'tests', 'caffe_models', '*solver*.prototxt')))

NET = layer_testing.TINY_NET.encode()
SOLVER = b'''net: "net.prototxt"
base_lr: 0.01
momentum: 0.9
lr_policy: "step"
stepsize: 1
gamma: 0.5
max_iter: 1
test_iter: 1
test_interval: 1
snapshot_prefix: "snaps/tiny"
random_seed: 1
'''
IMAGE_NET = b'''layer { name: "img" type: "ImageData" top: "data" top: "label"
        image_data_param { source: "list.txt" batch_size: 2 new_height: 6 new_width: 6 }
        transform_param { crop_size: 4 mirror: true } }
'''
HDF5_NET = b'''layer { name: "h5" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "h5list.txt" batch_size: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''


class Escaped(AssertionError):
    pass


def run_cli(argv):
    """cli.main in-process: returns its status; raises Escaped when the error was not the
    project's (an exception escaped, or a failure printed a traceback / no message)."""
    err = stdio.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdio.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:         # argparse: a usage message, status 2
            code = exit_.code
            if code == 0 or not err.getvalue().strip():
                raise Escaped(f'SystemExit({code}) without a message') from None
    text = err.getvalue()
    if 'Traceback' in text:
        raise Escaped(f'traceback printed: {text[-300:]}')
    if code != 0 and code != 2 and len(error_lines(text)) != 1:
        raise Escaped(f'exit {code} with {len(error_lines(text))} message lines')
    return code


def expect_clean(call):
    """Run ``call()``; success and CaffeliteError are fine, anything else escapes."""
    try:
        return call()
    except CaffeliteError:
        return None


def fuzz(cases, seed, build_case):
    """Run ``cases`` cases; ``build_case(rng, i)`` returns (description, call). Fails with
    every case that let an exception other than CaffeliteError through."""
    escaped = []
    for i in range(cases):
        rng = random.Random(seed * 100003 + i)
        description, call = build_case(rng, i)
        try:
            expect_clean(call)
        except Exception as err:    # the point of the test: nothing else may come out
            escaped.append(f'case {i} ({description}): {type(err).__name__}: '
                           f'{str(err)[:300]}')
    assert not escaped, f'{len(escaped)} of {cases} cases escaped:\n' + '\n'.join(escaped)


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A folder with the tiny net, its solver, a trained snapshot of each format, weights,
    images with a list file, and HDF5 data; the working directory during each test."""
    folder = tmp_path_factory.mktemp('fuzz')
    old = os.getcwd()
    os.chdir(folder)
    try:
        (folder / 'net.prototxt').write_bytes(NET)
        (folder / 'solver.prototxt').write_bytes(SOLVER)
        (folder / 'solver_h5.prototxt').write_bytes(SOLVER.replace(b'snaps/tiny', b'h5/tiny') +
                                                    b'snapshot_format: HDF5\n')
        for name in ('solver.prototxt', 'solver_h5.prototxt'):
            with contextlib.redirect_stdout(stdio.StringIO()):
                solver = caffelite.get_solver(name)
                solver.step(1)
                solver.snapshot()
        from PIL import Image
        pixels = np.random.RandomState(0).randint(0, 255, (8, 8, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / 'a.png')
        Image.fromarray(pixels).save(folder / 'b.jpg', quality=90)
        (folder / 'list.txt').write_text('a.png 0\nb.jpg 1\n')
        (folder / 'image_net.prototxt').write_bytes(IMAGE_NET)
        with h5py.File(folder / 'd.h5', 'w') as f:
            f.create_dataset('data', data=np.random.RandomState(1).rand(6, 3))
            f.create_dataset('label', data=np.arange(6) % 2)
        (folder / 'h5list.txt').write_text('d.h5\n')
        (folder / 'hdf5_net.prototxt').write_bytes(HDF5_NET)
        yield folder
    finally:
        os.chdir(old)


def _write(work, name, data):
    path = work / name
    path.write_bytes(data)
    return str(path)


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def _net_and_stop(path, phase=caffelite.TRAIN, forward=False):
    """Build (and optionally run) a net, stopping its prefetch threads afterwards."""
    net = caffelite.Net(path, phase)
    try:
        if forward:
            net.forward()
            net.backward()
    finally:
        for layer in net.layers:
            getattr(layer, 'stop_prefetch', lambda: None)()


# -- the categories ----------------------------------------------------------------------------
def test_fuzz_repository_prototxts(work):
    """Mutated nets of prototxt/ and tests/caffe_models/, built by caffelite.Net."""
    def case(rng, i):
        source = rng.choice(PROTOTXTS)
        path = _write(work, 'mutated.prototxt', mutation.mutate_text(rng, _read(source)))
        return os.path.basename(source), lambda: _net_and_stop(path, caffelite.TEST)
    fuzz(360, 1, case)


def test_fuzz_tiny_net_through_the_command_line(work):
    """Mutated tiny nets run forward and backward by ``caffelite time``."""
    def case(rng, i):
        data = NET
        for _ in range(rng.randint(1, 3)):
            data = mutation.mutate_text(rng, data)
        path = _write(work, 'mutated.prototxt', data)
        return 'tiny net', lambda: run_cli(['time', '--model', path, '--iterations', '1'])
    fuzz(120, 2, case)


def test_fuzz_solvers(work):
    """Mutated solvers (the tiny one, whose net may name a binary file, and the
    repository's) built by caffelite.get_solver, and by the upgrade tool."""
    nets = (b'net.prototxt', b'snaps/tiny_iter_1.caffemodel', b'h5/tiny_iter_1.solverstate.h5',
            b'a.png', b'list.txt')

    def case(rng, i):
        if i % 3:
            base = SOLVER.replace(b'net.prototxt', rng.choice(nets))
            source = 'tiny solver'
        else:
            source = rng.choice(SOLVERS)
            base = _read(source)
        path = _write(work, 'mutated_solver.prototxt', mutation.mutate_text(rng, base))
        if i % 5 == 4:
            return source, lambda: run_cli(['upgrade_solver_proto_text', path,
                                            str(work / 'upgraded.prototxt')])
        return os.path.basename(source), lambda: caffelite.get_solver(path)
    fuzz(180, 3, case)


def test_fuzz_weight_files(work):
    """Damaged .caffemodel and HDF5 weights given to ``caffelite test`` and Net.copy_from."""
    net = caffelite.Net(str(work / 'net.prototxt'), caffelite.TEST)

    def case(rng, i):
        if i % 2:
            path = _write(work, 'mutated.caffemodel',
                          mutation.mutate_bytes(rng, _read(work / 'snaps/tiny_iter_1.caffemodel')))
            return 'caffemodel', lambda: run_cli(['test', '--model', 'net.prototxt', '--weights',
                                                  path, '--iterations', '1'])
        path = str(work / 'mutated.caffemodel.h5')
        shutil.copy(work / 'h5/tiny_iter_1.caffemodel.h5', path)
        kind = mutation.mutate_hdf5(rng, path)
        return f'h5 weights, {kind}', lambda: net.copy_from(path)
    fuzz(150, 4, case)


def test_fuzz_solver_states(work):
    """Damaged .solverstate (binary) and .solverstate.h5 given to solver.restore and to
    ``caffelite train --snapshot``."""
    with contextlib.redirect_stdout(stdio.StringIO()):
        solver = caffelite.get_solver(str(work / 'solver.prototxt'))

    def case(rng, i):
        if i % 2:
            path = _write(work, 'mutated.solverstate',
                          mutation.mutate_bytes(rng, _read(work / 'snaps/tiny_iter_1.solverstate')))
            kind = 'binary'
        else:
            path = str(work / 'mutated.solverstate.h5')
            shutil.copy(work / 'h5/tiny_iter_1.solverstate.h5', path)
            kind = 'h5, ' + mutation.mutate_hdf5(rng, path)
        if i % 5 == 0:
            return kind, lambda: run_cli(['train', '--solver', 'solver.prototxt',
                                          '--snapshot', path])
        return kind, lambda: solver.restore(path)
    fuzz(120, 5, case)


def test_fuzz_images_and_list_files(work):
    """Damaged images (truncated, flipped, empty) and list files, read by ImageData."""
    originals = {'a.png': _read(work / 'a.png'), 'b.jpg': _read(work / 'b.jpg')}

    def case(rng, i):
        for name, data in originals.items():
            (work / name).write_bytes(data)
        if i % 3 == 0:
            (work / 'list.txt').write_bytes(mutation.mutate_text(rng, b'a.png 0\nb.jpg 1\n'))
            what = 'list file'
        else:
            (work / 'list.txt').write_text('a.png 0\nb.jpg 1\n')
            name = rng.choice(sorted(originals))
            (work / name).write_bytes(mutation.mutate_bytes(rng, originals[name]))
            what = name
        return what, lambda: _net_and_stop('image_net.prototxt', forward=True)
    try:
        fuzz(120, 6, case)
    finally:
        for name, data in originals.items():
            (work / name).write_bytes(data)
        (work / 'list.txt').write_text('a.png 0\nb.jpg 1\n')


def test_fuzz_hdf5_data(work):
    """HDF5Data sources with a changed layout or truncated, and mutated source lists."""
    def case(rng, i):
        shutil.copy(work / 'd.h5', work / 'm.h5')
        if i % 4 == 0:
            (work / 'h5list.txt').write_bytes(mutation.mutate_text(rng, b'm.h5\n'))
            kind = 'list file'
        else:
            (work / 'h5list.txt').write_text('m.h5\n')
            kind = mutation.mutate_hdf5(rng, str(work / 'm.h5'))
        return kind, lambda: _net_and_stop('hdf5_net.prototxt', forward=True)
    fuzz(90, 7, case)


FLAG_VALUES = ('', 'x', '-1', '0', '1e12', '2147483648', 'all', '0,1', ',', 'net.prototxt',
               'snaps/tiny_iter_1.caffemodel', 'snaps/tiny_iter_1.solverstate', 'a.png',
               'missing.prototxt', 'solver.prototxt', '\udcff')
FLAGS = ('--solver', '--model', '--weights', '--snapshot', '--iterations', '--gpu', '--phase',
         '--level', '--stage', '-sigint_effect', '--output', '--input')
COMMANDS = ('train', 'test', 'time', 'device_query', 'export_onnx', 'bogus',
            'upgrade_net_proto_text', 'upgrade_net_proto_binary', 'compute_image_mean')


def test_fuzz_command_line_flags(work):
    """Random commands, flags and values through caffelite.cli.main."""
    def case(rng, i):
        argv = [rng.choice(COMMANDS)]
        for _ in range(rng.randint(0, 4)):
            flag = rng.choice(FLAGS)
            value = rng.choice(FLAG_VALUES)
            argv += [f'{flag}={value}'] if rng.random() < 0.3 else [flag, value]
        if argv[0] in ('time', 'test'):
            argv += ['--iterations', '1'] if '--iterations' not in argv else []
        if argv[0] == 'train' and not any(a.startswith('--solver') for a in argv):
            argv += ['--solver', 'solver.prototxt']
        return ' '.join(argv), lambda: run_cli(argv)
    fuzz(150, 8, case)
