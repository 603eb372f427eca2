"""Caffe 1.0's examples/ and models/ nets, as equivalents in tests/caffe_models/, build and run.

Every net is built in each phase (and stage) its include rules use, with its data layers
pointed at tiny fixtures made here: LMDBs written by ``caffelite convert_imageset`` (MNIST-,
CIFAR- and ImageNet-like images) or Datum by Datum (the siamese pairs), HDF5 files, image
lists, a window file, a PASCAL-like tree for the Python data layer, and mean files. Batch
sizes are cut to 1-2; the net structures and input sizes are the originals'. One forward (and
in TRAIN one backward) must give the right output shapes, finite losses and finite gradients
that reach the first layer. Every solver file builds its solver; the small nets take a step.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import caffelite as caffe
from caffelite.io import array_to_datum, write_mean_binaryproto
from caffelite.prototxt import read_prototxt
from caffelite.upgrade import UpgradeWarning
from caffelite.proto import caffelite_pb2 as pb

pytest.importorskip('lmdb', reason='the Data-layer nets read LMDB through the lmdb package')
pytest.importorskip('h5py', reason='the HDF5Data nets read HDF5 through h5py')
Image = pytest.importorskip('PIL.Image', reason='image fixtures are written with Pillow')

from caffelite.data.db import open_db_writer  # noqa: E402  (needs lmdb)
from caffelite.caffe_tools import convert_imageset  # noqa: E402

MODELS = Path(__file__).resolve().parent / 'caffe_models'
ROOT = Path(__file__).resolve().parents[1]
TRAIN, TEST = pb.TRAIN, pb.TEST


# -- fixtures ---------------------------------------------------------------------------------

def _save_images(folder, sizes, mode, rng, ext):
    """Random images of the given (width, height) sizes; returns their file names."""
    names = []
    for i, (w, h) in enumerate(sizes):
        channels = 1 if mode == 'L' else 3
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        name = f'img{i}.{ext}'
        Image.fromarray(pixels[..., 0] if mode == 'L' else pixels, mode).save(folder / name)
        names.append(name)
    return names


def _write_list(path, names, labels):
    path.write_text(''.join(f'{n} {l}\n' for n, l in zip(names, labels)))
    return path


def _pascal_tree(root, rng):
    """A VOC-like tree: ImageSets/Main/train.txt, JPEGImages, Annotations."""
    for sub in ('ImageSets/Main', 'JPEGImages', 'Annotations'):
        (root / sub).mkdir(parents=True)
    objects = {'000001': ['dog', 'person'], '000002': ['car']}
    for index, names in objects.items():
        pixels = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
        Image.fromarray(pixels, 'RGB').save(root / 'JPEGImages' / f'{index}.jpg')
        body = ''.join(f'<object><name>{n}</name></object>' for n in names)
        (root / 'Annotations' / f'{index}.xml').write_text(f'<annotation>{body}</annotation>')
    (root / 'ImageSets/Main/train.txt').write_text('\n'.join(objects) + '\n')
    return root


@pytest.fixture(scope='module')
def fx(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('caffe_models')
    rng = np.random.default_rng(0)
    f = SimpleNamespace(tmp=tmp)

    # MNIST-like: gray 28 x 28 PNGs through the command-line tool, raw Datum records.
    mnist = tmp / 'mnist'
    mnist.mkdir()
    names = _save_images(mnist, [(28, 28)] * 3, 'L', rng, 'png')
    listing = _write_list(tmp / 'mnist.txt', names, [3, 1, 4])
    f.mnist_pixels = np.stack([np.asarray(Image.open(mnist / n)) for n in names])
    f.mnist_lmdb = str(tmp / 'mnist_lmdb')
    subprocess.run([sys.executable, '-m', 'caffelite', 'convert_imageset', '-gray',
                    f'{mnist}/', str(listing), f.mnist_lmdb], check=True, cwd=ROOT,
                   capture_output=True)

    # CIFAR-like: color 32 x 32 PNGs (the library's tool, in process) and a 3 x 32 x 32 mean.
    cifar = tmp / 'cifar'
    cifar.mkdir()
    names = _save_images(cifar, [(32, 32)] * 3, 'RGB', rng, 'png')
    listing = _write_list(tmp / 'cifar.txt', names, [0, 7, 9])
    f.cifar_lmdb = str(tmp / 'cifar_lmdb')
    assert convert_imageset.main([f'{cifar}/', str(listing), f.cifar_lmdb]) == 0
    f.cifar_mean = str(tmp / 'cifar_mean.binaryproto')
    write_mean_binaryproto(f.cifar_mean, rng.uniform(100, 150, (3, 32, 32)))

    # ImageNet-like: JPEGs of any size resized to 256 x 256, stored encoded; a 256 x 256 mean.
    imagenet = tmp / 'imagenet'
    imagenet.mkdir()
    names = _save_images(imagenet, [(300, 240), (260, 280)], 'RGB', rng, 'jpg')
    listing = _write_list(tmp / 'imagenet.txt', names, [281, 999])
    f.imagenet_lmdb = str(tmp / 'imagenet_lmdb')
    assert convert_imageset.main(['-resize_height', '256', '-resize_width', '256', '-encoded',
                                  f'{imagenet}/', str(listing), f.imagenet_lmdb]) == 0
    f.imagenet_mean = str(tmp / 'imagenet_mean.binaryproto')
    write_mean_binaryproto(f.imagenet_mean, rng.uniform(90, 130, (3, 256, 256)))
    # ... and the same images as an ImageData list (labels < 20 so Flickr's 20 classes fit).
    f.image_root = f'{imagenet}/'
    f.image_list = str(_write_list(tmp / 'image_list.txt', names, [3, 17]))

    # Siamese pairs: two digits as the two channels of one Datum, label 1 when "similar".
    f.siamese_lmdb = str(tmp / 'siamese_lmdb')
    with open_db_writer(f.siamese_lmdb, pb.DataParameter.LMDB) as db:
        for i, sim in enumerate([1, 0, 1]):
            pair = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
            db.put(f'{i:08d}', array_to_datum(pair, sim).SerializeToString())

    # HDF5 classification: 4-D feature vectors, binary labels; the list file names the .h5.
    import h5py
    h5 = tmp / 'hdf5_train.h5'
    with h5py.File(h5, 'w') as out:
        out['data'] = rng.normal(size=(12, 4)).astype(np.float32)
        out['label'] = rng.integers(0, 2, 12).astype(np.float32)
    f.hdf5_list = str(tmp / 'hdf5_train.txt')
    Path(f.hdf5_list).write_text(f'{h5}\n')

    # Window file for WindowData: per image, its size and windows (class, overlap, box).
    windows = tmp / 'windows'
    windows.mkdir()
    names = _save_images(windows, [(160, 120), (100, 140)], 'RGB', rng, 'jpg')
    lines = []
    for i, (name, (w, h)) in enumerate(zip(names, [(160, 120), (100, 140)])):
        lines += [f'# {i}', str(windows / name), '3', str(h), str(w), '3',
                  f'{i + 5} 0.8 10 12 {w - 20} {h - 15}',     # foreground
                  f'{i + 2} 0.6 0 0 {w // 2} {h // 2}',       # foreground
                  '0 0.1 5 5 30 40']                          # background
    f.window_file = str(tmp / 'window_file.txt')
    Path(f.window_file).write_text('\n'.join(lines) + '\n')

    f.pascal_root = str(_pascal_tree(tmp / 'VOC', rng))
    return f


@pytest.fixture(autouse=True)
def _python_layers_importable(monkeypatch):
    """pyloss / pascal_multilabel_layers live next to the prototxts (Caffe: on PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(MODELS))


