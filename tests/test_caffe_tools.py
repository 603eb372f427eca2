"""Caffe's tools: convert_imageset, compute_image_mean, extract_features and the
upgrade_*_proto_* commands, each through its main(argv) with Caffe's arguments."""
import io
import itertools

import h5py
import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from caffelite import Net, backend
from caffelite.io import read_mean_binaryproto
from caffelite.proto import caffelite_pb2 as pb
from caffelite.caffe_tools import (compute_image_mean, convert_imageset, extract_features,
                                   upgrade_net_proto_binary, upgrade_net_proto_text,
                                   upgrade_solver_proto_text)

lmdb = pytest.importorskip('lmdb')

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, size=(5, 3, 4, 6), dtype=np.uint8)     # BGR, C x H x W
LABELS = [2, 0, 1, 1, 4]
NAMES = [f'sub/im{i}.png' for i in range(5)]


@pytest.fixture
def image_set(tmp_path):
    """ROOT/ with five PNGs under sub/ and list.txt naming them with labels."""
    root = tmp_path / 'root'
    (root / 'sub').mkdir(parents=True)
    for name, image in zip(NAMES, IMAGES):
        Image.fromarray(np.ascontiguousarray(image[::-1].transpose(1, 2, 0)), 'RGB').save(
            root / name)
    (tmp_path / 'list.txt').write_text(''.join(f'{n} {lab}\n' for n, lab in zip(NAMES, LABELS)))
    return tmp_path


def convert(folder, db, *flags):
    return convert_imageset.main(list(flags) + [str(folder / 'root') + '/',
                                                str(folder / 'list.txt'), str(folder / db)])


def records(path):
    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        return [(k.decode(), pb.Datum.FromString(v)) for k, v in txn.cursor()]


_NET_IDS = itertools.count()


def data_net(tmp_path, source, batch_size, transform='', extra_layers=''):
    path = tmp_path / f'net_{next(_NET_IDS)}.prototxt'
    path.write_text(f'''
layer {{ name: "data" type: "Data" top: "data" top: "label"
  data_param {{ source: "{source}" backend: LMDB batch_size: {batch_size} }}
  transform_param {{ {transform} }} }}
{extra_layers}''')
    return str(path)


def test_convert_raw_lmdb_and_read_it_back(image_set):
    assert convert(image_set, 'raw_lmdb') == 0
    recs = records(image_set / 'raw_lmdb')
    assert [k for k, _ in recs] == [f'{i:08d}_{n}' for i, n in enumerate(NAMES)]
    for (_, datum), image, label in zip(recs, IMAGES, LABELS):
        assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 6, label)
        assert not datum.encoded and datum.data == image.tobytes()
    net = Net(data_net(image_set, image_set / 'raw_lmdb', 5), pb.TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs['data'].data, IMAGES)
    np.testing.assert_array_equal(net.blobs['label'].data, LABELS)


def test_convert_shuffle_with_seed(image_set):
    assert convert(image_set, 'shuffled', '-shuffle', '--seed=3') == 0
    order = list(range(5))
    np.random.default_rng(3).shuffle(order)
    names = [k.split('_', 1)[1] for k, _ in records(image_set / 'shuffled')]
    assert names == [NAMES[i] for i in order] and sorted(names) == NAMES
    assert names != NAMES
    net = Net(data_net(image_set, image_set / 'shuffled', 5), pb.TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs['data'].data, IMAGES[order])
    np.testing.assert_array_equal(net.blobs['label'].data, np.array(LABELS)[order])


def test_convert_encoded_keeps_png_files_and_the_data_layer_decodes_them(image_set):
    assert convert(image_set, 'enc', '-encoded') == 0
    for (_, datum), name in zip(records(image_set / 'enc'), NAMES):
        assert datum.encoded and datum.data == (image_set / 'root' / name).read_bytes()
    net = Net(data_net(image_set, image_set / 'enc', 5), pb.TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs['data'].data, IMAGES)


def test_convert_resize_gray_and_jpeg_encoding(image_set):
    assert convert(image_set, 'small', '-resize_height', '3', '--resize_width=2', '-gray') == 0
    datum = records(image_set / 'small')[0][1]
    assert (datum.channels, datum.height, datum.width) == (1, 3, 2)
    assert convert(image_set, 'jpg', '-encoded', '-encode_type', 'jpg', '-resize_height=8',
                   '-resize_width=8') == 0
    datum = records(image_set / 'jpg')[0][1]
    assert datum.encoded and datum.data[:2] == b'\xff\xd8'            # a JPEG
    assert Image.open(io.BytesIO(datum.data)).size == (8, 8)


