"""Tests for the caffelite protobuf schema (caffe.proto compatible)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from caffelite.proto import caffe_pb2, caffelite_pb2  # noqa: E402

PROTO_DIR = REPO_ROOT / "caffelite" / "proto"
LRCN_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "lrcn"


def _field(message, name):
    return getattr(caffelite_pb2, message).DESCRIPTOR.fields_by_name[name]


def _is_repeated(field):
    # protobuf >= 6 exposes is_repeated; older releases only have label.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


# ---------------------------------------------------------------------------
# The committed generated module matches the .proto source.
# ---------------------------------------------------------------------------

def test_generated_module_is_current(tmp_path):
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
         f"--python_out={tmp_path}", str(PROTO_DIR / "caffelite.proto")],
        check=True, capture_output=True)
    assert (tmp_path / "caffelite_pb2.py").exists()
    # Import the fresh module in its own interpreter (its descriptor would
    # clash with the committed one in this process's default pool) and dump
    # its serialized FileDescriptorProto.
    out = tmp_path / "fresh.pb"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import caffelite_pb2
        open({str(out)!r}, "wb").write(caffelite_pb2.DESCRIPTOR.serialized_pb)
    """)
    subprocess.run([sys.executable, "-c", script], check=True,
                   capture_output=True)
    fresh = descriptor_pb2.FileDescriptorProto.FromString(out.read_bytes())
    committed = descriptor_pb2.FileDescriptorProto.FromString(
        caffelite_pb2.DESCRIPTOR.serialized_pb)
    assert fresh == committed, (
        "caffelite_pb2.py is stale: regenerate it with "
        "python -m grpc_tools.protoc -I caffelite/proto "
        "--python_out=caffelite/proto caffelite/proto/caffelite.proto")
    assert out.read_bytes() == caffelite_pb2.DESCRIPTOR.serialized_pb


def test_caffe_pb2_alias():
    assert caffe_pb2 is caffelite_pb2
    import caffelite.proto.caffe_pb2 as alias  # pycaffe-style import path
    assert alias is caffelite_pb2


def test_package_and_syntax():
    fd = caffelite_pb2.DESCRIPTOR
    assert fd.package == "caffelite"
    proto = descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb)
    assert proto.syntax in ("", "proto2")


# ---------------------------------------------------------------------------
# Field numbers / defaults that must match Caffe.
# ---------------------------------------------------------------------------

LAYER_PARAM_NUMBERS = {
    "name": 1, "type": 2, "bottom": 3, "top": 4, "loss_weight": 5,
    "param": 6, "blobs": 7, "include": 8, "exclude": 9, "phase": 10,
    "propagate_down": 11,
    "transform_param": 100, "loss_param": 101, "accuracy_param": 102,
    "argmax_param": 103, "concat_param": 104, "contrastive_loss_param": 105,
    "convolution_param": 106, "data_param": 107, "dropout_param": 108,
    "dummy_data_param": 109, "eltwise_param": 110, "exp_param": 111,
    "hdf5_data_param": 112, "hdf5_output_param": 113,
    "hinge_loss_param": 114, "image_data_param": 115,
    "infogain_loss_param": 116, "inner_product_param": 117,
    "lrn_param": 118, "memory_data_param": 119, "mvn_param": 120,
    "pooling_param": 121, "power_param": 122, "relu_param": 123,
    "sigmoid_param": 124, "softmax_param": 125, "slice_param": 126,
    "tanh_param": 127, "threshold_param": 128, "window_data_param": 129,
    "python_param": 130, "prelu_param": 131, "spp_param": 132,
    "reshape_param": 133, "log_param": 134, "flatten_param": 135,
    "reduction_param": 136, "embed_param": 137, "tile_param": 138,
    "batch_norm_param": 139, "elu_param": 140, "bias_param": 141,
    "scale_param": 142, "input_param": 143, "crop_param": 144,
    "parameter_param": 145, "recurrent_param": 146, "swish_param": 147,
    "clip_param": 148,
}


@pytest.mark.parametrize("name,number", sorted(LAYER_PARAM_NUMBERS.items()))
def test_layer_parameter_numbers(name, number):
    assert _field("LayerParameter", name).number == number


