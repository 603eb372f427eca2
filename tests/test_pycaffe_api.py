"""pycaffe's Python API on caffelite: Classifier, Detector, Net.forward_all and friends,
draw and tools/draw_net.py, and a classification script in pycaffe's style.

The tests import the submodules (caffelite.classifier, caffelite.pycaffe_net, ...) directly.
``test_pycaffe_style_script`` runs through ``import caffelite as caffe``; until
caffelite/__init__.py carries the pycaffe wiring, its ``caffe`` fixture adds the same names
with monkeypatch (and says so in the test's output).
"""
import shutil
import sys

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

import caffelite
from caffelite import draw, io as image_io, pycaffe_net
from caffelite.classifier import Classifier, Detector
from caffelite.errors import CaffeliteError
from caffelite.net import Net
from caffelite.proto import caffelite_pb2 as pb
from caffelite.prototxt import read_prototxt


DEPLOY = '''name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %d dim: 3 dim: 8 dim: 8 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
'''

MEAN_BGR = np.array([0.1, 0.2, 0.3])


@pytest.fixture
def deploy(tmp_path):
    """(prototxt, caffemodel, W, b) of Input(4 x 3 x 8 x 8) -> InnerProduct(5) -> Softmax."""
    proto = tmp_path / 'deploy.prototxt'
    proto.write_text(DEPLOY % 4)
    caffelite.set_random_seed(5)
    net = Net(str(proto), pb.TEST)
    weights = tmp_path / 'tiny.caffemodel'
    net.save(str(weights))
    w, b = (p.data.astype(np.float64).copy() for p in net.params['ip'])
    return str(proto), str(weights), w, b


def softmax_ip(batch, w, b):
    """The tiny net by hand: softmax(W x + b) for N x 3 x 8 x 8 inputs."""
    z = batch.reshape(len(batch), -1) @ w.T + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def to_caffe(crops):
    """pycaffe's preprocessing of H x W x 3 crops, by hand: transpose to K x H x W, RGB -> BGR,
    * 255, - per-channel mean."""
    return crops.transpose(0, 3, 1, 2)[:, ::-1] * 255.0 - MEAN_BGR[None, :, None, None]


def images():
    rng = np.random.default_rng(11)
    return [rng.random((12, 14, 3)), rng.random((10, 10, 3)), rng.random((9, 11, 3))]


# -- Classifier ---------------------------------------------------------------------------------
def make_classifier(deploy):
    proto, weights, _, _ = deploy
    return Classifier(proto, weights, image_dims=(10, 10), mean=MEAN_BGR, raw_scale=255,
                      channel_swap=(2, 1, 0))


def test_classifier_centre_crop(deploy):
    clf = make_classifier(deploy)
    _, _, w, b = deploy
    resized = np.stack([image_io.resize_image(im, (10, 10)) for im in images()])
    centre = resized[:, 1:9, 1:9]                        # (10 - 8) / 2 = 1
    expected = softmax_ip(to_caffe(centre), w, b)
    got = clf.predict(images(), oversample=False)        # 3 images, batch 4: one padded batch
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_classifier_oversample(deploy):
    clf = make_classifier(deploy)
    _, _, w, b = deploy
    resized = np.stack([image_io.resize_image(im, (10, 10)) for im in images()])
    expected = []
    for im in resized:                                   # 4 corners, centre, then mirrored
        crops = [im[y:y + 8, x:x + 8] for y, x in [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]]
        crops += [c[:, ::-1] for c in crops]
        expected.append(softmax_ip(to_caffe(np.stack(crops)), w, b).mean(axis=0))
    got = clf.predict(images())                          # 30 crops in batches of 4
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, clf.predict(images(), oversample=False), atol=1e-4)


def test_classifier_defaults_to_the_input_size(deploy):
    proto, weights, w, b = deploy
    clf = Classifier(proto, weights)
    img = np.random.default_rng(2).random((8, 8, 3))
    np.testing.assert_allclose(clf.predict([img], oversample=False),
                               softmax_ip(img.transpose(2, 0, 1)[None], w, b), rtol=1e-4)
    assert list(clf.image_dims) == [8, 8] and clf.crop_dims.tolist() == [8, 8]


# -- Detector -----------------------------------------------------------------------------------
def test_detector_windows(deploy, tmp_path):
    proto, weights, w, b = deploy
    rgb = np.random.default_rng(4).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'scene.png')
    image = rgb / 255.0
    windows = np.array([[0, 0, 8, 8], [4, 6, 16, 20], [10, 2, 18, 10]])
    det = Detector(proto, weights, mean=MEAN_BGR, raw_scale=255, channel_swap=(2, 1, 0))
    found = det.detect_windows([(str(tmp_path / 'scene.png'), windows)])
    assert [d['filename'] for d in found] == [str(tmp_path / 'scene.png')] * 3
    crops = np.stack([image_io.resize_image(image[y0:y1, x0:x1], (8, 8))
                      for y0, x0, y1, x1 in windows])
    expected = softmax_ip(to_caffe(crops), w, b)
    for k, d in enumerate(found):
        np.testing.assert_array_equal(d['window'], windows[k])
        np.testing.assert_allclose(d['prediction'], expected[k], rtol=1e-4, atol=1e-6)
    with pytest.raises(CaffeliteError, match='detect_windows'):
        det.detect_selective_search(['x.jpg'])


