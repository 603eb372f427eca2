"""Files as Caffe writes and reads them: every BlobProto shape form (shape, legacy 4-D, none),
HDF5 vs binary proto judged by content, and the fast writer's bytes equal to protobuf's."""
import os
import shutil

import numpy as np
import pytest

import caffelite as caffe
from caffelite import io
from caffelite.prototxt import parse_prototxt_text
from caffelite.proto import caffelite_pb2 as pb
from caffelite.proto_wire import blob_proto_chunks, join
from caffelite.solvers import get_solver
from caffelite.solvers.snapshot import SolverStateData, read_state, write_state_binary

NET = '''
name: "files"
input: "data" input_shape { dim: 2 dim: 3 dim: 4 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" }
                            bias_filler { type: "gaussian" } } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv"
        prelu_param { channel_shared: true filler { type: "constant" value: 0.3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" propagate_down: true
        include { phase: TEST }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
'''


def make_net():
    return caffe.Net(parse_prototxt_text(NET, pb.NetParameter()), caffe.TEST)


def slow_blob_proto(array, diff=None):
    """The BlobProto as protobuf builds it element by element (Caffe's Blob::ToProto)."""
    proto = pb.BlobProto()
    if array.ndim:
        proto.shape.dim.extend(array.shape)
    proto.data.extend(array.astype(np.float32).ravel())
    if diff is not None:
        proto.diff.extend(diff.astype(np.float32).ravel())
    return proto


def caffe_net_proto(net, write_diff=False):
    """Net::ToProto built with protobuf's own repeated-field API, the reference bytes."""
    param = pb.NetParameter(name=net.name)
    for lp, layer in zip(net.param.layer, net.layers):
        out = param.layer.add()
        out.CopyFrom(lp)
        for blob in layer.blobs:
            out.blobs.add().CopyFrom(slow_blob_proto(blob.data, blob.diff if write_diff else None))
    return param


# -- BlobProto forms ------------------------------------------------------------------------
def test_a_shapeless_blob_is_a_0_axis_blob_as_caffe_reads_it():
    proto = pb.BlobProto()
    proto.data.append(0.25)                            # Caffe's channel-shared PReLU slope
    assert io.blob_proto_shape(proto) == ()
    value = io.blobproto_to_array(proto)
    assert value.shape == () and value.dtype == np.float64 and value == 0.25


def test_blobproto_to_array_reads_each_form_as_pycaffe():
    shaped = pb.BlobProto(shape=pb.BlobShape(dim=[2, 3]), data=range(6), diff=range(6, 12))
    legacy = pb.BlobProto(num=1, channels=2, height=1, width=2, data=range(4))
    assert io.blobproto_to_array(shaped).shape == (2, 3)
    np.testing.assert_array_equal(io.blobproto_to_array(shaped, return_diff=True).ravel(),
                                  range(6, 12))
    assert io.blobproto_to_array(legacy).shape == (1, 2, 1, 2)
    both = pb.BlobProto(num=1, channels=4, shape=pb.BlobShape(dim=[4]), data=range(4))
    # Caffe (FromProto) and pycaffe both prefer the legacy fields when any is set.
    assert io.blob_proto_shape(both) == (1, 4, 0, 0)
    with pytest.raises(ValueError):                    # pycaffe's reshape error type
        io.blobproto_to_array(pb.BlobProto(shape=pb.BlobShape(dim=[5]), data=range(4)))


def test_caffe_written_prelu_weights_with_a_shapeless_slope_load(tmp_path):
    net = make_net()
    param = caffe_net_proto(net)
    prelu = [layer for layer in param.layer if layer.name == 'prelu'][0]
    assert not prelu.blobs[0].HasField('shape')        # how Caffe writes a 0-axis blob
    prelu.blobs[0].data[0] = 0.125
    path = tmp_path / 'caffe_written.caffemodel'
    path.write_bytes(param.SerializeToString())
    loaded = caffe.Net(parse_prototxt_text(NET, pb.NetParameter()), str(path), caffe.TEST)
    assert loaded.params['prelu'][0].data.shape == () and loaded.params['prelu'][0].data == 0.125


# -- HDF5 or binary proto by content ---------------------------------------------------------
def test_weights_format_is_judged_by_content_not_name(tmp_path):
    net = make_net()
    net.save_hdf5(str(tmp_path / 'w.h5'))
    net.save(str(tmp_path / 'w.caffemodel'))
    shutil.copy(tmp_path / 'w.h5', tmp_path / 'hdf5_weights.caffemodel')
    shutil.copy(tmp_path / 'w.caffemodel', tmp_path / 'binary_weights.h5')
    assert io.is_hdf5(str(tmp_path / 'hdf5_weights.caffemodel'))
    assert not io.is_hdf5(str(tmp_path / 'binary_weights.h5'))
    for name in ('hdf5_weights.caffemodel', 'binary_weights.h5'):
        loaded = caffe.Net(parse_prototxt_text(NET, pb.NetParameter()), str(tmp_path / name),
                           caffe.TEST)
        other = make_net()
        other.copy_from(str(tmp_path / name))
        for layer in net.params:
            for a, b, c in zip(net.params[layer], loaded.params[layer], other.params[layer]):
                np.testing.assert_array_equal(a.data, b.data)
                np.testing.assert_array_equal(a.data, c.data)


