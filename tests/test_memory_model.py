"""pycaffe's memory model: blob arrays are persistent (a view a script keeps sees every later
forward, backward and solver update), reshape keeps the storage within its capacity, and a loss
top's diff holds its loss weight (Caffe's SetLossWeights) and is used by backward as it is."""
import numpy as np
import pytest

import caffelite as caffe
from caffelite.blob import Blob
from caffelite.prototxt import parse_prototxt_text
from caffelite.proto import caffelite_pb2 as pb

from backend_testing import use_backend


@pytest.fixture(autouse=True)
def _cpu_mode():
    """CPU mode whatever the suite's backend: this memory model is the host's. In GPU mode a
    kept host view holds the values as of the last copy to the host, as with Caffe's
    SyncedMemory, not every later update."""
    with use_backend('numpy'):
        yield


NET = '''
name: "views"
force_backward: true
input: "data" input_shape { dim: 4 dim: 5 }
input: "label" input_shape { dim: 4 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''


def build(text=NET):
    net = caffe.Net(parse_prototxt_text(text, pb.NetParameter()), caffe.TRAIN)
    net.blobs['label'].data[...] = [0, 1, 2, 1]
    return net


def expected_prob(net, x):
    w, b = net.params['ip'][0].data, net.params['ip'][1].data
    z = np.maximum(x @ w.T + b, 0)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_a_kept_output_view_sees_every_later_forward():
    net = build()
    rng = np.random.default_rng(0)
    out = net.blobs['prob'].data                       # a view, as in pycaffe
    for _ in range(3):
        x = rng.standard_normal((4, 5)).astype(np.float32)
        net.feed(data=x).forward()
        np.testing.assert_allclose(out, expected_prob(net, x), rtol=1e-5, atol=1e-6)
    assert np.shares_memory(out, net.blobs['prob'].data)


def test_net_surgery_through_kept_param_views_changes_the_output():
    """Caffe's net-surgery notebook: the mean printed before and after surgery differs."""
    net = build()
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    out, w = net.blobs['prob'].data, net.params['ip'][0].data
    net.feed(data=x).forward()
    before = out.copy()
    w[...] *= -2                                       # surgery through the kept view
    net.feed(data=x).forward()
    assert not np.allclose(out, before)
    np.testing.assert_allclose(out, expected_prob(net, x), rtol=1e-5, atol=1e-6)


def test_kept_diff_views_see_backward():
    net = build()
    rng = np.random.default_rng(2)
    d_data, d_w = net.blobs['data'].diff, net.params['ip'][0].diff
    for _ in range(2):
        net.feed(data=rng.standard_normal((4, 5)).astype(np.float32)).forward()
        net.clear_param_diffs()
        diffs = net.backward()
        assert np.shares_memory(d_data, diffs['data'])
        assert np.abs(d_data).sum() > 0
        np.testing.assert_array_equal(d_w, net.params['ip'][0].diff)


def test_solver_updates_reach_kept_param_views():
    param = pb.SolverParameter(base_lr=0.1, momentum=0.9, max_iter=3, random_seed=3,
                               lr_policy="fixed")
    param.net_param.CopyFrom(parse_prototxt_text(NET, pb.NetParameter()))
    solver = caffe.SGDSolver(param)
    blob = solver.net.params['ip'][0]
    solver.net.blobs['data'].data[...] = np.random.default_rng(3).standard_normal((4, 5))
    solver.net.blobs['label'].data[...] = [0, 1, 2, 1]
    w, dw = blob.data, blob.diff
    before = w.copy()
    solver.step(2)
    assert not np.allclose(w, before)
    assert np.shares_memory(w, blob.data) and np.shares_memory(dw, blob.diff)
    np.testing.assert_array_equal(w, blob.data)


def test_reshape_keeps_storage_within_capacity_as_caffe():
    blob = Blob((2, 3, 4))
    view = blob.data
    view[...] = np.arange(24).reshape(2, 3, 4)
    blob.reshape(6, 4)                                 # same count: the same memory
    assert np.shares_memory(view, blob.data)
    np.testing.assert_array_equal(blob.data.ravel(), np.arange(24))
    blob.data[0, 0] = -1
    assert view[0, 0, 0] == -1                         # the old view still aliases the blob
    blob.reshape(2, 3)                                 # smaller: kept (Caffe's capacity)
    assert np.shares_memory(view, blob.data)
    np.testing.assert_array_equal(blob.data.ravel(), [-1, 1, 2, 3, 4, 5])
    blob.reshape(5, 5)                                 # beyond the capacity: reallocated
    assert not np.shares_memory(view, blob.data) and (blob.data == 0).all()


def test_assigning_an_array_writes_into_the_storage():
    blob = Blob((2, 2))
    view, fresh = blob.xdata, np.full((2, 2), 3.0)
    blob.xdata = fresh
    assert blob.xdata is view and (view == 3).all()
    fresh[...] = 7                                     # the assigned array is not kept
    assert (view == 3).all()
    blob.diff = np.ones((2, 2))
    assert (blob.xdiff == 1).all()


LOSS_ON_OUTPUT = '''
name: "probs_loss"
force_backward: true
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "probs" loss_weight: 0.5
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 } } }
'''


def test_a_loss_top_diff_holds_its_weight_and_forward_uses_it():
    net = build(NET)
    assert (net.blobs['loss'].diff == 1).all()
    net2 = caffe.Net(parse_prototxt_text(LOSS_ON_OUTPUT, pb.NetParameter()), caffe.TRAIN)
    assert (net2.blobs['probs'].diff == 0.5).all()
    x = np.random.default_rng(4).standard_normal((2, 3)).astype(np.float32)
    net2.feed(data=x).forward()
    assert net2.forward_from_to(0, len(net2.layers) - 1) == \
        0.5 * float(net2.blobs['probs'].data.astype(np.float64).sum())
    net2.clear_param_diffs()                           # never touches a loss top's diff
    assert (net2.blobs['probs'].diff == 0.5).all()


def test_a_diff_set_by_the_script_on_a_loss_top_is_used_by_backward():
    net = caffe.Net(parse_prototxt_text(LOSS_ON_OUTPUT, pb.NetParameter()), caffe.TRAIN)
    x = np.random.default_rng(5).standard_normal((2, 3)).astype(np.float32)
    g = np.random.default_rng(6).standard_normal((2, 4)).astype(np.float32)
    w = net.params['ip'][0].data
    net.feed(data=x).forward()
    net.blobs['probs'].diff[...] = g
    np.testing.assert_allclose(net.backward()['data'], g @ w, rtol=1e-5)
    np.testing.assert_allclose(net.backward(probs=2 * g)['data'], 2 * g @ w, rtol=1e-5)
    net.seed_loss_diffs()                              # back to the loss weight
    np.testing.assert_allclose(net.backward()['data'], np.full((2, 4), 0.5) @ w, rtol=1e-5)


def test_a_loss_top_reshaped_to_a_new_size_is_weighed_anew():
    net = caffe.Net(parse_prototxt_text(LOSS_ON_OUTPUT, pb.NetParameter()), caffe.TRAIN)
    x = np.random.default_rng(7).standard_normal((5, 3)).astype(np.float32)
    net.feed(data=x).forward()                                # batch 2 -> 5: the top grows
    assert net.blobs['probs'].diff.shape == (5, 4) and (net.blobs['probs'].diff == 0.5).all()
    assert net.forward_from_to(0, len(net.layers) - 1) == \
        0.5 * float(net.blobs['probs'].data.astype(np.float64).sum())