# -- helpers ----------------------------------------------------------------------------------

def load(name):
    return read_prototxt(MODELS / name, pb.NetParameter())


def has(message, field):
    """HasField that is False for fields the message type lacks (V1 layers have fewer)."""
    return field in message.DESCRIPTOR.fields_by_name and message.HasField(field)


def fit(param, fx, batch, lmdb=None, mean=None):
    """Point ``param``'s data layers (new or V1 format) at the fixtures, batch size ``batch``;
    Input layers and legacy net inputs get batch ``batch`` too. Modifies and returns param."""
    for lp in list(param.layer) + list(param.layers):
        if has(lp, 'data_param'):
            assert lmdb, f'{lp.name} reads an LMDB but the test gave none'
            lp.data_param.source = lmdb
            lp.data_param.batch_size = batch
        if has(lp, 'image_data_param'):
            p = lp.image_data_param
            p.source, p.root_folder, p.batch_size = fx.image_list, fx.image_root, batch
        if has(lp, 'hdf5_data_param'):
            lp.hdf5_data_param.source = fx.hdf5_list
            lp.hdf5_data_param.batch_size = batch
        if has(lp, 'window_data_param'):
            lp.window_data_param.source = fx.window_file
            lp.window_data_param.batch_size = batch
        if has(lp, 'python_param') and lp.python_param.param_str:
            params = ast.literal_eval(lp.python_param.param_str)
            params.update(pascal_root=fx.pascal_root, batch_size=batch)
            lp.python_param.param_str = repr(params)
        if has(lp, 'transform_param') and lp.transform_param.HasField('mean_file'):
            assert mean, f'{lp.name} subtracts a mean file but the test gave none'
            lp.transform_param.mean_file = mean
        if has(lp, 'input_param'):
            for shape in lp.input_param.shape:
                shape.dim[0] = batch
    if param.input_dim:
        param.input_dim[0] = batch
    for shape in param.input_shape:
        shape.dim[0] = batch
    return param