# caffelite's own layer parameters, numbered far from Caffe's range.
EXTENSION_NUMBERS = {"video_data_param": 5001}


def test_layer_parameter_has_no_unexpected_fields():
    fields = caffelite_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert set(fields) == set(LAYER_PARAM_NUMBERS) | set(EXTENSION_NUMBERS)
    for name, number in EXTENSION_NUMBERS.items():
        assert fields[name].number == number


def test_blob_and_net_numbers():
    assert _field("BlobProto", "shape").number == 7
    for name, num in [("data", 5), ("diff", 6), ("double_data", 8),
                      ("double_diff", 9), ("num", 1), ("channels", 2),
                      ("height", 3), ("width", 4)]:
        assert _field("BlobProto", name).number == num
    for name in ["data", "diff", "double_data", "double_diff"]:
        assert _field("BlobProto", name).GetOptions().packed
    assert _field("BlobShape", "dim").GetOptions().packed
    assert _field("BlobShape", "dim").type == _field("BlobShape", "dim").TYPE_INT64
    assert _field("NetParameter", "layer").number == 100
    layers = _field("NetParameter", "layers")
    assert layers.number == 2
    assert layers.message_type.name == "V1LayerParameter"
    assert _field("NetParameter", "input").number == 3
    assert _field("NetParameter", "input_shape").number == 8
    assert _field("NetParameter", "input_dim").number == 4
    assert _field("NetParameter", "force_backward").number == 5
    assert _field("NetParameter", "state").number == 6
    assert _field("NetParameter", "debug_info").number == 7
    assert _field("Datum", "encoded").number == 7
    assert _field("BlobProtoVector", "blobs").number == 1


def test_solver_parameter():
    s = caffelite_pb2.SolverParameter()
    numbers = {
        "train_net": 1, "test_net": 2, "test_iter": 3, "test_interval": 4,
        "base_lr": 5, "display": 6, "max_iter": 7, "lr_policy": 8,
        "gamma": 9, "power": 10, "momentum": 11, "weight_decay": 12,
        "stepsize": 13, "snapshot": 14, "snapshot_prefix": 15,
        "snapshot_diff": 16, "solver_mode": 17, "device_id": 18,
        "test_compute_loss": 19, "random_seed": 20, "train_net_param": 21,
        "test_net_param": 22, "debug_info": 23, "net": 24, "net_param": 25,
        "train_state": 26, "test_state": 27, "snapshot_after_train": 28,
        "regularization_type": 29, "solver_type": 30, "delta": 31,
        "test_initialization": 32, "average_loss": 33, "stepvalue": 34,
        "clip_gradients": 35, "iter_size": 36, "snapshot_format": 37,
        "rms_decay": 38, "momentum2": 39, "type": 40,
        "layer_wise_reduce": 41, "weights": 42,
    }
    for name, num in numbers.items():
        assert _field("SolverParameter", name).number == num, name
    assert s.type == "SGD"
    assert s.solver_type == caffelite_pb2.SolverParameter.SGD
    assert caffelite_pb2.SolverParameter.ADAM == 5
    assert s.snapshot_format == caffelite_pb2.SolverParameter.BINARYPROTO
    assert s.solver_mode == caffelite_pb2.SolverParameter.GPU
    assert s.clip_gradients == -1
    assert s.iter_size == 1
    assert s.average_loss == 1
    assert s.random_seed == -1
    assert s.regularization_type == "L2"
    assert s.test_initialization is True
    assert s.snapshot_after_train is True
    assert s.momentum2 == pytest.approx(0.999)
    assert s.rms_decay == pytest.approx(0.99)
    assert s.delta == pytest.approx(1e-8)
    assert s.lr_policy == ""


