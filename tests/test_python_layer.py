"""The Python layer: user modules imported from PYTHONPATH or the prototxt's folder."""
import itertools
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
from caffelite.blob import Blob
from caffelite.errors import CaffeliteError, LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, data_layer, make, tops

LRCN = Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'lrcn'
_names = itertools.count()

LAYERS = '''
import numpy as np
import caffelite as caffe


class ScaledSquare(caffe.Layer):
    """top = w * x**2 + offset, w a learned (C,) parameter; offset from param_str."""

    def setup(self, bottom, top):
        self.offset = float(eval(self.param_str)['offset'])
        self.seen_phase = self.phase
        self.blobs.add_blob(bottom[0].data.shape[1])
        self.blobs[0].data[...] = np.arange(1, bottom[0].data.shape[1] + 1)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        w = self.blobs[0].data[None, :]
        top[0].data[...] = w * bottom[0].data ** 2 + self.offset

    def backward(self, top, propagate_down, bottom):
        x, dy = bottom[0].data, top[0].diff
        self.blobs[0].diff[...] += (dy * x ** 2).sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = dy * 2 * self.blobs[0].data[None, :] * x


class Counter(caffe.Layer):
    """A data layer with its own attributes and a custom __init__ (pycaffe passes param)."""

    def __init__(self, param):
        super().__init__(param)
        self.made_with = param.name

    def setup(self, bottom, top):
        self.count = 0

    def reshape(self, bottom, top):
        top[0].reshape(2, 3)

    def forward(self, bottom, top):
        self.count += 1
        top[0].data[...] = self.count

    def backward(self, top, propagate_down, bottom):
        pass

    def set_start(self, value):
        self.count = value


class NoForward(caffe.Layer):
    def reshape(self, bottom, top):
        pass


class NotALayer:
    pass
'''


@pytest.fixture
def module(tmp_path):
    """A fresh module name holding LAYERS, in tmp_path (not on sys.path)."""
    name = f'user_layers_{next(_names)}'
    (tmp_path / f'{name}.py').write_text(LAYERS)
    yield name
    sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def python_layer(module, layer, source_dir, param_str='', phase=pb.TRAIN, bottoms=1,
                 dtype=np.float64):
    bottom = 'bottom: "x" ' * bottoms
    text = (f'name: "py" type: "Python" {bottom}top: "y" '
            f'python_param {{ module: "{module}" layer: "{layer}" param_str: "{param_str}" }}')
    return make(text, phase, dtype, source_dir=str(source_dir))


def test_python_layer_from_the_prototxt_folder_with_gradient_check(module, tmp_path):
    layer = python_layer(module, 'ScaledSquare', tmp_path, param_str="{'offset': 0.5}",
                         phase=pb.TEST)
    x, (y,) = blob(np.random.default_rng(0).normal(size=(4, 3))), tops()
    layer.set_up([x], [y])
    assert type(layer).__name__ == 'ScaledSquare' and isinstance(layer, caffelite.Layer)
    assert layer.type == 'Python' and layer.param_str == "{'offset': 0.5}"
    assert layer.seen_phase == caffelite.TEST and layer.offset == 0.5
    assert layer.blobs[0].shape == (3,) and layer.blobs[0].dtype == np.float64
    layer.forward([x], [y])
    np.testing.assert_allclose(y.data, np.arange(1, 4) * x.data ** 2 + 0.5)
    check_layer_gradient(layer, [x], [y], setup=False)
    # including x = 0 and negative inputs
    x.data[0] = 0.0
    x.data[1] = -2.0
    check_layer_gradient(layer, [x], [y], setup=False)


