"""Net construction rules (Caffe's): state filtering, splits, in-place, loss weights, sharing,
propagate_down, force_backward, reshape, errors; checked on small float64 nets."""
import numpy as np
import pytest

import caffelite as caffe
from caffelite.errors import CaffeliteError
from caffelite.gradient_check import check_net_gradient
from caffelite.net_rules import filter_net, insert_splits
from caffelite.prototxt import parse_prototxt_text
from caffelite.proto import caffelite_pb2 as pb

pytestmark = pytest.mark.usefixtures('array_backend')


def net_param(text):
    return parse_prototxt_text(text, pb.NetParameter())


def build(text, phase=caffe.TRAIN, **kw):
    net = caffe.Net(net_param(text), phase, dtype=np.float64, **kw)
    rng = np.random.default_rng(0)
    for name in net.inputs:
        net.blobs[name].data[...] = rng.standard_normal(net.blobs[name].shape)
    return net


MLP = '''
name: "mlp"
input: "data" input_shape { dim: 4 dim: 5 }
input: "label" input_shape { dim: 4 }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
'''


def mlp(**kw):
    net = build(MLP, **kw)
    net.blobs['label'].data[...] = [0, 2, 1, 2]
    return net


# -- NetState filtering ----------------------------------------------------------------------

def state(phase=pb.TRAIN, level=0, stages=()):
    return pb.NetState(phase=phase, level=level, stage=list(stages))


FILTER = '''
layer { name: "all" type: "Input" top: "a" }
layer { name: "train" type: "Input" top: "b" include { phase: TRAIN } }
layer { name: "test" type: "Input" top: "c" include { phase: TEST } }
layer { name: "staged" type: "Input" top: "d" include { stage: "x" stage: "y" } }
layer { name: "not_x" type: "Input" top: "e" include { not_stage: "x" } }
layer { name: "level" type: "Input" top: "f" include { min_level: 1 max_level: 2 } }
layer { name: "no_test" type: "Input" top: "g" exclude { phase: TEST } }
layer { name: "either" type: "Input" top: "h" include { stage: "x" } include { phase: TEST } }
'''


@pytest.mark.parametrize('st, expected', [
    (state(), ['all', 'train', 'not_x', 'no_test']),
    (state(pb.TEST), ['all', 'test', 'not_x', 'either']),
    (state(stages=['x']), ['all', 'train', 'no_test', 'either']),
    (state(stages=['x', 'y']), ['all', 'train', 'staged', 'no_test', 'either']),
    (state(level=1), ['all', 'train', 'not_x', 'level', 'no_test']),
    (state(level=3), ['all', 'train', 'not_x', 'no_test']),
])
def test_filter_net_follows_caffe_rules(st, expected):
    assert [l.name for l in filter_net(net_param(FILTER), st).layer] == expected


def test_include_and_exclude_together_is_an_error():
    with pytest.raises(CaffeliteError, match='both include and exclude'):
        filter_net(net_param('layer { name: "x" type: "Input" top: "a" '
                             'include { phase: TRAIN } exclude { phase: TEST } }'), state())


def test_net_built_with_stages_and_level():
    net = caffe.Net(net_param(FILTER), caffe.TRAIN, level=1, stages=['x', 'y'])
    assert net._layer_names == ['all', 'train', 'staged', 'level', 'no_test', 'either']


# -- inputs, splits, in-place ----------------------------------------------------------------

def test_input_fields_become_an_input_layer():
    net = build('input: "data" input_dim: 2 input_dim: 3 input_dim: 4 input_dim: 5')
    assert net.inputs == ['data'] and net.blobs['data'].shape == (2, 3, 4, 5)
    assert net.layers[0].type == 'Input'


def test_split_inserted_with_caffe_names():
    param = insert_splits(net_param('''
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "a" type: "ReLU" bottom: "x" top: "a" }
        layer { name: "b" type: "ReLU" bottom: "x" top: "b" }'''))
    assert [l.type for l in param.layer] == ['Input', 'Split', 'ReLU', 'ReLU']
    assert param.layer[1].name == 'x_in_0_split'
    assert list(param.layer[1].top) == ['x_in_0_split_0', 'x_in_0_split_1']
    assert param.layer[2].bottom[0] == 'x_in_0_split_0'
    assert param.layer[3].bottom[0] == 'x_in_0_split_1'


def test_weighted_loss_top_read_again_gets_a_split_carrying_the_weight():
    param = insert_splits(net_param('''
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "e" type: "EuclideanLoss" bottom: "x" bottom: "x" top: "l" loss_weight: 2 }
        layer { name: "r" type: "ReLU" bottom: "l" top: "r" }'''))
    split = [l for l in param.layer if l.type == 'Split' and l.bottom[0] == 'l'][0]
    assert list(split.loss_weight) == [2, 0]
    assert not param.layer[2].loss_weight


