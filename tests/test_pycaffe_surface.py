"""pycaffe's surface: the exception types pycaffe raises (coord_map's crop asserts, a Python
layer's own exceptions, RuntimeError for files it cannot open and set_input_arrays' checks),
Python layers' setup-first order, draw's display_lrm, and has_nccl."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import caffelite
from caffelite import coord_map, draw
from caffelite.errors import CaffeliteError
from caffelite.net_spec import NetSpec, layers as L
from caffelite.prototxt import parse_prototxt_text
from caffelite.proto import caffelite_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]


# -- coord_map.crop ---------------------------------------------------------------------------
def test_crop_checks_raise_assertion_error_as_pycaffe():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.strided = L.Convolution(n.data, kernel_size=2, stride=2, num_output=1)
    n.valid = L.Convolution(n.data, kernel_size=3, num_output=1)
    n.even = L.Convolution(n.data, kernel_size=2, num_output=1)
    with pytest.raises(AssertionError, match='scale mismatch'):
        coord_map.crop(n.strided, n.data)
    with pytest.raises(AssertionError, match='negative offset'):
        coord_map.crop(n.valid, n.data)
    with pytest.raises(AssertionError, match='noninteger offset'):
        coord_map.crop(n.data, n.even)
    assert coord_map.crop(n.data, n.valid) is not None


# -- Python layers ----------------------------------------------------------------------------
LAYERS = '''
import caffelite as caffe


class Failing(caffe.Layer):
    """Raises self.error (a RuntimeError by default) in the method named by param_str."""
    def setup(self, bottom, top):
        self.where = self.param_str
        self.fail('setup')

    def fail(self, method):
        if self.where == method:
            error = RuntimeError(f'broke in {method}')
            error.detail = 42
            raise error

    def reshape(self, bottom, top):
        self.fail('reshape')
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        self.fail('forward')
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self.fail('backward')
        bottom[0].diff[...] = top[0].diff


class KeyFailing(Failing):
    def forward(self, bottom, top):
        raise KeyError('missing')


class ReshapeFromSetup(caffe.Layer):
    """Defines reshape and forward only in setup, which Caffe calls first."""
    def setup(self, bottom, top):
        self.reshape = lambda bottom, top: top[0].reshape(*bottom[0].data.shape)
        self.forward = self._forward

    def _forward(self, bottom, top):
        top[0].data[...] = 3 * bottom[0].data


class NoReshape(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass
'''


def python_net(tmp_path, layer, param_str=''):
    (tmp_path / 'surface_layers.py').write_text(LAYERS)
    text = textwrap.dedent(f'''
        name: "py" force_backward: true
        input: "data" input_shape {{ dim: 2 dim: 3 }}
        layer {{ name: "user" type: "Python" bottom: "data" top: "out"
                 python_param {{ module: "surface_layers" layer: "{layer}"
                                 param_str: "{param_str}" }} }}
        layer {{ name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "data"
                 top: "loss" }}''')
    path = tmp_path / 'py.prototxt'
    path.write_text(text)
    return lambda: caffelite.Net(str(path), caffelite.TRAIN)


@pytest.mark.parametrize('method', ['setup', 'reshape', 'forward', 'backward'])
def test_a_python_layers_exception_reaches_the_caller_as_its_own_type(tmp_path, method):
    make = python_net(tmp_path, 'Failing', method)

    def run():
        net = make()
        net.forward()
        net.backward()

    with pytest.raises(RuntimeError) as info:
        run()
    err = info.value
    assert isinstance(err, CaffeliteError) and type(err).__name__ == 'RuntimeError'
    assert f'broke in {method}' in str(err) and 'layer "user" (type Python)' in str(err)
    assert 'py.prototxt' in str(err)
    assert err.detail == 42 and err.args == (f'broke in {method}',)
    assert isinstance(err.__cause__, RuntimeError)


def test_a_python_layers_key_error_stays_a_key_error(tmp_path):
    net = python_net(tmp_path, 'KeyFailing')()
    with pytest.raises(KeyError, match='layer "user"'):
        net.forward()


def test_python_layer_setup_runs_before_its_methods_are_checked(tmp_path):
    net = python_net(tmp_path, 'ReshapeFromSetup')()
    net.blobs['data'].data[...] = 1
    assert (net.forward(blobs=['out'])['out'] == 3).all()
    with pytest.raises(CaffeliteError, match='NoReshape does not define reshape'):
        python_net(tmp_path, 'NoReshape')()


# -- draw ---------------------------------------------------------------------------------------
DRAWN = '''name: "lrm"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 3 } }
layer { name: "frozen" type: "InnerProduct" bottom: "fc" top: "frozen"
        param { lr_mult: 0 } param { lr_mult: 0 } inner_product_param { num_output: 3 } }
'''


def test_layer_labels_show_lr_multipliers_with_display_lrm():
    param = parse_prototxt_text(DRAWN, pb.NetParameter())
    conv, fc, frozen = param.layer[1], param.layer[2], param.layer[3]
    assert draw.get_layer_label(conv, 'TB', display_lrm=True) == \
        '"conv (Convolution) kernel size: 3 stride: 1 pad: 0 lr mult: 1.0, 2.0"'
    assert draw.get_layer_label(fc, 'LR', display_lrm=True) == \
        '"fc\\n(InnerProduct)\\nlr mult: 1.0, 1.0"'
    assert 'lr mult' not in draw.get_layer_label(frozen, 'TB', display_lrm=True)
    assert 'lr mult' not in draw.get_layer_label(conv, 'TB')
    assert draw.get_layer_lr_mult(conv) == (1.0, 2.0)
    with pytest.raises(ValueError):
        draw.get_layer_lr_mult(param.layer[0])


def test_draw_functions_take_display_lrm(tmp_path):
    pytest.importorskip('pydot')
    param = parse_prototxt_text(DRAWN, pb.NetParameter())
    text = draw.get_pydot_graph(param, 'TB', display_lrm=True).to_string()
    assert 'lr mult: 1.0, 2.0' in text
    assert b'lr mult' in draw.draw_net(param, 'TB', ext='dot', display_lrm=True)
    draw.draw_net_to_file(param, str(tmp_path / 'net.dot'), 'TB', None, True)
    assert 'lr mult: 1.0, 2.0' in (tmp_path / 'net.dot').read_text()
    from tools import draw_net as tool
    (tmp_path / 'lrm.prototxt').write_text(DRAWN)
    assert tool.main([str(tmp_path / 'lrm.prototxt'), str(tmp_path / 'tool.dot'),
                      '--display_lrm']) == 0
    assert 'lr mult' in (tmp_path / 'tool.dot').read_text()


# -- what pycaffe raises as RuntimeError, and has_nccl ---------------------------------------
MEMORY_LAYER = (' layer { name: "mem" type: "MemoryData" top: "data" top: "label"'
                ' memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }')


def _net(layers):
    return caffelite.Net(parse_prototxt_text(f'name: "mem" {layers}', pb.NetParameter()),
                         caffelite.TEST)


def test_set_input_arrays_errors_are_runtime_errors_as_in_pycaffe():
    net = _net(MEMORY_LAYER)
    data = np.zeros((4, 1, 2, 3), np.float32)
    net.set_input_arrays(data, np.arange(4, dtype=np.float32))
    net.forward()
    assert net.blobs['label'].data.tolist() == [0, 1]
    for bad_data, labels, message in [
            (np.zeros((4, 3, 2, 3), np.float32), np.arange(4), 'n x 1 x 2 x 3'),
            (data, np.arange(3), 'vector of 4'),
            (data[:3], np.arange(3), 'multiple of batch_size')]:
        with pytest.raises(RuntimeError, match=message) as caught:
            net.set_input_arrays(bad_data, labels)
        assert isinstance(caught.value, CaffeliteError)
        assert 'layer "mem"' in str(caught.value)


def test_set_input_arrays_on_a_layer_that_is_not_memory_data_or_by_name():
    net = _net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }'
               + MEMORY_LAYER)
    items = np.zeros((2, 1, 2, 3), np.float32)
    with pytest.raises(RuntimeError, match='"in" is a Input layer, not MemoryData'):
        net.set_input_arrays(items, np.arange(2))
    net.set_input_arrays(items, np.arange(2), 'mem')
    with pytest.raises(RuntimeError, match='no layer "nope"'):
        net.set_input_arrays(items, np.arange(2), 'nope')


def test_a_net_or_weights_file_that_cannot_be_opened_is_a_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match='cannot open the net file .*missing.prototxt'):
        caffelite.Net(str(tmp_path / 'missing.prototxt'), caffelite.TEST)
    model = tmp_path / 'net.prototxt'
    model.write_text(MEMORY_LAYER)
    for args, kwargs in [((str(tmp_path / 'w.caffemodel'), caffelite.TEST), {}),
                         ((), dict(weights=str(tmp_path / 'w.caffemodel'),
                                   phase=caffelite.TEST))]:
        with pytest.raises(RuntimeError, match='cannot open the weights file .*w.caffemodel'):
            caffelite.Net(str(model), *args, **kwargs)


def test_has_nccl_is_false():
    assert caffelite.has_nccl() is False


# -- pycaffe's runtime functions --------------------------------------------------------------
@pytest.fixture
def single_worker():
    yield
    caffelite.worker.set_current(None)


def test_solver_count_and_rank_give_a_net_its_share_of_the_records(tmp_path, single_worker):
    h5py = pytest.importorskip('h5py')
    with h5py.File(tmp_path / 'rows.h5', 'w') as f:
        f['label'] = np.arange(8, dtype=np.float32)
    (tmp_path / 'list.txt').write_text(f'{tmp_path / "rows.h5"}\n')
    text = (f'layer {{ name: "d" type: "HDF5Data" top: "label" include {{ phase: TRAIN }} '
            f'hdf5_data_param {{ source: "{tmp_path / "list.txt"}" batch_size: 2 }} }}')

    def first_two_batches():
        net = caffelite.Net(parse_prototxt_text(text, pb.NetParameter()), caffelite.TRAIN)
        return [net.forward()['label'].tolist() for _ in range(2)]

    assert (caffelite.solver_count(), caffelite.solver_rank()) == (1, 0)
    assert first_two_batches() == [[0, 1], [2, 3]]
    caffelite.set_solver_count(2)
    caffelite.set_solver_rank(1)
    caffelite.set_multiprocess(True)
    assert (caffelite.solver_count(), caffelite.solver_rank()) == (2, 1)
    assert first_two_batches() == [[2, 3], [6, 7]]         # batches 1 and 3 of the epoch
    with pytest.raises(CaffeliteError, match='rank 2 is not below the solver count 2'):
        caffelite.set_solver_rank(2)


def test_timer_init_log_and_log(capsys):
    timer = caffelite.Timer()
    assert timer.ms == 0.0
    timer.start()
    assert timer.ms >= 0.0                                 # reading ms stops it
    stopped = timer.ms
    assert timer.ms == stopped
    logger = caffelite.solvers.log.logger
    handlers, level = list(logger.handlers), logger.level
    try:
        caffelite.init_log(0, True)
        caffelite.init_log()                               # once: no second handler
        caffelite.log('Using devices [0]')
        err = capsys.readouterr().err
        assert err.count('Using devices [0]') == 1
        assert re.match(r'I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] Using devices \[0\]$',
                        err.strip())
        caffelite.init_log(2)
        caffelite.log('not shown')
        assert 'not shown' not in capsys.readouterr().err
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def test_nccl_refuses_with_the_way_to_train_on_several_gpus():
    with pytest.raises(CaffeliteError, match='caffelite train --solver S --gpu 0,1'):
        caffelite.NCCL.new_uid()
    with pytest.raises(CaffeliteError, match='has_nccl'):
        caffelite.NCCL(None, b'')


def test_a_pycaffe_solvers_log_goes_to_stderr_unless_logging_is_set_up(tmp_path):
    """As glog before InitGoogleLogging: a script's solver logs on stderr, GLOG_minloglevel
    quiets it, and an application that configured logging gets the records instead."""
    (tmp_path / 'net.prototxt').write_text(
        'layer { name: "d" type: "DummyData" top: "x" dummy_data_param { shape { dim: 2 } } }'
        ' layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "x" top: "loss" }')
    (tmp_path / 'solver.prototxt').write_text('net: "net.prototxt" base_lr: 0.1 '
                                              'lr_policy: "fixed" max_iter: 2 display: 1')
    script = ('import caffelite as caffe\n'
              'caffe.SGDSolver("solver.prototxt").step(2)\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop('GLOG_minloglevel', None)

    def run(code, **extra):
        return subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                              text=True, env=dict(env, **extra), timeout=120)

    default = run(script)
    assert default.returncode == 0 and default.stdout == '', default.stderr
    assert re.search(r'^I\d{4} .*\] Iteration 1\b.*, loss = 0$', default.stderr, re.M)
    assert run(script, GLOG_minloglevel='2').stderr == ''
    configured = run('import logging; logging.basicConfig(level=logging.WARNING)\n' + script)
    assert configured.returncode == 0 and configured.stderr == '', configured.stderr