def test_detector_context_pad_fills_outside_with_mean(deploy):
    proto, weights, _, _ = deploy
    det = Detector(proto, weights, mean=MEAN_BGR, raw_scale=255, channel_swap=(2, 1, 0),
                   context_pad=2)
    assert det.crop_dims.tolist() == [8, 8, 3]
    # the mean in raw RGB space: BGR mean reversed, / raw_scale
    np.testing.assert_allclose(det.crop_mean.reshape(3), MEAN_BGR[::-1] / 255)
    image = np.ones((20, 20, 3), dtype=np.float32)
    crop = det.crop(image, np.array([0, 0, 9, 9]))       # context reaches above/left of 0
    assert crop.shape == (8, 8, 3)
    # box 0..9 (10 px) grows by 8/(8-4) = 2 about its centre 5: -5..15 -> 21 px, 5 px outside
    # -> round(5 * 8/21) = 2 rows and columns of mean padding
    np.testing.assert_allclose(crop[:2, :, :], np.broadcast_to(MEAN_BGR[::-1] / 255, (2, 8, 3)),
                               rtol=1e-6)
    np.testing.assert_allclose(crop[:, :2, :], np.broadcast_to(MEAN_BGR[::-1] / 255, (8, 2, 3)),
                               rtol=1e-6)
    np.testing.assert_allclose(crop[2:, 2:], 1.0)