def test_python_layer_from_pythonpath(module, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    layer = python_layer(module, 'Counter', tmp_path.parent, bottoms=0)
    y = Blob()
    layer.set_up([], [y])
    assert layer.made_with == 'py' and layer.type == 'Python' and layer.phase == pb.TRAIN
    layer.set_start(10)
    layer.forward([], [y])
    assert y.shape == (2, 3) and (y.data == 11).all()


def test_python_layer_in_a_net_is_the_users_object(module, tmp_path):
    (tmp_path / 'net.prototxt').write_text(textwrap.dedent(f'''
        name: "py"
        layer {{ name: "data" type: "Python" top: "data"
                 python_param {{ module: "{module}" layer: "Counter" }} }}
        layer {{ name: "sq" type: "Python" bottom: "data" top: "sq"
                 python_param {{ module: "{module}" layer: "ScaledSquare"
                                 param_str: "{{'offset': 1}}" }} }}
    '''))
    net = caffelite.Net(str(tmp_path / 'net.prototxt'), caffelite.TRAIN)
    net.layers[0].set_start(1)
    out = net.forward()
    np.testing.assert_allclose(out['sq'], np.tile(np.arange(1, 4) * 4.0 + 1, (2, 1)))
    assert len(net.params['sq']) == 1


def test_python_layer_errors(module, tmp_path):
    y = Blob()
    with pytest.raises(LayerError, match=r'"no_such_module_xyz" not found on sys.path.*'
                                         + str(tmp_path)):
        python_layer('no_such_module_xyz', 'X', tmp_path, bottoms=0).set_up([], [y])
    (tmp_path / 'broken_user_mod.py').write_text('import numpy\nimport not_installed_pkg_q\n')
    with pytest.raises(LayerError, match=r'"broken_user_mod" .*failed to import: '
                                         r'ModuleNotFoundError.*not_installed_pkg_q'):
        python_layer('broken_user_mod', 'X', tmp_path, bottoms=0).set_up([], [y])
    sys.modules.pop('broken_user_mod', None)
    (tmp_path / 'syntax_user_mod.py').write_text('def f(:\n')
    with pytest.raises(LayerError, match=r'"syntax_user_mod" .*failed to import: SyntaxError'):
        python_layer('syntax_user_mod', 'X', tmp_path, bottoms=0).set_up([], [y])
    with pytest.raises(LayerError, match=r'has no class "Missing"'):
        python_layer(module, 'Missing', tmp_path, bottoms=0).set_up([], [y])
    with pytest.raises(LayerError, match=r'NotALayer must be a class derived from '
                                         r'caffelite.Layer'):
        python_layer(module, 'NotALayer', tmp_path, bottoms=0).set_up([], [y])
    with pytest.raises(LayerError, match=r'NoForward does not define forward'):
        python_layer(module, 'NoForward', tmp_path, bottoms=0).set_up([], [y])


def test_python_layer_import_error_in_a_net_names_the_prototxt(tmp_path):
    (tmp_path / 'bad.prototxt').write_text(
        'layer { name: "data" type: "Python" top: "d" '
        'python_param { module: "absent_user_module_w" layer: "L" } }')
    with pytest.raises(CaffeliteError) as info:
        caffelite.Net(str(tmp_path / 'bad.prototxt'), caffelite.TRAIN)
    message = str(info.value)
    assert 'absent_user_module_w' in message and 'bad.prototxt' in message


LRCN_STANDIN = '''
"""Python 3 stand-in with the interface of LRCN's sequence_input_layer.py (same classes and
top shapes): data (T*N, 3, 227, 227), label (T*N,), clip_markers (T*N,), time-major."""
import numpy as np
import caffe


class videoRead(caffe.Layer):
    def initialize(self):
        self.buffer_size, self.frames = 3, 16

    def setup(self, bottom, top):
        self.initialize()
        self.N = self.buffer_size * self.frames
        if len(top) != 3:
            raise Exception('Incorrect number of outputs')
        for index, shape in enumerate([(self.N, 3, 227, 227), (self.N,), (self.N,)]):
            top[index].reshape(*shape)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        top[0].data[...] = 0.5
        top[1].data[...] = np.repeat(np.arange(self.buffer_size), self.frames)
        cm = np.ones(self.N)
        cm[:self.buffer_size] = 0
        top[2].data[...] = cm

    def backward(self, top, propagate_down, bottom):
        pass


class videoReadTrain_RGB(videoRead):
    def initialize(self):
        self.buffer_size, self.frames = 24, 16


class videoReadTest_RGB(videoRead):
    pass
'''


@pytest.mark.skipif(not LRCN.exists(), reason='LRCN reference prototxts not present')
def test_lrcn_activity_python_data_layer_runs_with_caffelite_as_caffe(tmp_path, monkeypatch):
    # LRCN's layers do "import caffe"; with caffelite standing in for it
    monkeypatch.setitem(sys.modules, 'caffe', caffelite)
    (tmp_path / 'sequence_input_layer.py').write_text(LRCN_STANDIN)
    net = text_format.Parse((LRCN / 'activity_recognition' / 'train_test_lstm_RGB.prototxt')
                            .read_text(), pb.NetParameter())
    try:
        for lp in net.layer[:2]:
            assert lp.type == 'Python' and lp.python_param.module == 'sequence_input_layer'
            phase = lp.include[0].phase
            layer, top = data_layer(lp, phase, source_dir=str(tmp_path), seed=None)
            layer.forward([], top)
            n = 24 if phase == pb.TRAIN else 3
            assert [t.shape for t in top] == [(16 * n, 3, 227, 227), (16 * n,), (16 * n,)]
            assert (top[2].data[:n] == 0).all() and (top[2].data[n:] == 1).all()
    finally:
        sys.modules.pop('sequence_input_layer', None)
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