def test_blob_read_by_two_layers_sums_gradients():
    net = build('''
        force_backward: true
        input: "data" input_shape { dim: 3 dim: 4 }
        layer { name: "a" type: "InnerProduct" bottom: "data" top: "a"
                inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
        layer { name: "b" type: "InnerProduct" bottom: "data" top: "b"
                inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
        layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }
        layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "data2" top: "loss" }
        input: "data2" input_shape { dim: 3 dim: 2 }''')
    assert any(l.type == 'Split' for l in net.layers)
    check_net_gradient(net)


def test_in_place_layers_share_the_blob_and_gradients_are_right():
    net = mlp()
    i = net._layer_names.index("relu1")
    assert net.top_vecs[i][0] is net.bottom_vecs[i][0]
    assert 'ip1' in net.blobs and len([n for n in net.blobs if n.startswith('ip1')]) == 1
    check_net_gradient(net, check_inputs=False)


# -- loss weights ----------------------------------------------------------------------------

def test_loss_weight_scales_and_loss_layers_default_to_one():
    net = mlp()
    loss = net.forward_from_to(0, len(net.layers) - 1)
    assert net.blob_loss_weights['loss'] == 1.0 and net.blob_loss_weights['ip2'] == 0.0
    assert loss == pytest.approx(float(net.blobs['loss'].data))
    weighted = build(MLP.replace('top: "loss" }', 'top: "loss" loss_weight: 3 }'))
    weighted.blobs['label'].data[...] = [0, 2, 1, 2]
    for name in net.params:
        for a, b in zip(net.params[name], weighted.params[name]):
            b.data[...] = a.data
    weighted.blobs['data'].data[...] = net.blobs['data'].data
    assert weighted.forward_from_to(0, len(weighted.layers) - 1) == pytest.approx(3 * loss)
    net.forward_backward()
    weighted.forward_backward()
    np.testing.assert_allclose(weighted.params['ip1'][0].diff, 3 * net.params['ip1'][0].diff)


def test_non_loss_top_with_loss_weight_contributes():
    net = build('''
        input: "data" input_shape { dim: 2 dim: 3 }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" loss_weight: 0.5
                inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }''')
    loss = net.forward_from_to(0, 1)
    assert loss == pytest.approx(0.5 * net.blobs['ip'].data.sum())
    check_net_gradient(net, check_inputs=False)


# -- parameters ------------------------------------------------------------------------------

SHARED = '''
force_backward: true
input: "x" input_shape { dim: 2 dim: 3 }
input: "y" input_shape { dim: 2 dim: 3 }
layer { name: "ipx" type: "InnerProduct" bottom: "x" top: "ipx"
        param { name: "w" lr_mult: 2 decay_mult: 0 } param { name: "b" }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" }
                              bias_filler { type: "gaussian" } } }
layer { name: "ipy" type: "InnerProduct" bottom: "y" top: "ipy"
        param { name: "w" } param { name: "b" }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
layer { name: "prod" type: "Eltwise" bottom: "ipx" bottom: "ipy" top: "p"
        eltwise_param { operation: PROD } }
layer { name: "loss" type: "Reduction" bottom: "p" top: "loss" loss_weight: 1 }
'''


def test_shared_params_are_one_blob_and_get_both_gradients():
    net = build(SHARED)
    assert net.params['ipx'][0] is net.params['ipy'][0]
    assert len(net.learnable_params) == 2
    assert net.params_lr == [2.0, 1.0] and net.params_weight_decay == [0.0, 1.0]
    check_net_gradient(net)


def test_shared_param_shape_mismatch_names_the_layer():
    with pytest.raises(CaffeliteError, match=r'layer "ipy".*cannot share parameter "w"'):
        build(SHARED.replace('bottom: "y" top: "ipy"', 'bottom: "y" top: "ipy" ')
              .replace('input: "y" input_shape { dim: 2 dim: 3 }',
                       'input: "y" input_shape { dim: 2 dim: 5 }'))


def test_lr_mult_zero_params_get_no_gradient_and_frozen_branch_is_skipped():
    net = mlp()
    frozen = build(MLP.replace('layer { name: "ip1" type: "InnerProduct" bottom: "data" '
                               'top: "ip1"',
                               'layer { name: "ip1" type: "InnerProduct" bottom: "data" '
                               'top: "ip1" param { lr_mult: 0 } param { lr_mult: 0 }'))
    frozen.blobs['label'].data[...] = [0, 2, 1, 2]
    names = frozen._layer_names
    assert not frozen.layer_need_backward[names.index('ip1')]
    assert not frozen.layer_need_backward[names.index('relu1')]
    assert frozen.layer_need_backward[names.index('ip2')]
    assert not frozen.bottom_need_backward[names.index('ip2')][0]
    assert net.layer_need_backward[names.index('ip1')]
    frozen.clear_param_diffs()
    frozen.forward_backward()
    assert not frozen.params['ip1'][0].diff.any()
    assert frozen.params['ip2'][0].diff.any()


