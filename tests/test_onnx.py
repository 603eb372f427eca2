"""ONNX export (caffelite.onnx): for each deploy net, onnx.checker passes and onnxruntime's
outputs equal caffelite's on random inputs with random weights (float32; the error of every
output is within 1e-5 of its largest magnitude); pooling output shapes in Caffe's ceil cases;
refusals name the layer; the export_onnx command."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

onnx = pytest.importorskip('onnx', reason='the onnx extra is not installed '
                                          '(pip install -e .[onnx])')
pytest.importorskip('onnxruntime', reason='the onnx extra is not installed '
                                          '(pip install -e .[onnx])')

import caffelite  # noqa: E402
from caffelite.errors import CaffeliteError  # noqa: E402
from caffelite.onnx import UnsupportedLayer, export, supported_types  # noqa: E402
from caffelite.onnx.runtime import OnnxNet  # noqa: E402
from caffelite.proto import caffelite_pb2 as pb  # noqa: E402
import layer_testing  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / 'tests' / 'caffe_models'
RTOL = 1e-5


def randomize(net, seed=0):
    """Random weights of a sensible scale: fan-in scaled for matrices and kernels, positive
    variances and scale factors for BatchNorm, scales near 1, small biases."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for k, blob in enumerate(layer.blobs):
            shape = blob.shape
            if layer.type == 'BatchNorm':
                value = [rng.normal(0, 0.5, shape), rng.uniform(0.5, 2, shape),
                         rng.uniform(0.5, 2, shape)][k]
            elif layer.type == 'Scale' and k == 0 and len(layer.layer_param.bottom) == 1:
                value = rng.uniform(0.5, 1.5, shape)
            elif layer.type == 'PReLU':
                value = rng.uniform(0, 0.5, shape)
            elif len(shape) >= 2:
                value = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
            else:
                value = rng.uniform(-0.1, 0.1, shape)
            blob.data[...] = value


def random_feeds(net, seed=1, integer_inputs=None, cont_inputs=()):
    """Normal inputs; ``integer_inputs`` {name: high} get ids in [0, high); cont inputs the
    marker of streams that start at t = 0 and continue."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in net.inputs:
        shape = net.blobs[name].shape
        if name in cont_inputs:
            value = np.ones(shape)
            value[0] = 0
        elif name in (integer_inputs or {}):
            value = rng.integers(0, integer_inputs[name], shape)
        else:
            value = rng.standard_normal(shape)
        feeds[name] = value.astype(np.float32)
    return feeds


def assert_same_outputs(net, feeds, model=None, blobs=(), **export_args):
    """Export ``net`` (unless ``model`` is given), check it, run both, compare every output
    (the net's, and ``blobs``)."""
    model = model or export(net, **export_args)
    onnx.checker.check_model(model, full_check=True)
    expected = {k: v.copy() for k, v in net.forward(blobs=list(blobs), **feeds).items()}
    got = OnnxNet(model.SerializeToString()).forward(**feeds)
    assert sorted(got) == sorted(expected)
    for name, ref in expected.items():
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=RTOL,
                                   atol=RTOL * float(np.abs(ref).max()), err_msg=name)
    return model


def net_from_text(text, phase=caffelite.TEST):
    return caffelite.Net(text_format.Parse(text, pb.NetParameter()), phase)


# -- the deploy nets ---------------------------------------------------------------------------
def test_caffenet():
    net = caffelite.Net(str(ROOT / 'prototxt' / 'caffenet_deploy.prototxt'), caffelite.TEST)
    randomize(net)
    model = export(net, input_shapes={'data': (1, 3, 227, 227)})
    assert [i.name for i in model.graph.input] == ['data']
    assert [o.name for o in model.graph.output] == ['prob']
    assert {'conv1', 'pool1', 'norm1', 'fc6', 'fc8'} <= {o for n in model.graph.node
                                                         for o in n.output}
    assert_same_outputs(net, random_feeds(net), model)


def test_googlenet():
    net = caffelite.Net(str(MODELS / 'bvlc_googlenet_deploy.prototxt'), caffelite.TEST)
    randomize(net)
    model = export(net, input_shapes={'data': (1, 3, 224, 224)})
    assert_same_outputs(net, random_feeds(net), model)


def test_resnet_block_batchnorm_scale_eltwise():
    net = layer_testing.net_with_inputs(MODELS / 'resnet_style_train_val.prototxt')
    assert {'BatchNorm', 'Scale', 'Eltwise'} <= {l.type for l in net.layers}
    randomize(net)
    assert_same_outputs(net, random_feeds(net))