def feed(net, rng, num_classes=1000):
    """Random values for the net's Input blobs (labels: integers below num_classes)."""
    for name in net.inputs:
        blob = net.blobs[name]
        if name == 'label':
            blob.data[...] = rng.integers(0, num_classes, blob.shape)
        else:
            blob.data[...] = rng.uniform(-1, 1, blob.shape)


def build(name, phase, fx, batch=2, stages=(), lmdb=None, mean=None):
    param = fit(load(name), fx, batch, lmdb, mean)
    return caffe.Net(param, phase, stages=list(stages), source=str(MODELS / name))


def run(net, backward, num_classes=1000, seed=0):
    """One forward (and backward); checks finite outputs, and in backward finite gradients
    that reach the first learnable parameter. Returns {output: array}."""
    feed(net, np.random.default_rng(seed), num_classes)
    outputs = net.forward()
    for name, value in outputs.items():
        assert np.all(np.isfinite(value)), f'output {name} is not finite: {value}'
    if backward:
        net.backward()
        diffs = [p.diff for p in net.learnable_params]
        assert all(np.all(np.isfinite(d)) for d in diffs)
        first = next(i for i, lr in enumerate(net.params_lr) if lr > 0)
        assert np.abs(diffs[first]).sum() > 0, 'no gradient reached the first layer'
    return outputs


def shapes(outputs):
    return {name: tuple(np.shape(value)) for name, value in outputs.items()}


def check_loss(outputs, *names):
    for name in names:
        assert np.shape(outputs[name]) == () and np.isfinite(outputs[name]), (name, outputs)


# -- examples/mnist ---------------------------------------------------------------------------

def test_lenet_train_test_reads_the_lmdb_and_scales_it(fx):
    net = build('lenet_train_test.prototxt', TRAIN, fx, lmdb=fx.mnist_lmdb)
    out = run(net, backward=True)
    assert shapes(out) == {'loss': ()}
    check_loss(out, 'loss')
    data = net.blobs['data'].data
    assert data.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(data[:, 0], fx.mnist_pixels[:2] * 0.00390625, rtol=1e-6)
    assert list(net.blobs['label'].data) == [3, 1]
    assert net.params_lr == [1, 2] * 4

    net = build('lenet_train_test.prototxt', TEST, fx, lmdb=fx.mnist_lmdb)
    out = run(net, backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}
    assert 0 <= out['accuracy'] <= 1


def test_lenet_deploy(fx):
    net = build('lenet.prototxt', TEST, fx, batch=2)
    out = run(net, backward=False)
    assert out['prob'].shape == (2, 10)
    np.testing.assert_allclose(out['prob'].sum(axis=1), 1, rtol=1e-5)
    assert [b.shape for b in net.params['ip1']] == [(500, 800), (500,)]


