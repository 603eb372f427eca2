"""Whole nets a Caffe user brings: the CaffeNet deploy net runs forward and backward with
Caffe's parameter shapes, and survives a .caffemodel round trip."""
from pathlib import Path

import numpy as np
import pytest

import caffelite as caffe
from caffelite.prototxt import read_prototxt
from caffelite.proto import caffelite_pb2 as pb

PROTOTXT = Path(__file__).resolve().parents[1] / 'prototxt'


@pytest.mark.slow
def test_caffenet_deploy_builds_runs_and_round_trips(tmp_path):
    caffe.set_random_seed(0)
    net = caffe.Net(str(PROTOTXT / 'caffenet_deploy.prototxt'), caffe.TEST)
    assert net.inputs == ['data'] and net.outputs == ['prob']
    shapes = {name: [b.shape for b in blobs] for name, blobs in net.params.items()}
    assert shapes['conv1'] == [(96, 3, 11, 11), (96,)]
    assert shapes['conv2'] == [(256, 48, 5, 5), (256,)]
    assert shapes['conv4'] == [(384, 192, 3, 3), (384,)]
    assert shapes['fc6'] == [(4096, 9216), (4096,)]
    assert shapes['fc8'] == [(1000, 4096), (1000,)]
    rng = np.random.default_rng(0)
    for blobs in net.params.values():        # Caffe's default filler is constant 0
        blobs[0].data[...] = rng.normal(0, 0.01, blobs[0].shape)
    net.blobs['data'].reshape(2, 3, 227, 227)
    net.reshape()
    image = rng.uniform(-50, 50, (2, 3, 227, 227))
    prob = net.forward(data=image)['prob']
    assert prob.shape == (2, 1000)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    assert net.blobs['pool5'].shape == (2, 256, 6, 6)

    # Without a loss nothing needs a gradient (Caffe's rule); force_backward turns it on.
    assert not any(net.layer_need_backward)
    param = read_prototxt(PROTOTXT / 'caffenet_deploy.prototxt', pb.NetParameter())
    param.force_backward = True
    forced = caffe.Net(param, caffe.TEST)
    forced.share_with(net)
    forced.blobs['data'].reshape(2, 3, 227, 227)
    np.testing.assert_array_equal(forced.forward(data=image)['prob'], prob)
    target = np.zeros((2, 1000))
    target[:, 7] = 1
    diffs = forced.backward(prob=target)
    assert diffs['data'].shape == image.shape and np.abs(diffs['data']).sum() > 0
    assert np.abs(net.params['conv1'][0].diff).sum() > 0   # shared blobs got the gradient

    path = tmp_path / 'caffenet.caffemodel'
    net.save(str(path))
    again = caffe.Net(str(PROTOTXT / 'caffenet_deploy.prototxt'), caffe.TEST,
                      weights=str(path))
    again.blobs['data'].reshape(2, 3, 227, 227)
    np.testing.assert_array_equal(again.forward(data=image)['prob'], prob)