def _solver(tmp_path, fmt):
    param = pb.SolverParameter(base_lr=0.01, momentum=0.9, lr_policy='fixed', max_iter=2,
                               snapshot_prefix=str(tmp_path / fmt / 's'), random_seed=1,
                               snapshot_format=getattr(pb.SolverParameter, fmt))
    param.net_param.CopyFrom(parse_prototxt_text(NET.replace('include { phase: TEST }', '')
                                                 + '''layer { name: "loss" type: "Reduction"
                                                 bottom: "ip" top: "loss" loss_weight: 1 }''',
                                                 pb.NetParameter()))
    param.net_param.state.phase = pb.TRAIN
    return get_solver(param)


@pytest.mark.parametrize('fmt', ['HDF5', 'BINARYPROTO'])
def test_solver_state_format_is_judged_by_content_not_name(tmp_path, fmt):
    solver = _solver(tmp_path, fmt)
    solver.net.blobs['data'].data[...] = np.random.default_rng(2).standard_normal((2, 3, 4, 4))
    solver.step(2)
    _, state = solver.snapshot()
    renamed = state + ('.binary' if fmt == 'HDF5' else '.h5')
    os.rename(state, renamed)
    fresh = _solver(tmp_path, fmt)
    fresh.restore(renamed)
    assert fresh.iter == 2
    for a, b in zip(solver.history, fresh.history):
        np.testing.assert_array_equal(a.data, b.data)
    for a, b in zip(solver.net.learnable_params, fresh.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)


# -- the fast writer ------------------------------------------------------------------------
def test_caffemodel_bytes_equal_protobufs_own(tmp_path):
    net = make_net()
    for blob in net.learnable_params:
        blob.diff[...] = np.random.default_rng(3).standard_normal(blob.shape)
    for write_diff in (False, True):
        expected = caffe_net_proto(net, write_diff).SerializeToString()
        assert join(io.net_proto_chunks(net, write_diff)) == expected
    net.save(str(tmp_path / 'fast.caffemodel'))
    assert (tmp_path / 'fast.caffemodel').read_bytes() == \
        caffe_net_proto(net).SerializeToString()


def test_blob_bytes_parse_back_to_equal_arrays():
    rng = np.random.default_rng(4)
    for shape in [(), (1,), (3, 4), (2, 3, 4, 5), (2, 1, 3, 1, 2)]:
        data = rng.standard_normal(shape).astype(np.float32)
        diff = rng.standard_normal(shape).astype(np.float32)
        raw = join(blob_proto_chunks(data, diff))
        assert raw == slow_blob_proto(data, diff).SerializeToString()
        proto = pb.BlobProto.FromString(raw)
        np.testing.assert_array_equal(io.array_from_blob_proto(proto), data)
        np.testing.assert_array_equal(io.blobproto_to_array(proto, return_diff=True), diff)
    double = rng.standard_normal((2, 3))
    proto = pb.BlobProto.FromString(join(blob_proto_chunks(double)))
    assert len(proto.data) == 0 and list(proto.double_data) == list(double.ravel())
    assert proto.shape.dim == [2, 3]


def test_solverstate_and_mean_file_bytes_equal_protobufs_own(tmp_path):
    rng = np.random.default_rng(5)
    history = [rng.standard_normal((2, 3)).astype(np.float32),
               np.array(0.5, np.float32), rng.standard_normal(4)]
    write_state_binary(str(tmp_path / 's.solverstate'),
                       SolverStateData(7, 'w.caffemodel', 2, history))
    expected = pb.SolverState(iter=7, learned_net='w.caffemodel', current_step=2)
    for array in history:
        blob = expected.history.add()
        if array.ndim:
            blob.shape.dim.extend(array.shape)
        (blob.double_data if array.dtype == np.float64 else blob.data).extend(array.ravel())
    assert (tmp_path / 's.solverstate').read_bytes() == expected.SerializeToString()
    state = read_state(str(tmp_path / 's.solverstate'))
    for a, b in zip(history, state.history):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)

    mean = rng.uniform(0, 255, (3, 5, 6)).astype(np.float32)
    io.write_mean_binaryproto(str(tmp_path / 'mean.binaryproto'), mean)
    reference = pb.BlobProto(num=1, channels=3, height=5, width=6)
    reference.data.extend(mean.ravel())
    assert (tmp_path / 'mean.binaryproto').read_bytes() == reference.SerializeToString()
    np.testing.assert_array_equal(io.read_mean_binaryproto(str(tmp_path / 'mean.binaryproto')),
                                  mean)