def test_fcn_deconvolution_and_crop():
    net = layer_testing.net_with_inputs(MODELS / 'fcn32s_style_train_val.prototxt')
    assert {'Deconvolution', 'Crop'} <= {l.type for l in net.layers}
    randomize(net)
    assert_same_outputs(net, random_feeds(net))


SQUEEZENET_STYLE = """
name: "squeezenet_style"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 39 dim: 39 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fire2/squeeze" type: "Convolution" bottom: "pool1" top: "fire2/squeeze"
  convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "fire2/relu_squeeze" type: "ReLU" bottom: "fire2/squeeze" top: "fire2/squeeze" }
layer { name: "fire2/expand1x1" type: "Convolution" bottom: "fire2/squeeze" top: "fire2/expand1x1"
  convolution_param { num_output: 16 kernel_size: 1 } }
layer { name: "fire2/relu_e1" type: "ReLU" bottom: "fire2/expand1x1" top: "fire2/expand1x1" }
layer { name: "fire2/expand3x3" type: "Convolution" bottom: "fire2/squeeze" top: "fire2/expand3x3"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "fire2/relu_e3" type: "ReLU" bottom: "fire2/expand3x3" top: "fire2/expand3x3" }
layer { name: "fire2/concat" type: "Concat" bottom: "fire2/expand1x1" bottom: "fire2/expand3x3"
  top: "fire2/concat" }
layer { name: "pool2" type: "Pooling" bottom: "fire2/concat" top: "pool2"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "drop" type: "Dropout" bottom: "pool2" top: "pool2" dropout_param { dropout_ratio: 0.5 } }
layer { name: "conv10" type: "Convolution" bottom: "pool2" top: "conv10"
  convolution_param { num_output: 10 kernel_size: 1 } }
layer { name: "pool10" type: "Pooling" bottom: "conv10" top: "pool10"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "prob" type: "Softmax" bottom: "pool10" top: "prob" }
"""


def test_squeezenet_style_concat():
    net = net_from_text(SQUEEZENET_STYLE)
    randomize(net)
    assert_same_outputs(net, random_feeds(net))


DEPTHWISE = """
name: "depthwise"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 8 dim: 13 dim: 11 } } }
layer { name: "dw" type: "Convolution" bottom: "data" top: "dw"
  convolution_param { num_output: 8 group: 8 kernel_size: 3 pad: 2 dilation: 2 } }
layer { name: "pw" type: "Convolution" bottom: "dw" top: "pw"
  convolution_param { num_output: 12 group: 2 kernel_h: 1 kernel_w: 3 pad_h: 0 pad_w: 1 stride_h: 2 stride_w: 1 } }
layer { name: "prelu" type: "PReLU" bottom: "pw" top: "pw" }
layer { name: "up" type: "Deconvolution" bottom: "pw" top: "up"
  convolution_param { num_output: 12 group: 12 kernel_size: 4 stride: 2 pad: 1 bias_term: false } }
layer { name: "upg" type: "Deconvolution" bottom: "up" top: "upg"
  convolution_param { num_output: 6 group: 3 kernel_size: 3 stride: 1 dilation: 2 } }
"""


def test_depthwise_and_grouped_convolutions():
    net = net_from_text(DEPTHWISE)
    randomize(net)
    assert_same_outputs(net, random_feeds(net))


LRCN_STREAMS = 3


def _lrcn_word_shapes(n):
    states = {f'lstm{k}_{s}': (1, n, 128) for k in (1, 2) for s in ('h0', 'c0')}
    return {'input_sentence': (1, n), 'cont_sentence': (1, n), 'image_features': (n, 128),
            **states}


def test_lrcn_captioning_deploy_nets():
    image = caffelite.Net(str(ROOT / 'prototxt' / 'lrcn_deploy_image.prototxt'), caffelite.TEST)
    randomize(image)
    model = export(image, input_shapes={'data': (LRCN_STREAMS, 3, 64, 64)})
    assert_same_outputs(image, random_feeds(image), model)
    word = caffelite.Net(str(ROOT / 'prototxt' / 'lrcn_deploy_word.prototxt'), caffelite.TEST)
    randomize(word, seed=2)
    model = export(word, input_shapes=_lrcn_word_shapes(LRCN_STREAMS), outputs=['predict'])
    assert [o.name for o in model.graph.output] == ['lstm1_hT', 'lstm1_cT', 'lstm2_hT',
                                                    'lstm2_cT', 'probs', 'predict']
    feeds = random_feeds(word, integer_inputs={'input_sentence': 37})
    feeds['cont_sentence'][:] = [[0, 1, 1]]     # a first step and two continuing streams
    assert_same_outputs(word, feeds, model, blobs=['predict'])