def test_lenet_v1_format_is_upgraded(fx):
    """V1 ``layers`` with enum types, blobs_lr / weight_decay and data_param.scale."""
    with pytest.warns(UpgradeWarning) as warned:
        net = build('lenet_v1_train_test.prototxt', TRAIN, fx, lmdb=fx.mnist_lmdb)
    messages = ' '.join(str(w.message) for w in warned)
    assert 'V1LayerParameter' in messages and 'transform' in messages
    assert [l.type for l in net.layers] == ['Data', 'Convolution', 'Pooling', 'Convolution',
                                            'Pooling', 'InnerProduct', 'ReLU', 'InnerProduct',
                                            'SoftmaxWithLoss']
    assert net.params_lr == [1, 2] * 4
    assert net.params_weight_decay[4:6] == [1, 0]
    out = run(net, backward=True)
    check_loss(out, 'loss')
    assert net.blobs['data'].data.max() < 1                 # the scale moved to transform_param
    out = run(build('lenet_v1_train_test.prototxt', TEST, fx, lmdb=fx.mnist_lmdb), False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}


def test_mnist_autoencoder_in_every_phase_and_stage(fx):
    net = build('mnist_autoencoder.prototxt', TRAIN, fx, lmdb=fx.mnist_lmdb)
    assert net.blob_loss_weights['cross_entropy_loss'] == 1
    assert net.blob_loss_weights['l2_error'] == 0
    assert net.blobs['flatdata'].shape == (2, 784)
    assert [net.params[f'encode{i}'][0].shape for i in range(1, 5)] == \
        [(1000, 784), (500, 1000), (250, 500), (30, 250)]
    # Gaussian filler with sparse: 15 keeps about 15 non-zero weights per output on average.
    nonzero = np.count_nonzero(net.params['encode1'][0].data) / 1000
    assert 5 < nonzero < 25
    out = run(net, backward=True)
    assert shapes(out) == {'cross_entropy_loss': (), 'l2_error': ()}
    check_loss(out, 'cross_entropy_loss', 'l2_error')
    for stage in ('test-on-train', 'test-on-test'):
        net = build('mnist_autoencoder.prototxt', TEST, fx, stages=[stage], lmdb=fx.mnist_lmdb)
        assert sum(l.type == 'Data' for l in net.layers) == 1
        check_loss(run(net, backward=False), 'cross_entropy_loss', 'l2_error')


# -- examples/cifar10 -------------------------------------------------------------------------

@pytest.mark.parametrize('name, score', [('cifar10_quick_train_test.prototxt', 'ip2'),
                                         ('cifar10_full_train_test.prototxt', 'ip1'),
                                         ('cifar10_full_sigmoid_train_test_bn.prototxt', 'ip1')])
def test_cifar10_train_test(fx, name, score):
    net = build(name, TRAIN, fx, lmdb=fx.cifar_lmdb, mean=fx.cifar_mean)
    out = run(net, backward=True)
    check_loss(out, 'loss')
    assert net.blobs[score].shape == (2, 10)
    assert net.blobs['pool3'].shape == (2, 64, 4, 4)       # Caffe's ceil pooling: 32-16-8-4
    # the mean image was subtracted: pixels in [0, 255] minus means in [100, 150]
    assert net.blobs['data'].data.min() < 0
    out = run(build(name, TEST, fx, lmdb=fx.cifar_lmdb, mean=fx.cifar_mean), backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}


def test_cifar10_full_lrn_is_within_channel_and_ip_decay_250(fx):
    net = build('cifar10_full_train_test.prototxt', TRAIN, fx, lmdb=fx.cifar_lmdb,
                mean=fx.cifar_mean)
    norm = net.layer_dict['norm1'].layer_param.lrn_param
    assert norm.norm_region == pb.LRNParameter.WITHIN_CHANNEL and norm.local_size == 3
    assert net.params_weight_decay[-2:] == [250, 0]


def test_cifar10_bn_statistics_are_frozen(fx):
    net = build('cifar10_full_sigmoid_train_test_bn.prototxt', TRAIN, fx,
                lmdb=fx.cifar_lmdb, mean=fx.cifar_mean)
    assert [b.shape for b in net.params['bn1']] == [(32,), (32,), (1,)]
    assert [b.shape for b in net.params['conv1']] == [(32, 3, 5, 5)]     # bias_term: false
    assert net.params_lr.count(0) == 9


@pytest.mark.parametrize('name, score', [('cifar10_quick.prototxt', 'ip2'),
                                         ('cifar10_full.prototxt', 'ip1')])
def test_cifar10_deploy(fx, name, score):
    out = run(build(name, TEST, fx, batch=2), backward=False)
    assert shapes(out) == {'prob': (2, 10)}


# -- examples/siamese -------------------------------------------------------------------------