def test_convert_errors(image_set, capsys):
    assert convert(image_set, 'raw_lmdb') == 0
    assert convert(image_set, 'raw_lmdb') == 1
    assert 'raw_lmdb: it already exists' in capsys.readouterr().err
    Image.new('RGB', (3, 3)).save(image_set / 'root' / 'sub' / 'im4.png')
    assert convert(image_set, 'checked', '-check_size') == 1
    assert 'incorrect data field size 27' in capsys.readouterr().err
    assert convert(image_set, 'unchecked', '-check_size=false') == 0
    (image_set / 'root' / 'sub' / 'im1.png').unlink()
    assert convert(image_set, 'skipped') == 0
    assert [k for k, _ in records(image_set / 'skipped')][1] == '00000002_sub/im2.png'
    assert 'Could not open or find file' in capsys.readouterr().err


def test_compute_image_mean_and_its_subtraction(image_set, capsys):
    assert convert(image_set, 'raw_lmdb') == 0
    mean_file = image_set / 'mean.binaryproto'
    assert compute_image_mean.main(['-backend', 'lmdb', str(image_set / 'raw_lmdb'),
                                    str(mean_file)]) == 0
    expected = IMAGES.astype(np.float64).mean(axis=0).astype(np.float32)
    mean = read_mean_binaryproto(str(mean_file))
    np.testing.assert_array_equal(mean, expected)
    proto = pb.BlobProto.FromString(mean_file.read_bytes())
    assert (proto.num, proto.channels, proto.height, proto.width) == (1, 3, 4, 6)
    out = capsys.readouterr().err
    assert 'Number of channels: 3' in out and 'mean_value channel [2]:' in out
    net = Net(data_net(image_set, image_set / 'raw_lmdb', 5, f'mean_file: "{mean_file}"'),
              pb.TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs['data'].data,
                                  IMAGES.astype(np.float32) - expected)
    assert compute_image_mean.main([str(image_set / 'nothing')]) == 1
    assert 'nothing does not exist' in capsys.readouterr().err


def test_compute_image_mean_of_encoded_images(image_set):
    assert convert(image_set, 'enc', '-encoded') == 0
    assert compute_image_mean.main([str(image_set / 'enc'), str(image_set / 'm')]) == 0
    np.testing.assert_array_equal(read_mean_binaryproto(str(image_set / 'm')),
                                  IMAGES.astype(np.float64).mean(axis=0).astype(np.float32))


IP = '''layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.01 }
                        bias_filler { type: "uniform" } } }'''


@pytest.mark.parametrize('db_type', ['lmdb', 'hdf5'])
def test_extract_features_writes_the_right_features(image_set, db_type):
    assert convert(image_set, 'raw_lmdb') == 0
    proto = data_net(image_set, image_set / 'raw_lmdb', 2, 'scale: 0.5', IP)
    backend.set_random_seed(4)
    trained = Net(proto, pb.TEST)
    weights = str(image_set / 'w.caffemodel')
    trained.save(weights)
    w, b = trained.params['ip'][0].data, trained.params['ip'][1].data
    feat, labels = str(image_set / f'feat_ip_{db_type}'), str(image_set / f'feat_lab_{db_type}')
    assert extract_features.main([weights, proto, 'ip,label', f'{feat},{labels}', '3',
                                  db_type, 'CPU']) == 0
    items = [i % 5 for i in range(6)]                 # 3 batches of 2, wrapping
    x = IMAGES[items].reshape(6, -1).astype(np.float32) * np.float32(0.5)
    expected = x @ w.T + b
    if db_type == 'hdf5':
        with h5py.File(feat, 'r') as f:
            np.testing.assert_allclose(f['data'][...], expected, rtol=1e-5)
        with h5py.File(labels, 'r') as f:
            np.testing.assert_array_equal(f['data'][...], np.array(LABELS)[items])
        return
    recs = records(feat)
    assert [k for k, _ in recs] == [f'{i:010d}' for i in range(6)]
    for (_, datum), row in zip(recs, expected):
        assert (datum.channels, datum.height, datum.width) == (3, 1, 1)
        np.testing.assert_allclose(datum.float_data, row, rtol=1e-5)
    assert [d.float_data[0] for _, d in records(labels)] == [LABELS[i] for i in items]