def test_propagate_down_false_stops_the_gradient():
    net = build(MLP.replace('bottom: "ip1" top: "ip2"',
                            'bottom: "ip1" top: "ip2" propagate_down: false'))
    names = net._layer_names
    assert net.bottom_need_backward[names.index('ip2')] == [False]
    assert not net.layer_need_backward[names.index('ip1')]


def test_force_backward_computes_input_gradients():
    plain = mlp()
    assert not plain.bottom_need_backward[plain._layer_names.index('ip1')][0]
    forced = build('force_backward: true\n' + MLP)
    forced.blobs['label'].data[...] = [0, 2, 1, 2]
    forced.forward()
    diffs = forced.backward()
    assert diffs['data'].shape == (4, 5) and np.abs(diffs['data']).sum() > 0
    check_net_gradient(forced, check_inputs=["data"])


# -- running ---------------------------------------------------------------------------------

def test_forward_takes_batch_sized_inputs_as_pycaffe_and_feed_reshapes():
    net = build('''
        input: "data" input_shape { dim: 2 dim: 3 }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
        layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }''', caffe.TEST)
    assert net.outputs == ['prob']
    x = np.random.default_rng(1).standard_normal((5, 3))
    with pytest.raises(CaffeliteError, match='"data" is not batch sized: shape .5, 3. for a '
                                             'blob of shape .2, 3.'):
        net.forward(data=x)
    with pytest.raises(CaffeliteError, match="do not match the net's inputs: got ip; the "
                                             "inputs are data"):
        net.forward(ip=x[:2])
    assert net.blobs['data'].shape == (2, 3)           # nothing changed
    w = net.params['ip'][0].data

    def softmax_of_ip(rows):
        z = rows @ w.T
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    np.testing.assert_allclose(net.forward(data=x[:2])['prob'], softmax_of_ip(x[:2]))
    out = net.feed(data=x).forward()                   # caffelite's feed: any batch size
    assert out['prob'].shape == (5, 4)
    np.testing.assert_allclose(out['prob'], softmax_of_ip(x))
    np.testing.assert_allclose(net.forward(data=x[::-1])['prob'], softmax_of_ip(x[::-1]))
    net.blobs['data'].reshape(7, 3)
    net.reshape()
    assert net.blobs['prob'].shape == (7, 4)


def test_net_from_file_and_pycaffe_signatures(tmp_path):
    path = tmp_path / 'deploy.prototxt'
    path.write_text('input: "data" input_shape { dim: 1 dim: 3 }\n'
                    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                    'inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }\n')
    net = caffe.Net(str(path), caffe.TEST)
    weights = tmp_path / 'w.caffemodel'
    net.save(str(weights))
    again = caffe.Net(str(path), caffe.TEST, weights=str(weights))
    legacy = caffe.Net(str(path), str(weights), caffe.TEST)
    for other in (again, legacy):
        np.testing.assert_array_equal(other.params['ip'][0].data, net.params['ip'][0].data)
    assert legacy.phase == caffe.TEST


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize('text, pattern', [
    ('layer { name: "x" type: "NoSuchLayer" top: "a" }',
     r'layer "x" \(type NoSuchLayer\).*unknown layer type "NoSuchLayer"'),
    ('layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }',
     r'layer "r" \(type ReLU\).*bottom "nothing".*no earlier layer produces'),
    ('layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
     'layer { name: "b" type: "Input" top: "x" input_param { shape { dim: 1 } } }',
     r'layer "b" \(type Input\).*top "x" is produced by more than one layer'),
    ('input: "data" input_shape { dim: 2 dim: 6 }\n'
     'layer { name: "c" type: "Concat" bottom: "data" bottom: "data" top: "c" '
     'concat_param { axis: 3 } }', r'layer "c" \(type Concat\)'),
])
def test_bad_nets_name_the_layer_and_the_problem(text, pattern):
    with pytest.raises(CaffeliteError, match=pattern):
        caffe.Net(net_param(text), caffe.TRAIN)


def test_parse_error_names_file_and_line(tmp_path):
    path = tmp_path / 'bad.prototxt'
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  typo_field: 3\n}\n')
    with pytest.raises(CaffeliteError, match=r'bad\.prototxt.*4:\d+.*typo_field'):
        caffe.Net(str(path), caffe.TRAIN)


def test_missing_prototxt_is_a_clear_error(tmp_path):
    with pytest.raises(CaffeliteError,
                       match='cannot open the net file .*missing.prototxt: No such file'):
        caffe.Net(str(tmp_path / 'missing.prototxt'), caffe.TRAIN)


def test_loss_layer_without_a_top_gets_an_automatic_one():
    net = build(MLP.replace('bottom: "label" top: "loss" }', 'bottom: "label" }'))
    net.blobs['label'].data[...] = [0, 2, 1, 2]
    assert '(automatic)' in net.outputs and net.blob_loss_weights['(automatic)'] == 1.0
    assert net.top_names['loss'] == ['(automatic)']
    loss = net.forward_backward()
    assert loss == pytest.approx(float(net.blobs['(automatic)'].data)) and loss > 0
    assert np.abs(net.params['ip1'][0].diff).sum() > 0