def test_mnist_siamese_slices_pairs_and_shares_parameters(fx):
    net = build('mnist_siamese_train_test.prototxt', TRAIN, fx, lmdb=fx.siamese_lmdb)
    assert net.blobs['pair_data'].shape == (2, 2, 28, 28)
    assert net.blobs['data'].shape == net.blobs['data_p'].shape == (2, 1, 28, 28)
    # Two towers of 5 weight layers, one set of 10 learnable blobs shared by name.
    assert len(net.learnable_params) == 10
    np.testing.assert_array_equal(net.params['conv1'][0].data, net.params['conv1_p'][0].data)
    out = run(net, backward=True)
    assert shapes(out) == {'loss': ()}
    check_loss(out, 'loss')
    assert net.blobs['feat'].shape == net.blobs['feat_p'].shape == (2, 2)
    np.testing.assert_array_equal(net.blobs['sim'].data, [1, 0])
    check_loss(run(build('mnist_siamese_train_test.prototxt', TEST, fx,
                         lmdb=fx.siamese_lmdb), backward=False), 'loss')


def test_mnist_siamese_deploy_legacy_input_dims(fx):
    net = build('mnist_siamese.prototxt', TEST, fx, batch=2)
    assert net.inputs == ['data'] and net.blobs['data'].shape == (2, 1, 28, 28)
    assert shapes(run(net, backward=False)) == {'feat': (2, 2)}


# -- examples/hdf5_classification -------------------------------------------------------------

@pytest.mark.parametrize('name, hidden', [('hdf5_classification_train_val.prototxt', None),
                                          ('hdf5_classification_nonlinear_train_val.prototxt',
                                           (40, 4))])
def test_hdf5_classification(fx, name, hidden):
    net = build(name, TRAIN, fx)
    assert net.blobs['data'].shape == (2, 4)
    if hidden:
        assert net.params['fc1'][0].shape == hidden
    check_loss(run(net, backward=True, num_classes=2), 'loss')
    out = run(build(name, TEST, fx), backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}


# -- examples/pycaffe: Python layers ----------------------------------------------------------

def test_linreg_with_a_python_loss_layer(fx):
    net = build('linreg.prototxt', TRAIN, fx)
    out = run(net, backward=True)
    ipx, ipy = net.blobs['ipx'].data, net.blobs['ipy'].data
    np.testing.assert_allclose(out['loss'], np.sum((ipx - ipy) ** 2) / 10 / 2, rtol=1e-5)
    np.testing.assert_allclose(net.blobs['ipx'].diff, (ipx - ipy) / 10, rtol=1e-5, atol=1e-7)
    assert np.abs(net.params['ipy'][0].diff).sum() > 0


@pytest.mark.slow
def test_pascal_multilabel_with_a_python_data_layer(fx):
    net = build('pascal_multilabel_train.prototxt', TRAIN, fx, batch=1)
    assert net.blobs['data'].shape == (1, 3, 227, 227)
    assert net.blobs['label'].shape == (1, 20)
    out = run(net, backward=True)
    check_loss(out, 'loss')
    assert net.blobs['score'].shape == (1, 20)
    labels = np.flatnonzero(net.blobs['label'].data[0])
    assert list(labels) == [11, 14]                # dog and person, from 000001.xml


# -- examples/feature_extraction, finetune_flickr_style, finetune_pascal_detection ------------

def test_feature_extraction_imagenet_val_image_data(fx):
    net = build('feature_extraction_imagenet_val.prototxt', TEST, fx, batch=1,
                mean=fx.imagenet_mean)
    out = run(net, backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}
    assert net.blobs['prob'].shape == (1, 1000) and net.blobs['fc7'].shape == (1, 4096)
    assert net.blobs['label'].data[0] == 3


@pytest.mark.slow
def test_finetune_flickr_style(fx):
    name = 'finetune_flickr_style_train_val.prototxt'
    net = build(name, TEST, fx, batch=1, mean=fx.imagenet_mean)
    out = run(net, backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}
    assert net.blobs['fc8_flickr'].shape == (1, 20)
    assert net.params_lr[-2:] == [10, 20]             # the new layer learns 10x faster
    out = run(build('finetune_flickr_style_deploy.prototxt', TEST, fx, batch=1), False)
    assert shapes(out) == {'prob': (1, 20)}


