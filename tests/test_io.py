"""Weight files: .caffemodel round trip (bit-exact), Caffe's HDF5 layout, legacy blob shapes,
copy_from by layer name with clear errors."""
import h5py
import numpy as np
import pytest

import caffelite as caffe
from caffelite import io
from caffelite.errors import CaffeliteError
from caffelite.prototxt import parse_prototxt_text, read_proto_binary
from caffelite.proto import caffelite_pb2 as pb

NET = '''
name: "tiny"
input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" }
                            bias_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" }
                              bias_filler { type: "uniform" } } }
'''


def make_net(text=NET):
    return caffe.Net(parse_prototxt_text(text, pb.NetParameter()), caffe.TEST)


def test_caffemodel_round_trip_is_bit_exact(tmp_path):
    net = make_net()
    path = tmp_path / 'w.caffemodel'
    net.save(str(path))
    other = make_net()
    other.copy_from(str(path))
    for name in net.params:
        for a, b in zip(net.params[name], other.params[name]):
            assert a.data.tobytes() == b.data.tobytes()
    # Saving the copy gives the same bytes again.
    path2 = tmp_path / 'w2.caffemodel'
    other.save(str(path2))
    assert path.read_bytes() == path2.read_bytes()
    # Caffe's layout: layer blobs with shapes, conv weight num_output x C x kh x kw.
    proto = read_proto_binary(str(path), pb.NetParameter())
    conv = [l for l in proto.layer if l.name == 'conv'][0]
    assert list(conv.blobs[0].shape.dim) == [4, 3, 3, 3] and list(conv.blobs[1].shape.dim) == [4]


def test_legacy_4d_blobs_and_v1_layers_load(tmp_path):
    net = make_net()
    proto = pb.NetParameter(name='old')
    rng = np.random.default_rng(0)
    expected = {}
    for name, blobs in net.params.items():
        layer = proto.layers.add(name=name)
        for blob in blobs:
            values = rng.standard_normal(blob.shape).astype(np.float32)
            expected.setdefault(name, []).append(values)
            legacy = (1,) * (4 - len(blob.shape)) + blob.shape
            layer.blobs.add(num=legacy[0], channels=legacy[1], height=legacy[2],
                            width=legacy[3], data=values.ravel())
    path = tmp_path / 'old.caffemodel'
    path.write_bytes(proto.SerializeToString())
    net.copy_from(str(path))
    for name, arrays in expected.items():
        for blob, values in zip(net.params[name], arrays):
            np.testing.assert_array_equal(blob.data, values)


def test_hdf5_weights_use_caffes_layout(tmp_path):
    net = make_net()
    path = tmp_path / 'w.h5'
    net.save_hdf5(str(path))
    with h5py.File(path, 'r') as f:
        assert sorted(f['data']) == ['conv', 'ip']
        np.testing.assert_array_equal(f['data/conv/0'][()], net.params['conv'][0].data)
    other = make_net()
    other.load_hdf5(str(path))
    np.testing.assert_array_equal(other.params['ip'][1].data, net.params['ip'][1].data)


def test_copy_from_ignores_unknown_layers_and_rejects_shape_mismatch(tmp_path):
    net = make_net()
    path = tmp_path / 'w.caffemodel'
    net.save(str(path))
    renamed = make_net(NET.replace('name: "ip"', 'name: "ip_new"'))
    renamed.copy_from(str(path))              # "ip" is ignored, "conv" copied
    np.testing.assert_array_equal(renamed.params['conv'][0].data, net.params['conv'][0].data)
    wider = make_net(NET.replace('num_output: 5', 'num_output: 6'))
    with pytest.raises(CaffeliteError, match=r'parameter 0 of layer "ip".*shape mismatch'):
        wider.copy_from(str(path))
    with pytest.raises(CaffeliteError, match='does not exist'):
        net.copy_from(str(tmp_path / 'nope.caffemodel'))


def test_corrupt_caffemodel_is_a_clear_error(tmp_path):
    path = tmp_path / 'bad.caffemodel'
    path.write_bytes(b'\xff\xff\xff garbage')
    with pytest.raises(CaffeliteError, match='bad.caffemodel: not a valid binary NetParameter'):
        make_net().copy_from(str(path))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / 'x.bin'
    with pytest.raises(RuntimeError):
        with io.atomic_path(str(target)) as tmp:
            open(tmp, 'wb').write(b'half')
            raise RuntimeError('crash while writing')
    assert list(tmp_path.iterdir()) == []


def test_blob_proto_array_round_trip_with_double_data():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(io.array_from_blob_proto(io.blob_proto_from_array(array)), array)
    proto = pb.BlobProto(num=1, channels=2, height=1, width=2, double_data=[1, 2, 3, 4])
    assert io.array_from_blob_proto(proto).shape == (1, 2, 1, 2)
