"""Blob storage and shapes; Caffe's fillers and their seeding."""
import numpy as np
import pytest

from caffelite import backend
from caffelite.blob import Blob
from caffelite.filler import fill
from caffelite.errors import CaffeliteError
from caffelite.proto import caffelite_pb2 as pb


def test_blob_shape_reshape_and_pycaffe_views():
    b = Blob((2, 3, 4, 5))
    assert b.count == 120 and b.num_axes == 4 and (b.num, b.channels, b.height, b.width) == (2, 3, 4, 5)
    b.data[...] = 1.5
    b.reshape(6, 20)                       # same count: contents kept
    assert b.data.shape == (6, 20) and (b.data == 1.5).all()
    b.reshape(3, 3)                        # smaller count: Caffe keeps the memory
    assert (b.data == 1.5).all() and b.diff.shape == (3, 3)
    b.reshape(11, 11)                      # beyond the capacity: fresh zeros
    assert (b.data == 0).all()
    b.reshape(3, 3)
    assert b.canonical_axis(-1) == 1
    with pytest.raises(ValueError, match='cannot set blob data'):
        b.xdata = np.zeros((2, 2))
    b.xdata = np.ones((3, 3), np.float64)
    assert b.data.dtype == np.float32


def param(text):
    from google.protobuf import text_format
    return text_format.Parse(text, pb.FillerParameter())


def test_blob_count_is_an_int_and_count_axes_is_caffes_count_start_end():
    b = Blob((2, 3, 4, 5))
    assert b.count == 120 and isinstance(b.count, int)
    assert (b.count_axes(1), b.count_axes(1, 3), b.count_axes(0, 0), b.count_axes(4)) == \
        (60, 12, 1, 1)
    assert Blob(()).count == 1


def test_fillers_follow_caffes_formulas():
    backend.set_random_seed(3)
    shape = (64, 32, 3, 3)                 # fan_in 288, fan_out 576
    assert (fill(param('type: "constant" value: 0.25'), (4,)) == 0.25).all()
    u = fill(param('type: "uniform" min: -2 max: 3'), (10000,))
    assert u.min() >= -2 and u.max() <= 3 and abs(u.mean() - 0.5) < 0.05
    g = fill(param('type: "gaussian" mean: 1 std: 2'), (20000,))
    assert abs(g.mean() - 1) < 0.05 and abs(g.std() - 2) < 0.05
    x = fill(param('type: "xavier"'), shape)
    assert np.abs(x).max() <= np.sqrt(3 / 288) and abs(x.std() - np.sqrt(1 / 288)) < 0.003
    x_out = fill(param('type: "xavier" variance_norm: FAN_OUT'), shape)
    assert np.abs(x_out).max() <= np.sqrt(3 / 576)
    m = fill(param('type: "msra" variance_norm: AVERAGE'), shape)
    assert abs(m.std() - np.sqrt(2 / 432)) < 0.003
    p = fill(param('type: "positive_unitball"'), (5, 7))
    assert (p >= 0).all() and np.allclose(p.sum(axis=1), 1)
    s = fill(param('type: "gaussian" sparse: 16'), (64, 100))
    assert abs((s != 0).mean() - 16 / 64) < 0.03


def test_bilinear_filler_is_the_upsampling_kernel():
    k = fill(param('type: "bilinear"'), (1, 1, 4, 4))[0, 0]
    row = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(k, np.outer(row, row))


def test_fillers_are_reproducible_with_a_seed_and_errors_are_clear():
    backend.set_random_seed(11)
    a = fill(param('type: "gaussian"'), (3, 4))
    backend.set_random_seed(11)
    assert np.array_equal(a, fill(param('type: "gaussian"'), (3, 4)))
    with pytest.raises(CaffeliteError, match='unknown filler type "nope"'):
        fill(param('type: "nope"'), (2,))