# -- Net.forward_all / forward_backward_all / _batch --------------------------------------------
def test_forward_all_pads_and_trims(deploy):
    proto, weights, w, b = deploy
    net = Net(proto, pb.TEST, weights=weights)
    x = np.random.default_rng(0).random((7, 3, 8, 8)).astype(np.float32)
    out = pycaffe_net.forward_all(net, blobs=['ip'], data=x)
    assert set(out) == {'prob', 'ip'} and out['prob'].shape == (7, 5)
    np.testing.assert_allclose(out['prob'], softmax_ip(x, w, b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out['ip'], x.reshape(7, -1) @ w.T + b, rtol=1e-4, atol=1e-5)
    batches = list(pycaffe_net._batch(net, {'data': x}))
    assert [bt['data'].shape[0] for bt in batches] == [4, 4]
    np.testing.assert_array_equal(batches[1]['data'][3], 0)         # zero padding
    with pytest.raises(CaffeliteError, match='must match'):
        list(pycaffe_net._batch(net, {'data': x, 'other': x[:3]}))


def test_forward_backward_all_by_hand(tmp_path):
    proto = tmp_path / 'ip.prototxt'
    proto.write_text('force_backward: true\n' + DEPLOY.split('layer { name: "prob"')[0] % 2)
    net = Net(str(proto), pb.TEST)
    w, b = (p.data.astype(np.float64) for p in net.params['ip'])
    rng = np.random.default_rng(1)
    x = rng.random((5, 3, 8, 8)).astype(np.float32)
    top_diff = rng.standard_normal((5, 5)).astype(np.float32)
    outs, diffs = pycaffe_net.forward_backward_all(net, data=x, ip=top_diff)
    assert outs['ip'].shape == (5, 5) and diffs['data'].shape == (5, 3, 8, 8)
    np.testing.assert_allclose(outs['ip'], x.reshape(5, -1) @ w.T + b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(diffs['data'].reshape(5, -1), top_diff @ w, rtol=1e-4, atol=1e-5)


def test_attach_adds_pycaffe_members(deploy):
    proto, weights, _, _ = deploy

    class Patched(Net):
        pass
    pycaffe_net.attach(Patched)
    net = Patched(proto, pb.TEST, weights=weights)
    assert net.forward_all(data=np.zeros((1, 3, 8, 8)))['prob'].shape == (1, 5)
    assert net._top_ids(1) == [1] and net._bottom_ids(1) == [0]
    assert net._inputs == [0] and net._outputs == [2] and net._blob_loss_weights == [0, 0, 0]


# -- the Net's pycaffe surface (net.py, checked here) ---------------------------------------------
def test_net_pycaffe_surface(deploy, tmp_path):
    proto, weights, w, _ = deploy
    net = Net(proto, weights, pb.TEST)                   # pycaffe's old argument order
    np.testing.assert_allclose(net.params['ip'][0].data, w, rtol=1e-6)
    assert net._layer_names == ['data', 'ip', 'prob'] and list(net.layer_dict) == net._layer_names
    assert net.top_names['ip'] == ['ip'] and net.bottom_names['prob'] == ['ip']
    assert list(net.blob_loss_weights) == ['data', 'ip', 'prob']
    assert [layer.type for layer in net.layers] == ['Input', 'InnerProduct', 'Softmax']
    assert [b.shape for b in net.layers[1].blobs] == [(5, 192), (5,)]
    x = np.random.default_rng(3).random((4, 3, 8, 8)).astype(np.float32)
    out = net.forward(data=x, end='ip')
    assert list(out) == ['ip']
    full = net.forward(blobs=['ip'], data=x)
    assert set(full) == {'prob', 'ip'}
    again = net.forward(start='prob')                    # reuses the ip blob
    np.testing.assert_allclose(again['prob'], full['prob'])
    net.save_hdf5(str(tmp_path / 'w.h5'))
    other = Net(proto, pb.TEST)
    other.load_hdf5(str(tmp_path / 'w.h5'))
    np.testing.assert_array_equal(other.params['ip'][0].data, net.params['ip'][0].data)
    third = Net(proto, pb.TEST)
    third.share_with(net)
    assert third.params['ip'][0] is net.params['ip'][0]
    fourth = Net(proto, pb.TEST)
    fourth.copy_from(weights)
    np.testing.assert_array_equal(fourth.params['ip'][1].data, net.params['ip'][1].data)
    net.params['ip'][0].diff[...] = 1
    net.clear_param_diffs()
    assert not net.params['ip'][0].diff.any()


# -- draw -------------------------------------------------------------------------------------------
NET_TO_DRAW = '''name: "drawn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 3 } }
layer { name: "only_test" type: "Softmax" bottom: "fc" top: "prob" include { phase: TEST } }
'''


def _has_pydot():
    try:
        import pydot  # noqa: F401
    except ImportError:
        return False
    return True


HAS_PYDOT = _has_pydot()
needs_pydot = pytest.mark.skipif(not HAS_PYDOT, reason='pydot not installed '
                                                       '(pip install caffelite[draw])')


@pytest.fixture
def net_param(tmp_path):
    path = tmp_path / 'draw.prototxt'
    path.write_text(NET_TO_DRAW)
    return path, read_prototxt(str(path), pb.NetParameter())


def test_draw_without_pydot_names_the_extra(net_param, monkeypatch):
    monkeypatch.setitem(sys.modules, 'pydot', None)       # import pydot -> ImportError
    with pytest.raises(CaffeliteError, match=r'pip install caffelite\[draw\].*graphviz'):
        draw.draw_net(net_param[1], 'LR', ext='dot')


@needs_pydot
def test_draw_dot_source(net_param):
    _, param = net_param
    text = draw.get_pydot_graph(param, 'LR').to_string()
    for name in ('conv1', 'relu1', 'pool1', 'fc', 'only_test', 'data', 'prob'):
        assert name in text
    assert 'kernel size: 3' in text and 'AVE Pooling' in text and '#FF5050' in text
    assert '#90EE90' in text                               # in-place ReLU drawn as a neuron
    train_only = draw.draw_net(param, 'TB', ext='dot', phase=pb.TRAIN).decode()
    assert 'only_test' not in train_only and 'conv1' in train_only
    assert 'only_test' in draw.draw_net(param, 'TB', ext='dot', phase=pb.TEST).decode()


@needs_pydot
def test_draw_png_or_clear_graphviz_error(net_param, tmp_path, monkeypatch):
    _, param = net_param
    if shutil.which('dot'):
        draw.draw_net_to_file(param, str(tmp_path / 'net.png'))
        assert (tmp_path / 'net.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    with pytest.raises(CaffeliteError, match='Graphviz'):
        draw.draw_net_to_file(param, str(tmp_path / 'net.svg'))


@needs_pydot
def test_tools_draw_net(net_param, tmp_path, capsys):
    from tools import draw_net as tool
    path, _ = net_param
    out = tmp_path / 'net.dot'
    assert tool.main([str(path), str(out), '--phase', 'TRAIN', '--rankdir', 'TB']) == 0
    text = out.read_text()
    assert 'conv1' in text and 'only_test' not in text and 'rankdir=TB' in text
    assert tool.main([str(path), str(out), '--phase', 'VAL']) == 2
    assert tool.main([str(tmp_path / 'missing.prototxt'), str(out)]) == 1
    assert 'missing.prototxt' in capsys.readouterr().err


# -- a pycaffe script, unchanged ------------------------------------------------------------------
@pytest.fixture
def caffe(monkeypatch):
    """``import caffelite as caffe``, with the pycaffe names added by monkeypatch where
    caffelite/__init__.py does not wire them yet."""
    import caffelite as module
    from caffelite import classifier, coord_map, io, net_spec
    wiring = {'Classifier': classifier.Classifier, 'Detector': classifier.Detector,
              'NetSpec': net_spec.NetSpec, 'params': net_spec.params,
              'to_proto': net_spec.to_proto, 'io': io, 'draw': draw, 'coord_map': coord_map}
    missing = [name for name in wiring if not hasattr(module, name)]
    for name in missing:
        monkeypatch.setattr(module, name, wiring[name], raising=False)
    if not hasattr(module.layers, 'Convolution'):      # the layers package as caffe.layers
        missing.append('caffelite.layers.__getattr__')
        monkeypatch.setattr(module.layers, '__getattr__', net_spec.layers_package_getattr,
                            raising=False)
    if not hasattr(module.Net, 'forward_all'):
        missing.append('Net.forward_all')
        for name, function in pycaffe_net.METHODS.items():
            monkeypatch.setattr(module.Net, name, function, raising=False)
        for name, function in pycaffe_net.PROPERTIES.items():
            monkeypatch.setattr(module.Net, name, property(function), raising=False)
    if missing:
        print('caffelite/__init__.py lacks the pycaffe wiring for:', ', '.join(missing))
    return module


def test_pycaffe_style_script(caffe, deploy, tmp_path):
    model_def, model_weights, w, b = deploy
    rgb = np.random.default_rng(8).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'cat.jpg', quality=95)
    image_file = str(tmp_path / 'cat.jpg')

    # ---- as in Caffe's examples/00-classification.ipynb ------------------------------------
    caffe.set_mode_cpu()
    net = caffe.Net(model_def, model_weights, caffe.TEST)
    mu = MEAN_BGR
    transformer = caffe.io.Transformer({'data': net.blobs['data'].data.shape})
    transformer.set_transpose('data', (2, 0, 1))
    transformer.set_mean('data', mu)
    transformer.set_raw_scale('data', 255)
    transformer.set_channel_swap('data', (2, 1, 0))
    net.blobs['data'].reshape(1, 3, 8, 8)
    image = caffe.io.load_image(image_file)
    transformed_image = transformer.preprocess('data', image)
    net.blobs['data'].data[...] = transformed_image
    output = net.forward()
    output_prob = output['prob'][0]
    shapes = [(k, v.data.shape) for k, v in net.blobs.items()]
    param_shapes = [(k, v[0].data.shape, v[1].data.shape) for k, v in net.params.items()]
    feat = net.blobs['ip'].data[0]
    classifier = caffe.Classifier(model_def, model_weights, mean=mu, raw_scale=255,
                                  channel_swap=(2, 1, 0))
    prediction = classifier.predict([image], oversample=False)
    tiled = classifier.predict([image])                    # 10 crops of the 8 x 8 image
    from caffelite import layers as L, params as P       # as `from caffe import layers as L`
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.pool = L.Pooling(n.data, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    spec_net = caffe.Net(n.to_proto(), caffe.TEST)
    unnamed = caffe.to_proto(L.ReLU(n.pool))              # free tops get Type<k> names
    # -------------------------------------------------------------------------------------------

    assert spec_net.blobs['pool'].shape == (1, 3, 4, 4)
    assert [l.name for l in unnamed.layer] == ['Input1', 'Pooling1', 'ReLU1']
    assert L.create_layer is caffelite.layers.base.create_layer   # still the layer package
    decoded = np.asarray(Image.open(image_file).convert('RGB')) / 255.0
    np.testing.assert_allclose(image, decoded, rtol=1e-6)
    expected = softmax_ip(to_caffe(decoded[None]), w, b)[0]
    np.testing.assert_allclose(output_prob, expected, rtol=1e-4, atol=1e-6)
    assert output_prob.argmax() == expected.argmax()
    assert shapes == [('data', (1, 3, 8, 8)), ('ip', (1, 5)), ('prob', (1, 5))]
    assert param_shapes == [('ip', (5, 192), (5,))]
    np.testing.assert_allclose(feat, to_caffe(decoded[None]).reshape(-1) @ w.T + b, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(prediction[0], expected, rtol=1e-4, atol=1e-6)
    mirrored = softmax_ip(to_caffe(decoded[None, :, ::-1]), w, b)[0]
    np.testing.assert_allclose(tiled[0], (expected + mirrored) / 2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(transformer.deprocess('data', net.blobs['data'].data[0]),
                               image, atol=1e-5)
    if HAS_PYDOT:
        net_param = caffe.proto.caffe_pb2.NetParameter()
        text_format.Merge(open(model_def).read(), net_param)
        caffe.draw.draw_net_to_file(net_param, str(tmp_path / 'deploy.dot'))
        assert '"prob\\n(Softmax)"' in (tmp_path / 'deploy.dot').read_text()