def test_activity_lstm_net():
    streams = 2
    net = layer_testing.net_with_inputs(
        ROOT / 'prototxt' / 'activity_lstm.prototxt', stages=['rgb'],
        inputs={'data': (16 * streams, 3, 32, 32), 'clip_markers': (16, streams)},
        drop=('Silence',))
    randomize(net)
    assert_same_outputs(net, random_feeds(net, cont_inputs={'clip_markers'}))


# -- every other supported layer ---------------------------------------------------------------
LAYER_ZOO = """
name: "zoo"
layer { name: "input" type: "Input" top: "x" top: "ids" top: "s"
  input_param { shape { dim: 2 dim: 6 dim: 5 dim: 4 } shape { dim: 2 dim: 3 } shape { dim: 2 dim: 6 } } }
layer { name: "sig" type: "Sigmoid" bottom: "x" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "x" top: "tanh" }
layer { name: "elu" type: "ELU" bottom: "x" top: "elu" elu_param { alpha: 0.7 } }
layer { name: "leaky" type: "ReLU" bottom: "x" top: "leaky" relu_param { negative_slope: 0.1 } }
layer { name: "prelu_shared" type: "PReLU" bottom: "x" top: "prelu_shared" prelu_param { channel_shared: true } }
layer { name: "abs" type: "AbsVal" bottom: "x" top: "abs" }
layer { name: "bnll" type: "BNLL" bottom: "x" top: "bnll" }
layer { name: "power" type: "Power" bottom: "abs" top: "power" power_param { power: 1.5 scale: 2 shift: 0.5 } }
layer { name: "power_const" type: "Power" bottom: "x" top: "power_const" power_param { power: 2 scale: 0 shift: 3 } }
layer { name: "exp" type: "Exp" bottom: "x" top: "exp" exp_param { base: 2 scale: 0.5 shift: 1 } }
layer { name: "log" type: "Log" bottom: "abs" top: "log" log_param { base: 10 scale: 1 shift: 1 } }
layer { name: "thr" type: "Threshold" bottom: "x" top: "thr" threshold_param { threshold: 0.3 } }
layer { name: "clip" type: "Clip" bottom: "x" top: "clip" clip_param { min: -0.5 max: 0.5 } }
layer { name: "swish" type: "Swish" bottom: "x" top: "swish" swish_param { beta: 1.5 } }
layer { name: "softmax_last" type: "Softmax" bottom: "x" top: "softmax_last" softmax_param { axis: -1 } }
layer { name: "lrn_across" type: "LRN" bottom: "x" top: "lrn_across" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "lrn_within" type: "LRN" bottom: "x" top: "lrn_within" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "sum" type: "Eltwise" bottom: "sig" bottom: "tanh" bottom: "elu" top: "sum" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 } }
layer { name: "prod" type: "Eltwise" bottom: "sig" bottom: "tanh" bottom: "elu" top: "prod" eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "sig" bottom: "tanh" top: "max" eltwise_param { operation: MAX } }
layer { name: "slice" type: "Slice" bottom: "x" top: "slice_a" top: "slice_b" top: "slice_c" slice_param { axis: 1 slice_point: 1 slice_point: 4 } }
layer { name: "flatten" type: "Flatten" bottom: "slice_b" top: "flatten" flatten_param { axis: 2 } }
layer { name: "reshape" type: "Reshape" bottom: "slice_c" top: "reshape" reshape_param { shape { dim: 0 dim: -1 dim: 4 } } }
layer { name: "ip_axis" type: "InnerProduct" bottom: "reshape" top: "ip_axis" inner_product_param { num_output: 3 axis: 2 } }
layer { name: "ip_t" type: "InnerProduct" bottom: "slice_a" top: "ip_t" inner_product_param { num_output: 7 transpose: true } }
layer { name: "scale2" type: "Scale" bottom: "x" bottom: "s" top: "scale2" scale_param { axis: 0 bias_term: true } }
layer { name: "scale1" type: "Scale" bottom: "x" top: "scale1" scale_param { axis: 1 num_axes: 2 } }
layer { name: "bias2" type: "Bias" bottom: "x" bottom: "s" top: "bias2" bias_param { axis: 0 } }
layer { name: "bias1" type: "Bias" bottom: "x" top: "bias1" bias_param { axis: 2 } }
layer { name: "embed" type: "Embed" bottom: "ids" top: "embed" embed_param { input_dim: 9 num_output: 5 } }
layer { name: "argmax_axis" type: "ArgMax" bottom: "x" top: "argmax_axis" argmax_param { axis: 1 top_k: 2 } }
layer { name: "argmax_val" type: "ArgMax" bottom: "x" top: "argmax_val" argmax_param { top_k: 3 out_max_val: true } }
layer { name: "argmax" type: "ArgMax" bottom: "x" top: "argmax" }
layer { name: "r_sum" type: "Reduction" bottom: "x" top: "r_sum" reduction_param { axis: 1 coeff: 0.5 } }
layer { name: "r_asum" type: "Reduction" bottom: "x" top: "r_asum" reduction_param { operation: ASUM axis: 2 } }
layer { name: "r_sumsq" type: "Reduction" bottom: "x" top: "r_sumsq" reduction_param { operation: SUMSQ } }
layer { name: "r_mean" type: "Reduction" bottom: "x" top: "r_mean" reduction_param { operation: MEAN axis: -1 coeff: 2 } }
layer { name: "tile" type: "Tile" bottom: "x" top: "tile" tile_param { axis: 2 tiles: 3 } }
layer { name: "bn2d" type: "BatchNorm" bottom: "s" top: "bn2d" }
"""


