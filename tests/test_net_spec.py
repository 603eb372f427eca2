"""pycaffe's NetSpec (caffe.NetSpec, caffe.layers, caffe.params, to_proto) and coord_map."""
import numpy as np
import pytest
from google.protobuf import text_format

from caffelite import coord_map
from caffelite.net import Net
from caffelite.net_spec import NetSpec, layers as L, param_name_dict, params as P, to_proto
from caffelite.proto import caffelite_pb2 as pb


def lenet(source, batch_size):
    """Caffe's examples/01-learning-lenet.ipynb net, verbatim."""
    n = NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=source,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


LENET_TEXT = '''
layer { name: "data" type: "Data" top: "data" top: "label"
        transform_param { scale: 0.00392156862745 }
        data_param { source: "mnist_train_lmdb" batch_size: 64 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc1" type: "InnerProduct" bottom: "pool2" top: "fc1"
        inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "score" type: "InnerProduct" bottom: "fc1" top: "score"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
'''


def test_lenet_to_proto_is_caffes_prototxt():
    net = lenet('mnist_train_lmdb', 64)
    expected = text_format.Parse(LENET_TEXT, pb.NetParameter())
    # float text round-off in the scale aside, the messages are equal
    assert net.layer[0].transform_param.scale == pytest.approx(1 / 255)
    net.layer[0].transform_param.scale = expected.layer[0].transform_param.scale
    assert net == expected
    # the text form parses back to the same message
    assert text_format.Parse(str(net), pb.NetParameter()) == net


def test_lenet_text_builds_a_net_that_trains_forward_backward(tmp_path):
    """The same LeNet with DummyData (no LMDB here): its prototxt text builds a Net with
    LeNet's blob shapes and runs forward/backward."""
    n = NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[2, 1, 28, 28]), dict(dim=[2])],
                                  data_filler=[dict(type='gaussian', std=1.0),
                                               dict(type='constant', value=3)], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'),
                           param=[dict(lr_mult=1), dict(lr_mult=2)])
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    path = tmp_path / 'lenet.prototxt'
    path.write_text(str(n.to_proto()))
    net = Net(str(path), pb.TRAIN)
    shapes = {name: blob.shape for name, blob in net.blobs.items()}
    assert shapes['conv1'] == (2, 20, 24, 24) and shapes['pool1'] == (2, 20, 12, 12)
    assert shapes['conv2'] == (2, 50, 8, 8) and shapes['pool2'] == (2, 50, 4, 4)
    assert shapes['fc1'] == (2, 500) and shapes['score'] == (2, 10)
    assert net.params_lr[net.learnable_params.index(net.params['fc1'][1])] == 2
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    assert np.abs(net.params['conv1'][0].diff).sum() > 0


def test_automatic_names_and_counters():
    data = L.Input(shape=dict(dim=[1, 4]))
    ip_a = L.InnerProduct(data, num_output=3)
    ip_b = L.InnerProduct(ip_a, num_output=2)
    net = to_proto(L.ReLU(ip_b))
    assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer] == [
        ('Input1', 'Input', [], ['Input1']),
        ('InnerProduct1', 'InnerProduct', ['Input1'], ['InnerProduct1']),
        ('InnerProduct2', 'InnerProduct', ['InnerProduct1'], ['InnerProduct2']),
        ('ReLU1', 'ReLU', ['InnerProduct2'], ['ReLU1'])]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 4]
    # a NetSpec names what it holds; unnamed tops of a multi-top layer count per type
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 6]))
    n.first, _ = L.Slice(n.data, slice_param=dict(axis=1, slice_point=[2]), ntop=2)
    n['sil'] = L.Silence(n.first, ntop=0)
    proto = n.to_proto()
    assert [(l.name, list(l.top)) for l in proto.layer] == [
        ('data', ['data']), ('first', ['first', 'Slice1']), ('sil', [])]
    assert list(proto.layer[1].slice_param.slice_point) == [2]
    assert n.keys() == ['data', 'first', 'sil'] and n['data'] is n.data


def test_parameter_routing():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1, stride=[2],
                           bias_term=False, weight_filler=dict(type='gaussian', std=0.1),
                           param=dict(lr_mult=3, decay_mult=0), propagate_down=[True],
                           include=dict(phase=pb.TEST), loss_weight=0.5)
    n.py = L.Python(n.conv, module='my_layers', layer='MyLayer', param_str='{"k": 1}')
    conv, py = n.to_proto().layer[1:]
    assert list(conv.convolution_param.kernel_size) == [3] and conv.convolution_param.pad == [1]
    assert list(conv.convolution_param.stride) == [2] and not conv.convolution_param.bias_term
    assert conv.convolution_param.weight_filler.std == pytest.approx(0.1)
    assert conv.param[0].lr_mult == 3 and conv.param[0].decay_mult == 0
    assert list(conv.propagate_down) == [True] and conv.include[0].phase == pb.TEST
    assert list(conv.loss_weight) == [0.5]
    assert (py.python_param.module, py.python_param.layer) == ('my_layers', 'MyLayer')
    assert py.python_param.param_str == '{"k": 1}'
    n.update('conv', dict(num_output=8))
    assert n.to_proto().layer[1].convolution_param.num_output == 8
    n.bad = L.ReLU(n.conv, no_such_field=1)
    with pytest.raises(AttributeError, match='no_such_field'):
        n.to_proto()