def test_layer_defaults():
    conv = caffelite_pb2.ConvolutionParameter()
    assert conv.bias_term is True
    assert conv.group == 1
    assert conv.axis == 1
    for name, num in [("pad", 3), ("kernel_size", 4), ("stride", 6),
                      ("dilation", 18)]:
        f = _field("ConvolutionParameter", name)
        assert f.number == num and _is_repeated(f)
    assert _field("ConvolutionParameter", "force_nd_im2col").number == 17

    pool = caffelite_pb2.PoolingParameter()
    assert pool.pool == caffelite_pb2.PoolingParameter.MAX
    assert pool.stride == 1
    assert pool.round_mode == caffelite_pb2.PoolingParameter.CEIL

    lrn = caffelite_pb2.LRNParameter()
    assert lrn.local_size == 5
    assert lrn.alpha == 1.0
    assert lrn.beta == 0.75
    assert lrn.k == 1.0
    assert lrn.norm_region == caffelite_pb2.LRNParameter.ACROSS_CHANNELS

    loss = caffelite_pb2.LossParameter()
    assert loss.normalization == caffelite_pb2.LossParameter.VALID
    assert caffelite_pb2.LossParameter.FULL == 0
    assert caffelite_pb2.LossParameter.BATCH_SIZE == 2
    assert caffelite_pb2.LossParameter.NONE == 3
    assert _field("LossParameter", "ignore_label").number == 1
    assert _field("LossParameter", "normalize").number == 2

    filler = caffelite_pb2.FillerParameter()
    assert filler.type == "constant"
    assert filler.std == 1.0
    assert filler.max == 1.0
    assert filler.sparse == -1
    assert filler.variance_norm == caffelite_pb2.FillerParameter.FAN_IN

    ip = caffelite_pb2.InnerProductParameter()
    assert ip.bias_term is True and ip.transpose is False and ip.axis == 1
    assert _field("InnerProductParameter", "transpose").number == 6

    assert caffelite_pb2.DropoutParameter().dropout_ratio == 0.5
    assert caffelite_pb2.ParamSpec().lr_mult == 1.0
    assert caffelite_pb2.ParamSpec().decay_mult == 1.0
    assert caffelite_pb2.ParamSpec.PERMISSIVE == 1
    assert caffelite_pb2.NetState().phase == caffelite_pb2.TEST
    assert caffelite_pb2.TRAIN == 0 and caffelite_pb2.TEST == 1
    assert caffelite_pb2.DataParameter().backend == caffelite_pb2.DataParameter.LEVELDB
    assert caffelite_pb2.DataParameter.LMDB == 1
    assert caffelite_pb2.DataParameter().prefetch == 4
    assert caffelite_pb2.ImageDataParameter().batch_size == 1
    assert caffelite_pb2.ImageDataParameter().is_color is True
    assert caffelite_pb2.EltwiseParameter().operation == caffelite_pb2.EltwiseParameter.SUM
    assert caffelite_pb2.ConcatParameter().axis == 1
    assert caffelite_pb2.SliceParameter().axis == 1
    assert caffelite_pb2.SoftmaxParameter().axis == 1
    assert caffelite_pb2.FlattenParameter().end_axis == -1
    assert caffelite_pb2.ReshapeParameter().num_axes == -1
    assert caffelite_pb2.CropParameter().axis == 2
    assert caffelite_pb2.BatchNormParameter().moving_average_fraction == pytest.approx(0.999)
    assert caffelite_pb2.BatchNormParameter().eps == pytest.approx(1e-5)
    assert caffelite_pb2.ExpParameter().base == -1.0
    assert caffelite_pb2.PythonParameter().share_in_parallel is False
    assert _field("PythonParameter", "param_str").number == 3
    rec = caffelite_pb2.RecurrentParameter()
    assert rec.num_output == 0 and rec.expose_hidden is False
    assert _field("RecurrentParameter", "expose_hidden").number == 5
    assert caffelite_pb2.HingeLossParameter().norm == caffelite_pb2.HingeLossParameter.L1
    assert caffelite_pb2.ReductionParameter().operation == caffelite_pb2.ReductionParameter.SUM


