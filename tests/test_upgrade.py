"""caffelite.upgrade: V0 / V1 nets and old solvers read in the current format (Caffe's
upgrade_proto), with a warning naming the file."""
import warnings

import numpy as np
import pytest
from google.protobuf import text_format

from caffelite import Net
from caffelite.errors import CaffeliteError
from caffelite.proto import caffelite_pb2 as pb
from caffelite.upgrade import (UpgradeWarning, net_needs_upgrade, upgrade_net_param,
                               upgrade_solver_param)

# Caffe's LeNet as it was written in 2014 (V1: enum types, blobs_lr, weight_decay, the
# transformation fields inside data_param), made smaller.
V1_LENET = '''
name: "LeNet"
layers {
  name: "mnist"
  type: DATA
  top: "data"
  top: "label"
  data_param {
    source: "mnist_train_lmdb"
    backend: LMDB
    batch_size: 4
    mean_file: "mean.binaryproto"
    scale: 0.00390625
  }
  include: { phase: TRAIN }
}
layers {
  name: "mnist"
  type: DATA
  top: "data"
  top: "label"
  data_param {
    source: "mnist_test_lmdb"
    backend: LMDB
    batch_size: 2
    scale: 0.00390625
  }
  include: { phase: TEST }
}
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  blobs_lr: 1
  blobs_lr: 2
  convolution_param {
    num_output: 4
    kernel_size: 5
    stride: 1
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layers {
  name: "pool1"
  type: POOLING
  bottom: "conv1"
  top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layers {
  name: "ip1"
  type: INNER_PRODUCT
  bottom: "pool1"
  top: "ip1"
  blobs_lr: 1
  blobs_lr: 2
  weight_decay: 1
  weight_decay: 0
  inner_product_param {
    num_output: 8
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
layers {
  name: "ip2"
  type: INNER_PRODUCT
  bottom: "ip1"
  top: "ip2"
  param: "shared_w"
  blobs_lr: 1
  blobs_lr: 2
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } }
}
layers {
  name: "accuracy"
  type: ACCURACY
  bottom: "ip2"
  bottom: "label"
  top: "accuracy"
  include: { phase: TEST }
}
layers {
  name: "loss"
  type: SOFTMAX_LOSS
  bottom: "ip2"
  bottom: "label"
  top: "loss"
  loss_weight: 0.5
}
'''

V2_LENET = '''
name: "LeNet"
layer {
  name: "mnist" type: "Data" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 mean_file: "mean.binaryproto" }
  data_param { source: "mnist_train_lmdb" batch_size: 4 backend: LMDB }
}
layer {
  name: "mnist" type: "Data" top: "data" top: "label"
  include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "mnist_test_lmdb" batch_size: 2 backend: LMDB }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param {
    num_output: 4 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" }
  }
}
layer {
  name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layer {
  name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param {
    num_output: 8 weight_filler { type: "xavier" } bias_filler { type: "constant" }
  }
}
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer {
  name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { name: "shared_w" lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } }
}
layer {
  name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST }
}
layer {
  name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss"
  loss_weight: 0.5
}
'''


def parse(text, message=None):
    return text_format.Parse(text, message or pb.NetParameter())


def upgraded(text, source='old.prototxt'):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = upgrade_net_param(parse(text), source)
    return result, [str(w.message) for w in caught if w.category is UpgradeWarning]


def test_v1_lenet_upgrades_to_the_current_format():
    result, messages = upgraded(V1_LENET, 'lenet_v1.prototxt')
    assert result == parse(V2_LENET), text_format.MessageToString(result)
    assert not result.layers
    assert any('deprecated V1LayerParameter: lenet_v1.prototxt' in m for m in messages)
    assert any('deprecated transformation parameters: lenet_v1.prototxt' in m
               for m in messages)
    assert not net_needs_upgrade(result)


def test_current_net_is_returned_as_is_without_warning():
    param = parse(V2_LENET)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert upgrade_net_param(param, 'x') is param


def _write_lenet_data(folder, count=6):
    """The LMDBs and mean file V1_LENET reads: 1 x 12 x 12 uint8 digits."""
    from caffelite.io import write_mean_binaryproto
    from caffelite.io import array_to_datum
    from caffelite.data.db import LMDBWriter
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(count, 1, 12, 12), dtype=np.uint8)
    labels = np.arange(count) % 3
    for name in ('mnist_train_lmdb', 'mnist_test_lmdb'):
        with LMDBWriter(str(folder / name)) as db:
            for i in range(count):
                db.put(f'{i:08d}', array_to_datum(images[i], labels[i]).SerializeToString())
    mean = images.astype(np.float64).mean(axis=0).astype(np.float32)
    write_mean_binaryproto(str(folder / 'mean.binaryproto'), mean)
    return images, labels, mean