@pytest.mark.parametrize('opset', [13, 17, 18])
def test_every_other_layer(opset):
    net = net_from_text(LAYER_ZOO)
    randomize(net)
    feeds = random_feeds(net, integer_inputs={'ids': 9})
    feeds['x'] += np.arange(feeds['x'].size, dtype=np.float32).reshape(feeds['x'].shape) * 1e-3
    model = assert_same_outputs(net, feeds, opset=opset)
    assert model.opset_import[0].version == opset


RECURRENT = """
name: "recurrent"
layer { name: "input" type: "Input" top: "x" top: "cont" top: "static" top: "h0" top: "c0"
  input_param { shape { dim: 5 dim: 3 dim: 2 dim: 3 } shape { dim: 5 dim: 3 } shape { dim: 3 dim: 4 }
                shape { dim: 1 dim: 3 dim: 7 } shape { dim: 1 dim: 3 dim: 7 } } }
layer { name: "lstm_static" type: "LSTM" bottom: "x" bottom: "cont" bottom: "static" top: "lstm_static"
  recurrent_param { num_output: 7 } }
layer { name: "lstm_exposed" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" bottom: "c0"
  top: "lstm_exposed" top: "hT" top: "cT" recurrent_param { num_output: 7 expose_hidden: true } }
layer { name: "rnn" type: "RNN" bottom: "x" bottom: "cont" bottom: "static" top: "rnn"
  recurrent_param { num_output: 6 } }
layer { name: "rnn_exposed" type: "RNN" bottom: "x" bottom: "cont" bottom: "h0"
  top: "rnn_exposed" top: "rnn_hT" recurrent_param { num_output: 7 expose_hidden: true } }
"""


def test_lstm_and_rnn_static_input_and_exposed_state():
    net = net_from_text(RECURRENT)
    randomize(net)
    feeds = random_feeds(net, cont_inputs={'cont'})
    feeds['cont'][0] = [0, 1, 1]           # exposed state: a new and two continued streams
    with pytest.raises(CaffeliteError, match='continues the previous pass'):
        assert_same_outputs(net, feeds)
    feeds['cont'][0] = 0
    model = assert_same_outputs(net, feeds)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('LSTM') == 2 and ops.count('RNN') == 2


def test_a_restart_mid_pass_is_refused_at_run_time():
    net = net_from_text(RECURRENT)
    feeds = random_feeds(net, cont_inputs={'cont'})
    feeds['cont'][3, 2] = 0
    runner = OnnxNet(export(net).SerializeToString())
    with pytest.raises(CaffeliteError, match=r'layer "lstm_static".*stream 2 restarts at t = 3'):
        runner.forward(**feeds)