def test_extract_features_argument_errors(image_set, capsys):
    assert convert(image_set, 'raw_lmdb') == 0
    proto = data_net(image_set, image_set / 'raw_lmdb', 2, '', IP)
    weights = str(image_set / 'w.caffemodel')
    Net(proto, pb.TEST).save(weights)
    assert extract_features.main([weights, proto, 'nope', str(image_set / 'f'), '1',
                                  'lmdb']) == 1
    assert 'Unknown feature blob name nope' in capsys.readouterr().err
    assert extract_features.main([weights, proto, 'ip,data', str(image_set / 'f'), '1',
                                  'lmdb']) == 1
    assert '2 blob name(s) but 1 dataset name(s)' in capsys.readouterr().err


V1_NET = '''name: "tiny"
input: "data" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2
         weight_decay: 1 weight_decay: 0
         convolution_param { num_output: 2 kernel_size: 2 weight_filler { type: "gaussian" } } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
'''


def test_upgrade_net_proto_text_output_is_current_and_builds(tmp_path, capsys):
    (tmp_path / 'v1.prototxt').write_text(V1_NET)
    out = tmp_path / 'v2.prototxt'
    assert upgrade_net_proto_text.main([str(tmp_path / 'v1.prototxt'), str(out)]) == 0
    log = capsys.readouterr().err
    assert 'deprecated V1LayerParameter' in log and 'deprecated input fields' in log
    param = text_format.Parse(out.read_text(), pb.NetParameter())
    assert not param.layers and not param.input
    assert [(lp.name, lp.type) for lp in param.layer] == [
        ('input', 'Input'), ('conv', 'Convolution'), ('relu', 'ReLU')]
    assert [(p.lr_mult, p.decay_mult) for p in param.layer[1].param] == [(1, 1), (2, 0)]
    net = Net(str(out), pb.TEST)
    assert net.blobs['conv'].shape == (1, 2, 2, 2)
    again = tmp_path / 'v2_again.prototxt'
    assert upgrade_net_proto_text.main([str(out), str(again)]) == 0
    assert 'File already in latest proto format' in capsys.readouterr().err
    assert again.read_text() == out.read_text()
    assert upgrade_net_proto_text.main([str(tmp_path / 'none.prototxt'), str(again)]) == 1


def test_upgrade_net_proto_binary_keeps_the_weights(tmp_path):
    old = text_format.Parse(V1_NET, pb.NetParameter())
    weights = RNG.normal(size=(2, 2, 2, 2)).astype(np.float32)
    blob = old.layers[0].blobs.add(num=2, channels=2, height=2, width=2)
    blob.data.extend(weights.ravel())
    old.layers[0].blobs.add(num=1, channels=1, height=1, width=2).data.extend([0.5, -1])
    (tmp_path / 'old.caffemodel').write_bytes(old.SerializeToString())
    new = tmp_path / 'new.caffemodel'
    assert upgrade_net_proto_binary.main([str(tmp_path / 'old.caffemodel'), str(new)]) == 0
    param = pb.NetParameter.FromString(new.read_bytes())
    assert not param.layers and param.layer[1].type == 'Convolution'
    (tmp_path / 'net.prototxt').write_text(V1_NET)
    with pytest.warns(UserWarning):
        net = Net(str(tmp_path / 'net.prototxt'), pb.TEST, weights=str(new))
    np.testing.assert_array_equal(net.params['conv'][0].data, weights)
    np.testing.assert_array_equal(net.params['conv'][1].data, [0.5, -1])


def test_upgrade_solver_proto_text(tmp_path, capsys):
    (tmp_path / 'old_solver.prototxt').write_text(
        f'base_lr: 0.01 solver_type: ADAGRAD net_param {{ {V1_NET} }}')
    out = tmp_path / 'solver.prototxt'
    assert upgrade_solver_proto_text.main([str(tmp_path / 'old_solver.prototxt'),
                                           str(out)]) == 0
    param = text_format.Parse(out.read_text(), pb.SolverParameter())
    assert param.type == 'AdaGrad' and not param.HasField('solver_type')
    assert not param.net_param.layers and param.net_param.layer[1].type == 'Convolution'
    assert "'solver_type' field" in capsys.readouterr().err