def test_v1_and_v0_layer_parameter():
    V1 = caffelite_pb2.V1LayerParameter
    expected = {
        "NONE": 0, "ACCURACY": 1, "BNLL": 2, "CONCAT": 3, "CONVOLUTION": 4,
        "DATA": 5, "DROPOUT": 6, "EUCLIDEAN_LOSS": 7, "FLATTEN": 8,
        "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "IM2COL": 11, "IMAGE_DATA": 12,
        "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15,
        "MULTINOMIAL_LOGISTIC_LOSS": 16, "POOLING": 17, "RELU": 18,
        "SIGMOID": 19, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22,
        "TANH": 23, "WINDOW_DATA": 24, "ELTWISE": 25, "POWER": 26,
        "SIGMOID_CROSS_ENTROPY_LOSS": 27, "HINGE_LOSS": 28, "MEMORY_DATA": 29,
        "ARGMAX": 30, "THRESHOLD": 31, "DUMMY_DATA": 32, "SLICE": 33,
        "MVN": 34, "ABSVAL": 35, "SILENCE": 36, "CONTRASTIVE_LOSS": 37,
        "EXP": 38, "DECONVOLUTION": 39,
    }
    values = {v.name: v.number for v in V1.LayerType.DESCRIPTOR.values}
    assert values == expected
    f = V1.DESCRIPTOR.fields_by_name
    assert f["convolution_param"].number == 10
    assert f["layer"].number == 1
    assert f["layer"].message_type.name == "V0LayerParameter"
    assert f["param"].number == 1001
    assert f["blob_share_mode"].number == 1002
    assert f["blobs_lr"].number == 7
    assert f["include"].number == 32
    assert caffelite_pb2.V0LayerParameter().biasterm is True
    assert caffelite_pb2.V0LayerParameter.DESCRIPTOR.fields_by_name[
        "hdf5_output_param"].number == 1001


def test_v1_prototxt_parses():
    text = ('name: "old" '
            'layers { name: "c" type: CONVOLUTION bottom: "data" top: "c" '
            'blobs_lr: 1 blobs_lr: 2 '
            'convolution_param { num_output: 2 kernel_size: 3 } }')
    net = text_format.Parse(text, caffelite_pb2.NetParameter())
    assert len(net.layers) == 1 and len(net.layer) == 0
    layer = net.layers[0]
    assert layer.type == caffelite_pb2.V1LayerParameter.CONVOLUTION
    assert layer.convolution_param.num_output == 2
    assert list(layer.convolution_param.kernel_size) == [3]
    assert list(layer.blobs_lr) == [1.0, 2.0]


def test_binary_roundtrip_packed():
    blob = caffelite_pb2.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([float(i) for i in range(6)])
    raw = blob.SerializeToString()
    # Field 5 (data) packed: tag (5 << 3) | 2 == 0x2a, followed by 24 bytes.
    assert b"\x2a\x18" in raw
    again = caffelite_pb2.BlobProto.FromString(raw)
    assert list(again.shape.dim) == [2, 3]
    assert list(again.data) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# ---------------------------------------------------------------------------
# Reference LRCN prototxts parse.
# ---------------------------------------------------------------------------

def _lrcn_files():
    if not LRCN_DIR.is_dir():
        return []
    return sorted(LRCN_DIR.rglob("*.prototxt"))


def test_lrcn_folder_present():
    if not LRCN_DIR.is_dir():
        pytest.skip(f"reference folder {LRCN_DIR} not present")
    sub = {p.name for p in LRCN_DIR.iterdir() if p.is_dir()}
    assert {"activity_recognition", "coco_caption"} <= sub
    assert len(_lrcn_files()) > 0


@pytest.mark.parametrize(
    "path", _lrcn_files(),
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lrcn_prototxt_parses(path):
    text = path.read_text()
    if "solver" in path.name:
        msg = text_format.Parse(text, caffelite_pb2.SolverParameter())
        assert msg.ListFields(), f"{path} parsed to an empty SolverParameter"
    else:
        msg = text_format.Parse(text, caffelite_pb2.NetParameter())
        assert len(msg.layer) + len(msg.layers) > 0, f"{path} has no layers"


def test_lrcn_lstm_recurrent_param():
    path = LRCN_DIR / "coco_caption" / "lstm_language_model.prototxt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    net = text_format.Parse(path.read_text(), caffelite_pb2.NetParameter())
    lstms = [l for l in net.layer if l.type == "LSTM"]
    assert lstms, "expected an LSTM layer"
    assert all(l.recurrent_param.num_output > 0 for l in lstms)