def test_params_and_param_names():
    assert P.Pooling.MAX == pb.PoolingParameter.MAX and P.Pooling.AVE == pb.PoolingParameter.AVE
    assert P.Data.LMDB == pb.DataParameter.LMDB and P.Eltwise.SUM == pb.EltwiseParameter.SUM
    names = param_name_dict()
    assert names['InnerProduct'] == 'inner_product' and names['Convolution'] == 'convolution'
    assert names['Python'] == 'python' and names['LRN'] == 'lrn'
    with pytest.raises(TypeError, match='is not a Top'):
        L.ReLU('data')
    with pytest.raises(AttributeError):
        NetSpec().missing


# -- coord_map ----------------------------------------------------------------------------------
def fcn():
    """data -> conv1 (k3, pad 5) -> relu -> pool (k2 s2) -> conv2 (k3, dilation 1)
    -> deconv (k4 s2), the FCN pattern."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv1 = L.Convolution(n.data, kernel_size=3, pad=5, num_output=2,
                            weight_filler=dict(type='gaussian', std=0.1))
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool = L.Pooling(n.relu1, pooling_param=dict(kernel_size=2, stride=2, pool=P.Pooling.MAX))
    n.conv2 = L.Convolution(n.pool, kernel_size=3, num_output=2,
                            weight_filler=dict(type='gaussian', std=0.1))
    n.up = L.Deconvolution(n.conv2, convolution_param=dict(kernel_size=4, stride=2,
                                                           num_output=1, bias_term=False))
    return n


def test_coord_map_by_hand():
    """y_top = a y_bottom + b per layer: conv1 a=1 b=pad-(k-1)/2=4; pool a=1/2
    b=(0-1/2)/2=-1/4; conv2 a=1 b=-1; deconv a=2 b=(4-1)/2=3/2. Composed:
    y_up = 2 ((y + 4)/2 - 1/4 - 1) + 3/2 = y + 3, so up -> data is y - 3."""
    n = fcn()
    axis, a, b = coord_map.coord_map_from_to(n.up, n.data)
    assert axis == 1
    np.testing.assert_allclose(a, 1)
    np.testing.assert_allclose(b, -3)
    axis, a, b = coord_map.coord_map_from_to(n.pool, n.data)
    np.testing.assert_allclose(a, 2)
    np.testing.assert_allclose(b, -3.5)             # y = 2 (y_pool + 1/4) - 4
    axis, a, b = coord_map.coord_map_from_to(n.data, n.conv2)
    np.testing.assert_allclose(a, 0.5)
    np.testing.assert_allclose(b, 0.75)             # y_conv2 = (y + 4)/2 - 1/4 - 1
    # dilation widens the kernel: k=3, dilation 2 -> extent 5, b = 0 - 2
    n.dil = L.Convolution(n.data, kernel_size=3, dilation=2, num_output=1)
    np.testing.assert_allclose(coord_map.coord_map_from_to(n.dil, n.data)[2], 2)


def test_crop_aligns_and_builds(tmp_path):
    n = fcn()
    n.score = coord_map.crop(n.up, n.data)
    proto = n.to_proto()
    crop = proto.layer[-1]
    assert crop.type == 'Crop' and list(crop.bottom) == ['up', 'data']
    assert crop.crop_param.axis == 2 and list(crop.crop_param.offset) == [3]
    path = tmp_path / 'fcn.prototxt'
    path.write_text(str(proto))
    net = Net(str(path), pb.TEST)
    assert net.blobs['up'].shape == (1, 1, 16, 16)
    assert net.blobs['score'].shape == (1, 1, 10, 10)
    net.forward()
    np.testing.assert_array_equal(net.blobs['score'].data, net.blobs['up'].data[:, :, 3:13, 3:13])


def test_crop_errors():
    n = fcn()
    with pytest.raises(ValueError, match='scale mismatch'):
        coord_map.crop(n.pool, n.data)
    with pytest.raises(ValueError, match='negative offset'):
        coord_map.crop(n.data, n.up)
    other = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    with pytest.raises(RuntimeError, match='Could not compute map'):
        coord_map.coord_map_from_to(n.up, other)