def test_finetune_pascal_detection_window_data(fx):
    net = build('finetune_pascal_detection_trainval_test.prototxt', TEST, fx, batch=1,
                mean=fx.imagenet_mean)
    out = run(net, backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}
    assert net.blobs['data'].shape == (1, 3, 227, 227)
    assert net.blobs['fc8_pascal'].shape == (1, 21)


# -- examples/net_surgery ---------------------------------------------------------------------

def test_net_surgery_fully_convolutional_caffenet(fx):
    net = build('net_surgery_bvlc_caffenet_full_conv.prototxt', TEST, fx, batch=1)
    assert net.blobs['data'].shape == (1, 3, 451, 451)
    assert [b.shape for b in net.params['fc6-conv']] == [(4096, 256, 6, 6), (4096,)]
    out = run(net, backward=False)
    assert shapes(out) == {'prob': (1, 1000, 8, 8)}
    np.testing.assert_allclose(out['prob'].sum(axis=1), 1, rtol=1e-4)


def test_net_surgery_conv(fx):
    out = run(build('net_surgery_conv.prototxt', TEST, fx, batch=1), backward=False)
    assert shapes(out) == {'conv': (1, 3, 96, 96)}


# -- models/ ----------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['bvlc_reference_caffenet_train_val.prototxt',
                                  'bvlc_alexnet_train_val.prototxt'])
def test_imagenet_train_val_lmdb_forward(fx, name):
    net = build(name, TEST, fx, batch=1, lmdb=fx.imagenet_lmdb, mean=fx.imagenet_mean)
    out = run(net, backward=False)
    assert shapes(out) == {'accuracy': (), 'loss': ()}
    assert net.blobs['data'].shape == (1, 3, 227, 227)
    assert net.blobs['pool5'].shape == (1, 256, 6, 6)
    assert net.blobs['label'].data[0] == 281
    norm_before_pool = 'alexnet' in name
    order = [n for n in net._layer_names if n in ('norm1', 'pool1')]
    assert order == (['norm1', 'pool1'] if norm_before_pool else ['pool1', 'norm1'])


@pytest.mark.parametrize('name, output, shape', [
    ('bvlc_reference_caffenet_deploy.prototxt', 'prob', (1, 1000)),
    ('bvlc_alexnet_deploy.prototxt', 'prob', (1, 1000)),
    ('bvlc_reference_rcnn_ilsvrc13_deploy.prototxt', 'fc-rcnn', (1, 200)),
    ('bvlc_googlenet_deploy.prototxt', 'prob', (1, 1000))])
def test_deploy_nets(fx, name, output, shape):
    out = run(build(name, TEST, fx, batch=1), backward=False)
    assert shapes(out) == {output: shape}


GOOGLENET_LOSSES = ['loss1/loss1', 'loss2/loss2', 'loss3/loss3']


@pytest.mark.slow
def test_googlenet_train_val(fx):
    name = 'bvlc_googlenet_train_val.prototxt'
    net = build(name, TEST, fx, batch=1, lmdb=fx.imagenet_lmdb)
    out = run(net, backward=False)
    expected = {f'{loss}/{what}' for loss in ('loss1', 'loss2', 'loss3')
                for what in ('top-1', 'top-5')} | set(GOOGLENET_LOSSES)
    assert set(out) == expected and all(np.shape(v) == () for v in out.values())
    assert net.blobs['data'].shape == (1, 3, 224, 224)
    channels = {m: net.blobs[f'inception_{m}/output'].shape[1]
                for m in ('3a', '3b', '4a', '4b', '4c', '4d', '4e', '5a', '5b')}
    assert channels == {'3a': 256, '3b': 480, '4a': 512, '4b': 512, '4c': 512, '4d': 528,
                        '4e': 832, '5a': 832, '5b': 1024}
    assert net.blobs['loss1/ave_pool'].shape == (1, 512, 4, 4)
    assert net.blobs['pool5/7x7_s1'].shape == (1, 1024, 1, 1)

    net = build(name, TRAIN, fx, batch=1, lmdb=fx.imagenet_lmdb)
    assert [net.blob_loss_weights[n] for n in GOOGLENET_LOSSES] == pytest.approx([0.3, 0.3, 1])
    out = run(net, backward=True)
    assert set(out) == set(GOOGLENET_LOSSES)
    check_loss(out, *GOOGLENET_LOSSES)