# -- pooling: Caffe's output size in the ceil cases --------------------------------------------
@pytest.mark.parametrize('method', ['MAX', 'AVE'])
@pytest.mark.parametrize('size, kernel, stride, pad, round_mode', [
    (7, 3, 2, 0, 'CEIL'), (8, 3, 2, 0, 'CEIL'), (6, 2, 2, 1, 'CEIL'), (10, 3, 3, 1, 'CEIL'),
    (4, 3, 2, 1, 'CEIL'), (13, 5, 3, 2, 'CEIL'), (5, 4, 3, 0, 'CEIL'), (9, 2, 3, 1, 'CEIL'),
    (7, 3, 2, 1, 'FLOOR'), (8, 3, 2, 0, 'FLOOR'), (11, 4, 2, 2, 'FLOOR'),
])
def test_pooling_shapes_and_values(method, size, kernel, stride, pad, round_mode):
    text = f"""
    layer {{ name: "data" type: "Input" top: "data"
      input_param {{ shape {{ dim: 2 dim: 3 dim: {size} dim: {size + 1} }} }} }}
    layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
      pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} pad: {pad}
                       round_mode: {round_mode} }} }}"""
    net = net_from_text(text)
    model = export(net)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert tuple(dims) == net.blobs['pool'].shape
    assert_same_outputs(net, random_feeds(net), model)


def test_the_issues_layer_list_is_covered():
    wanted = {'Convolution', 'Deconvolution', 'Pooling', 'LRN', 'InnerProduct', 'ReLU',
              'Sigmoid', 'TanH', 'ELU', 'PReLU', 'AbsVal', 'BNLL', 'Power', 'Exp', 'Log',
              'Threshold', 'Softmax', 'BatchNorm', 'Scale', 'Bias', 'Eltwise', 'Concat', 'Slice',
              'Split', 'Flatten', 'Reshape', 'Crop', 'Dropout', 'Embed', 'ArgMax', 'Reduction',
              'Tile', 'LSTM', 'RNN'}
    assert wanted <= set(supported_types())


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize('layer_text, why', [
    ('layer { name: "loss" type: "EuclideanLoss" bottom: "data" bottom: "data" top: "loss" }',
     'a loss layer'),
    ('layer { name: "py" type: "Python" bottom: "data" bottom: "data" top: "y" '
     'python_param { module: "pyloss" layer: "EuclideanLossLayer" } }', 'Python'),
    ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" '
     'pooling_param { pool: MAX kernel_size: 2 } }', 'argmax mask'),
    ('layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" }', 'no converter'),
])
def test_unsupported_layers_are_named(layer_text, why, monkeypatch):
    monkeypatch.syspath_prepend(str(MODELS))
    net = net_from_text('layer { name: "data" type: "Input" top: "data" '
                        'input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }' + layer_text,
                        caffelite.TRAIN)
    name = text_format.Parse(layer_text, pb.NetParameter()).layer[0].name
    with pytest.raises(UnsupportedLayer, match=f'layer "{name}".*{why}'):
        export(net)


def test_data_layer_is_refused():
    net = net_from_text('layer { name: "noise" type: "DummyData" top: "x" '
                        'dummy_data_param { shape { dim: 2 dim: 3 } } }'
                        'layer { name: "relu" type: "ReLU" bottom: "x" top: "y" }')
    with pytest.raises(UnsupportedLayer, match='layer "noise" .*a data layer'):
        export(net)


def test_unsupported_opset():
    net = net_from_text(SQUEEZENET_STYLE)
    with pytest.raises(CaffeliteError, match='opset 9 is not supported'):
        export(net, opset=9)


# -- the command ---------------------------------------------------------------------------------
def _caffelite(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', 'caffelite', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_export_onnx_command(tmp_path):
    net = caffelite.Net(str(ROOT / 'prototxt' / 'lrcn_deploy_image.prototxt'), caffelite.TEST)
    randomize(net)
    weights = tmp_path / 'image.caffemodel'
    net.save(str(weights))
    out = tmp_path / 'image.onnx'
    result = _caffelite('export_onnx', '--model', str(ROOT / 'prototxt' /
                                                      'lrcn_deploy_image.prototxt'),
                        '--weights', str(weights), '--output', str(out), '--opset', '18',
                        '--input', 'data:2,3,64,64', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'image.onnx' in result.stderr
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 18
    net.blobs['data'].reshape((2, 3, 64, 64))
    net.reshape()
    assert_same_outputs(net, random_feeds(net), model)

    bad = tmp_path / 'bad.prototxt'
    bad.write_text((ROOT / 'prototxt' / 'lrcn_deploy_image.prototxt').read_text() +
                   'layer { name: "loss" type: "EuclideanLoss" bottom: "fc_image" '
                   'bottom: "fc_image" top: "loss" }\n')
    result = _caffelite('export_onnx', '-model', str(bad), '-output', str(tmp_path / 'x.onnx'),
                        cwd=tmp_path)
    assert result.returncode == 1
    assert 'layer "loss" (type EuclideanLoss) cannot be exported to ONNX' in result.stderr
    assert 'Traceback' not in result.stderr