def test_v1_lenet_file_builds_a_net_with_the_warning(tmp_path):
    pytest.importorskip('lmdb')
    images, labels, mean = _write_lenet_data(tmp_path)
    path = tmp_path / 'lenet_v1.prototxt'
    path.write_text(V1_LENET)
    with pytest.warns(UpgradeWarning) as record:
        net = Net(str(path), pb.TRAIN)
    messages = [str(w.message) for w in record]
    assert any(f'deprecated V1LayerParameter: {path}' in m for m in messages)
    assert any(f'deprecated transformation parameters: {path}' in m for m in messages)
    assert [lp.type for lp in net.param.layer] == [
        'Data', 'Convolution', 'Pooling', 'InnerProduct', 'ReLU', 'InnerProduct',
        'SoftmaxWithLoss']
    assert net.params_lr == [1, 2, 1, 2, 1, 2]
    assert net.params_weight_decay == [1, 1, 1, 0, 1, 1]
    assert net.blob_loss_weights['loss'] == 0.5
    net.forward()
    expected = (images[:4].astype(np.float32) - mean) * np.float32(0.00390625)
    np.testing.assert_allclose(net.blobs['data'].data, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(net.blobs['label'].data, labels[:4])
    assert net.blobs['conv1'].data.shape == (4, 4, 8, 8)
    with pytest.warns(UpgradeWarning):
        test_net = Net(str(path), pb.TEST)
    assert 'accuracy' in test_net.blobs and test_net.blobs['data'].shape == (2, 1, 12, 12)


V0_NET = '''
name: "v0net"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 6 input_dim: 6
layers {
  layer { name: "pad1" type: "padding" pad: 2 }
  bottom: "data" top: "pad1"
}
layers {
  layer {
    name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 1 group: 1
    biasterm: false weight_filler { type: "gaussian" std: 0.1 }
    blobs_lr: 1 weight_decay: 1
  }
  bottom: "pad1" top: "conv1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers {
  layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.0001 beta: 0.75 }
  bottom: "conv1" top: "norm1"
}
layers {
  layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
  bottom: "norm1" top: "pool1"
}
layers {
  layer { name: "fc" type: "innerproduct" num_output: 5 bias_filler { type: "constant" value: 1 } }
  bottom: "pool1" top: "fc"
}
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.25 } bottom: "fc" top: "fc" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc" top: "prob" }
'''

V0_EXPECTED = '''
name: "v0net"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 6 input_dim: 6
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  convolution_param {
    num_output: 4 bias_term: false pad: 2 kernel_size: 3 group: 1 stride: 1
    weight_filler { type: "gaussian" std: 0.1 }
  }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
  lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 }
}
layer {
  name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 }
}
layer {
  name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
  inner_product_param { num_output: 5 bias_filler { type: "constant" value: 1 } }
}
layer {
  name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.25 }
}
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''


def test_v0_net_with_padding_layer_upgrades_and_builds():
    result, messages = upgraded(V0_NET, 'v0.prototxt')
    assert result == parse(V0_EXPECTED), text_format.MessageToString(result)
    assert any('deprecated V0LayerParameter: v0.prototxt' in m for m in messages)
    assert any('deprecated V1LayerParameter: v0.prototxt' in m for m in messages)
    with pytest.warns(UpgradeWarning):
        net = Net(parse(V0_NET), pb.TEST, source='v0.prototxt')
    assert net.blobs['conv1'].shape == (2, 4, 8, 8)      # 6 + 2 * pad 2 - 3 + 1
    assert net.blobs['pool1'].shape == (2, 4, 4, 4)
    assert net.blobs['prob'].shape == (2, 5)
    out = net.forward(data=np.ones((2, 3, 6, 6), np.float32))
    np.testing.assert_allclose(out['prob'].sum(axis=1), 1, rtol=1e-5)


def test_v0_data_layer_settings_move_to_their_params():
    text = '''
    layers {
      layer { name: "d" type: "data" source: "db" batchsize: 8 rand_skip: 3 meanfile: "m"
              cropsize: 5 mirror: true scale: 0.5 }
      top: "data" top: "label"
    }
    layers {
      layer { name: "w" type: "window_data" source: "w.txt" batchsize: 4 det_fg_threshold: 0.6
              det_bg_threshold: 0.4 det_fg_fraction: 0.5 det_context_pad: 2
              det_crop_mode: "square" }
      top: "wdata" top: "wlabel"
    }
    layers {
      layer { name: "i" type: "images" source: "list" batchsize: 2 shuffle_images: true
              new_height: 7 new_width: 9 }
      top: "idata" top: "ilabel"
    }
    layers { layer { name: "c" type: "concat" concat_dim: 0 } bottom: "data" bottom: "idata"
             top: "cat" }
    '''
    result, _ = upgraded(text)
    expected = parse('''
    layer { name: "d" type: "Data" top: "data" top: "label"
      transform_param { scale: 0.5 mirror: true crop_size: 5 mean_file: "m" }
      data_param { source: "db" batch_size: 8 rand_skip: 3 } }
    layer { name: "w" type: "WindowData" top: "wdata" top: "wlabel"
      window_data_param { source: "w.txt" batch_size: 4 fg_threshold: 0.6 bg_threshold: 0.4
                          fg_fraction: 0.5 context_pad: 2 crop_mode: "square" } }
    layer { name: "i" type: "ImageData" top: "idata" top: "ilabel"
      image_data_param { source: "list" batch_size: 2 shuffle: true new_height: 7
                         new_width: 9 } }
    layer { name: "c" type: "Concat" bottom: "data" bottom: "idata" top: "cat"
      concat_param { concat_dim: 0 } }
    ''')
    assert result == expected, text_format.MessageToString(result)


def test_v0_parameter_of_another_type_is_dropped_with_a_warning():
    text = '''layers { layer { name: "r" type: "relu" num_output: 3 kernelsize: 2 }
              bottom: "x" top: "y" }
              input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1'''
    result, messages = upgraded(text)
    assert result.layer[0].type == 'ReLU' and not result.layer[0].HasField('relu_param')
    problem = [m for m in messages if 'problems upgrading V0NetParameter' in m]
    assert problem and 'num_output' in problem[0] and 'kernelsize' in problem[0]


def test_v0_errors_name_the_file_and_layer():
    with pytest.raises(CaffeliteError, match=r'old.prototxt.*unknown V0 layer type "magic"'):
        upgraded('layers { layer { name: "m" type: "magic" } }')
    bad_pad = '''input: "x"
      layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "p" }
      layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }'''
    with pytest.raises(CaffeliteError, match='padding layer "p" feeds layer "r"'):
        upgraded(bad_pad)
    with pytest.raises(CaffeliteError, match='reads blob "nowhere"'):
        upgraded('layers { layer { name: "r" type: "relu" } bottom: "nowhere" top: "r" }')


def test_v1_keeps_rules_sharing_modes_blobs_and_all_type_params():
    text = '''
    layers {
      name: "c" type: DECONVOLUTION bottom: "x" top: "y"
      param: "w" param: "b" blob_share_mode: PERMISSIVE blobs_lr: 0 weight_decay: 2
      exclude { phase: TEST stage: "deploy" }
      convolution_param { num_output: 2 kernel_size: 2 }
      blobs { shape { dim: 2 } data: 1 data: 2 }
    }
    layers { name: "t" type: THRESHOLD bottom: "y" top: "z" threshold_param { threshold: 0.3 } }
    layers { name: "s" type: SLICE bottom: "z" top: "a" top: "b"
             slice_param { axis: 1 slice_point: 1 } }
    layers { name: "e" type: ELTWISE bottom: "a" bottom: "b" top: "c"
             eltwise_param { operation: MAX } }
    layers { name: "l" type: SIGMOID_CROSS_ENTROPY_LOSS bottom: "c" bottom: "c" top: "loss"
             loss_param { ignore_label: 1 } }
    '''
    result, _ = upgraded(text)
    expected = parse('''
    layer {
      name: "c" type: "Deconvolution" bottom: "x" top: "y"
      param { name: "w" share_mode: PERMISSIVE lr_mult: 0 decay_mult: 2 } param { name: "b" }
      exclude { phase: TEST stage: "deploy" }
      blobs { shape { dim: 2 } data: 1 data: 2 }
      convolution_param { num_output: 2 kernel_size: 2 }
    }
    layer { name: "t" type: "Threshold" bottom: "y" top: "z" threshold_param { threshold: 0.3 } }
    layer { name: "s" type: "Slice" bottom: "z" top: "a" top: "b"
            slice_param { axis: 1 slice_point: 1 } }
    layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c"
            eltwise_param { operation: MAX } }
    layer { name: "l" type: "SigmoidCrossEntropyLoss" bottom: "c" bottom: "c" top: "loss"
            loss_param { ignore_label: 1 } }
    ''')
    assert result == expected, text_format.MessageToString(result)


def test_image_and_window_data_transform_fields_move():
    text = '''
    layers { name: "i" type: IMAGE_DATA top: "d" top: "l"
             image_data_param { source: "s" crop_size: 3 mirror: true mean_file: "m" } }
    layers { name: "w" type: WINDOW_DATA top: "e" top: "f"
             window_data_param { source: "w" scale: 2 crop_size: 5 } }
    '''
    result, messages = upgraded(text)
    assert result.layer[0].transform_param == pb.TransformationParameter(
        crop_size=3, mirror=True, mean_file='m')
    assert result.layer[0].image_data_param == pb.ImageDataParameter(source='s')
    assert result.layer[1].transform_param == pb.TransformationParameter(scale=2, crop_size=5)
    assert result.layer[1].window_data_param == pb.WindowDataParameter(source='w')
    assert any('transformation parameters' in m for m in messages)


def test_layer_and_layers_together_is_an_error():
    text = 'layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }'
    with pytest.raises(CaffeliteError, match='both "layer" fields and deprecated V1'):
        upgraded(text, 'mixed.prototxt')


def test_batch_norm_statistics_params_get_zero_rates():
    text = '''layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y"
              param { lr_mult: 1 } param { lr_mult: 1 decay_mult: 0 } param { lr_mult: 0 } }'''
    result, messages = upgraded(text)
    assert [(p.lr_mult, p.decay_mult) for p in result.layer[0].param] == [(0, 0)] * 3
    assert any('batch norm' in m for m in messages)
    fixed = parse('''layer { name: "bn" type: "BatchNorm" param { lr_mult: 0 decay_mult: 0 }
                     param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 } }''')
    assert not net_needs_upgrade(fixed)
    as_caffe_writes = parse('''layer { name: "bn" type: "BatchNorm" param { lr_mult: 0 }
                               param { lr_mult: 0 } param { lr_mult: 0 } }''')
    assert not net_needs_upgrade(as_caffe_writes)


@pytest.mark.parametrize('enum,name', [('SGD', 'SGD'), ('NESTEROV', 'Nesterov'),
                                       ('ADAGRAD', 'AdaGrad'), ('RMSPROP', 'RMSProp'),
                                       ('ADADELTA', 'AdaDelta'), ('ADAM', 'Adam')])
def test_solver_type_enum_becomes_type_string(enum, name):
    param = text_format.Parse(f'base_lr: 0.1 solver_type: {enum}', pb.SolverParameter())
    with pytest.warns(UpgradeWarning, match="deprecated 'solver_type' field.*s.prototxt"):
        upgrade_solver_param(param, 's.prototxt')
    assert param.type == name and not param.HasField('solver_type')


def test_solver_with_both_type_fields_is_an_error():
    param = text_format.Parse('solver_type: ADAM type: "Adam"', pb.SolverParameter())
    with pytest.raises(CaffeliteError, match='s.prototxt.*cannot both be given'):
        upgrade_solver_param(param, 's.prototxt')


def test_a_solver_file_is_read_and_upgraded_once(tmp_path):
    """get_solver(path) reads the file once: one upgrade warning, and the solver it names."""
    from caffelite import get_solver
    (tmp_path / 'net.prototxt').write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
        'inner_product_param { num_output: 1 } }\n')
    path = tmp_path / 's.prototxt'
    path.write_text(f'net: "{tmp_path / "net.prototxt"}" base_lr: 0.1 lr_policy: "fixed" solver_type: ADAM')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        solver = get_solver(str(path))
    upgrades = [w for w in caught if w.category is UpgradeWarning]
    assert len(upgrades) == 1 and 's.prototxt' in str(upgrades[0].message)
    assert solver.type == 'Adam' and solver.param.type == 'Adam'


def test_net_input_fields_become_an_input_layer_in_the_one_net_upgrade():
    from caffelite.upgrade import upgrade_net_as_needed
    param = parse('input: "a" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 '
                  'input: "b" input_dim: 5 input_dim: 1 input_dim: 1 input_dim: 1 '
                  'layer { name: "f" type: "Flatten" bottom: "a" top: "f" }')
    result = upgrade_net_as_needed(param, 'deploy.prototxt')
    assert not result.input and not result.input_dim and param.input      # a copy
    assert [(lp.name, lp.type) for lp in result.layer] == [('input', 'Input'), ('f', 'Flatten')]
    assert list(result.layer[0].top) == ['a', 'b']
    assert [list(s.dim) for s in result.layer[0].input_param.shape] == [[1, 2, 3, 4],
                                                                         [5, 1, 1, 1]]
    current = parse('layer { name: "x" type: "Input" top: "x" }')
    assert upgrade_net_as_needed(current) is current
    with pytest.raises(CaffeliteError, match='deploy.prototxt: input_dim must give 4 dims'):
        upgrade_net_as_needed(parse('input: "a" input_dim: 1 input_dim: 2'), 'deploy.prototxt')