def test_fcn_style_deconvolution_and_crop(fx):
    name = 'fcn32s_style_train_val.prototxt'
    net = build(name, TRAIN, fx, batch=1)
    # 64 + 2 * 100 padding -> pool 131 -> pool 66 -> fc6 60 -> upscore (60 - 1) * 4 + 8
    assert net.blobs['upscore'].shape == (1, 21, 244, 244)
    weights = net.params['upscore'][0].data
    assert weights.shape == (21, 1, 8, 8)
    kernel = 1 - np.abs(np.arange(8) - 3.5) / 4            # bilinear, factor 4
    np.testing.assert_allclose(weights[5, 0], np.outer(kernel, kernel), rtol=1e-6)
    before = weights.copy()
    rng = np.random.default_rng(1)
    label = rng.integers(0, 21, (1, 1, 64, 64))
    label[0, 0, :8] = 255                                   # ignored pixels
    net.blobs['data'].data[...] = rng.uniform(-1, 1, (1, 3, 64, 64))
    net.blobs['label'].data[...] = label
    out = net.forward()
    net.backward()
    check_loss(out, 'loss')
    assert net.blobs['score'].shape == (1, 21, 64, 64)
    np.testing.assert_array_equal(net.blobs['score'].data,
                                  net.blobs['upscore'].data[:, :, 89:89 + 64, 89:89 + 64])
    assert net.layer_dict['upscore'].param_needs_grad(0) is False      # lr_mult 0: frozen
    np.testing.assert_array_equal(net.params['upscore'][0].data, before)
    assert np.abs(net.params['conv1_1'][0].diff).sum() > 0
    out = run(build(name, TEST, fx, batch=1), backward=False)
    assert shapes(out) == {'prob': (1, 21, 64, 64)}


@pytest.mark.slow
def test_resnet_style_batchnorm_scale_eltwise(fx):
    name = 'resnet_style_train_val.prototxt'
    net = build(name, TRAIN, fx, batch=2)
    assert [b.shape for b in net.params['bn_conv1']] == [(64,), (64,), (1,)]
    assert [b.shape for b in net.params['scale_conv1']] == [(64,), (64,)]
    assert net.blobs['res2a'].shape == (2, 256, 56, 56)
    out = run(net, backward=True)
    check_loss(out, 'loss')
    # TRAIN normalises with the batch's statistics and accumulates them (bn, Scale and ReLU
    # all work in place on conv1, so the running sums show it): the scale factor is now 1.
    assert net.params['bn_conv1'][2].data[0] == pytest.approx(1)
    assert np.abs(net.params['bn_conv1'][0].data).sum() > 0
    out = run(build(name, TEST, fx, batch=1), backward=False)
    assert shapes(out) == {'prob': (1, 1000)}


# -- solvers ----------------------------------------------------------------------------------

SOLVERS = {   # file: (solver type, test nets, fixtures (lmdb, mean), take a step)
    'lenet_solver.prototxt': ('SGD', 1, ('mnist_lmdb', None), True),
    'lenet_solver_adam.prototxt': ('Adam', 1, ('mnist_lmdb', None), True),
    'lenet_solver_rmsprop.prototxt': ('RMSProp', 1, ('mnist_lmdb', None), True),
    'lenet_adadelta_solver.prototxt': ('AdaDelta', 1, ('mnist_lmdb', None), True),
    'lenet_multistep_solver.prototxt': ('SGD', 1, ('mnist_lmdb', None), True),
    'lenet_consolidated_solver.prototxt': ('SGD', 2, ('mnist_lmdb', None), True),
    'lenet_auto_solver.prototxt': ('SGD', 1, ('mnist_lmdb', None), True),
    'mnist_autoencoder_solver.prototxt': ('SGD', 2, ('mnist_lmdb', None), True),
    'mnist_autoencoder_solver_adagrad.prototxt': ('AdaGrad', 2, ('mnist_lmdb', None), True),
    'mnist_autoencoder_solver_nesterov.prototxt': ('Nesterov', 2, ('mnist_lmdb', None), True),
    'mnist_autoencoder_solver_adadelta.prototxt': ('AdaDelta', 2, ('mnist_lmdb', None), True),
    'cifar10_quick_solver.prototxt': ('SGD', 1, ('cifar_lmdb', 'cifar_mean'), True),
    'cifar10_quick_solver_lr1.prototxt': ('SGD', 1, ('cifar_lmdb', 'cifar_mean'), True),
    'cifar10_full_solver.prototxt': ('SGD', 1, ('cifar_lmdb', 'cifar_mean'), True),
    'cifar10_full_sigmoid_solver_bn.prototxt': ('SGD', 1, ('cifar_lmdb', 'cifar_mean'), True),
    'mnist_siamese_solver.prototxt': ('SGD', 1, ('siamese_lmdb', None), True),
    'hdf5_classification_solver.prototxt': ('SGD', 1, (None, None), True),
    'hdf5_classification_nonlinear_solver.prototxt': ('SGD', 1, (None, None), True),
    'bvlc_reference_caffenet_solver.prototxt': ('SGD', 1, ('imagenet_lmdb', 'imagenet_mean'),
                                                False),
    'bvlc_alexnet_solver.prototxt': ('SGD', 1, ('imagenet_lmdb', 'imagenet_mean'), False),
    'bvlc_googlenet_quick_solver.prototxt': ('SGD', 1, ('imagenet_lmdb', None), False),
    'bvlc_googlenet_solver.prototxt': ('SGD', 1, ('imagenet_lmdb', None), False),
    'finetune_flickr_style_solver.prototxt': ('SGD', 1, (None, 'imagenet_mean'), False),
    'finetune_pascal_detection_solver.prototxt': ('SGD', 1, (None, 'imagenet_mean'), False),
}


def test_every_net_file_is_built():
    source = Path(__file__).read_text()
    nets = [p.name for p in MODELS.glob('*.prototxt') if 'solver' not in p.name]
    # lenet_auto_*: built through lenet_auto_solver.prototxt's train_net / test_net.
    missing = [n for n in nets if f"'{n}'" not in source and not n.startswith('lenet_auto_')]
    assert not missing


def test_every_solver_file_is_covered():
    assert sorted(p.name for p in MODELS.glob('*solver*.prototxt')) == sorted(SOLVERS)


# lenet_consolidated_solver's V1 loss layers have no top: Caffe (and the Net) give them an
# anonymous "(automatic)" one (Layer::AutoTopBlobs).
@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SOLVERS))
def test_solver(fx, tmp_path, name):
    kind, num_test_nets, (lmdb, mean), step = SOLVERS[name]
    lmdb, mean = (getattr(fx, key) if key else None for key in (lmdb, mean))
    param = read_prototxt(MODELS / name, pb.SolverParameter())
    # Net files become inline nets, so that their data layers can point at the fixtures.
    if param.HasField('net'):
        param.net_param.CopyFrom(load(os.path.basename(param.net)))
        param.ClearField('net')
    if param.HasField('train_net'):
        param.train_net_param.CopyFrom(load(os.path.basename(param.train_net)))
        param.ClearField('train_net')
    for path in param.test_net:
        param.test_net_param.add().CopyFrom(load(os.path.basename(path)))
    param.ClearField('test_net')
    for field in ('net_param', 'train_net_param'):
        if param.HasField(field):
            fit(getattr(param, field), fx, 2, lmdb, mean)
    for net_param in param.test_net_param:
        fit(net_param, fx, 2, lmdb, mean)
    if not step:                         # ImageNet-sized nets: build only, at batch 1
        for net_param in [param.net_param, param.train_net_param, *param.test_net_param]:
            fit(net_param, fx, 1, lmdb, mean)
    param.max_iter = 1
    param.test_iter[:] = [1] * len(param.test_iter)
    param.snapshot_prefix = str(tmp_path / 'snap')
    param.display = 1
    solver = caffe.get_solver(param, solver_path=str(MODELS / name))
    assert solver.type == kind
    assert len(solver.test_nets) == num_test_nets
    if not step:
        return
    before = [p.data.copy() for p in solver.net.learnable_params]
    solver.step(1)
    assert solver.iter == 1
    assert np.isfinite(solver.smoothed_loss)
    changed = [not np.array_equal(b, p.data) for b, p in zip(before, solver.net.learnable_params)]
    assert any(changed), 'one step changed no parameter'
    # The test nets share the trained weights.
    for test_net in solver.test_nets:
        test_net.share_trained_layers_with(solver.net)
        assert np.all([np.isfinite(v).all() for v in test_net.forward().values()])
