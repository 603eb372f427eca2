"""Softmax, loss layers and Accuracy: exact values (normalization modes, ignore_label, top_k,
ties), Caffe's defaults, and float64 gradient checks on the float bottoms."""
import math

import numpy as np
import pytest

from caffelite.errors import CaffeliteError, LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, forward_once, make, tops

pytestmark = pytest.mark.usefixtures('array_backend')

LN2 = math.log(2.0)


def run(layer, bottoms, num_top=1):
    """Setup + forward on fresh blobs; returns (bottom blobs, top blobs)."""
    bottom = [blob(b) for b in bottoms]
    return bottom, forward_once(layer, bottom, tops(num_top))


def loss_of(text, bottoms):
    _, top = run(make(text), bottoms)
    assert top[0].shape == ()  # Caffe's 0-axis loss blob
    return float(top[0].data)


def backward(layer, bottom, top, loss_weight=1.0, propagate=None):
    top[0].diff[...] = loss_weight
    layer.backward(top, propagate or [True] + [False] * (len(bottom) - 1), bottom)
    return bottom[0].diff.copy()


def gradcheck(text, bottoms, check_bottom=(0,), num_top=1, **kw):
    layer = make(text)
    bottom = [blob(b) for b in bottoms]
    check_layer_gradient(layer, bottom, tops(num_top), check_bottom=list(check_bottom), **kw)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# -- SoftmaxWithLoss ---------------------------------------------------------------------------

# Scores N=2 x C=3 x inner=2 chosen so that -log p is exact: p = (1,2,5)/8, (3,1,4)/8, (1,1,2)/4.
SCORES = np.zeros((2, 3, 2))
SCORES[0, :, 0] = np.log([1, 2, 5])
SCORES[0, :, 1] = np.log([3, 1, 4])
SCORES[1, :, 0] = [7.0, -3.0, 0.5]       # ignored position: any values
SCORES[1, :, 1] = np.log([1, 1, 2])
LABELS = np.array([[0, 2], [255, 1]], dtype=float)
# -log p: log 8 + log 2 + log 4 = 6 log 2 over 3 valid labels, 4 positions, batch 2.
SUM = 6 * LN2
IGNORE = 'loss_param { ignore_label: 255 %s }'


@pytest.mark.parametrize('norm,expected', [
    ('', SUM / 3),                              # default VALID
    ('normalization: VALID', SUM / 3),
    ('normalization: FULL', SUM / 4),
    ('normalization: BATCH_SIZE', SUM / 2),
    ('normalization: NONE', SUM),
    ('normalize: false', SUM / 2),              # deprecated: false -> BATCH_SIZE
    ('normalize: true', SUM / 3),
    ('normalize: false normalization: FULL', SUM / 4),  # explicit mode wins
])
def test_softmax_loss_ignore_label_and_normalization(norm, expected):
    text = 'type: "SoftmaxWithLoss" ' + IGNORE % norm
    assert loss_of(text, [SCORES, LABELS]) == pytest.approx(expected, rel=1e-12)
    gradcheck(text, [SCORES, LABELS])


def test_softmax_loss_valid_without_ignore_label_counts_all():
    labels = np.array([[0, 2], [0, 1]], dtype=float)  # position (1, 0): -log softmax(7,-3,.5)[0]
    extra = -np.log(np_softmax(SCORES[1, :, 0], 0)[0])
    assert loss_of('type: "SoftmaxWithLoss"', [SCORES, labels]) == \
        pytest.approx((SUM + extra) / 4, rel=1e-12)


def test_softmax_loss_gradient_values_second_top_and_loss_weight():
    layer = make('type: "SoftmaxWithLoss" ' + IGNORE % '')
    bottom, top = run(layer, [SCORES, LABELS], num_top=2)
    prob = np_softmax(SCORES, 1)
    np.testing.assert_allclose(top[1].data, prob, rtol=1e-13)
    assert top[1].shape == SCORES.shape
    top[1].diff[...] = 123.0  # the probabilities' diff plays no part in the gradient
    grad = backward(layer, bottom, top, loss_weight=2.0)
    expected = prob.copy()
    expected[0, 0, 0] -= 1
    expected[0, 2, 1] -= 1
    expected[1, 1, 1] -= 1
    expected[1, :, 0] = 0            # ignored
    np.testing.assert_allclose(grad, expected * 2.0 / 3, rtol=1e-12, atol=1e-15)


def test_softmax_loss_time_major_axis_2_with_ignore():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((3, 2, 5))          # T x N x V, softmax over V
    labels = rng.integers(0, 5, (3, 2)).astype(float)
    labels[2, 1] = -1
    text = 'type: "SoftmaxWithLoss" softmax_param { axis: 2 } loss_param { ignore_label: -1 }'
    logp = np.log(np_softmax(scores, 2))
    valid = labels != -1
    idx = np.where(valid, labels, 0).astype(int)
    expected = -np.take_along_axis(logp, idx[..., None], 2)[..., 0][valid].sum() / valid.sum()
    assert loss_of(text, [scores, labels]) == pytest.approx(expected, rel=1e-12)
    gradcheck(text, [scores, labels])
    gradcheck('type: "SoftmaxWithLoss" softmax_param { axis: -1 } '
              'loss_param { normalization: FULL }', [scores, np.abs(labels)])


@pytest.mark.parametrize('norm', ['VALID', 'FULL', 'BATCH_SIZE', 'NONE'])
def test_softmax_loss_all_labels_ignored_gives_zero(norm):
    """The normalizer is floored at 1, so VALID with no valid label is 0, not NaN."""
    text = 'type: "SoftmaxWithLoss" ' + IGNORE % ('normalization: ' + norm)
    layer = make(text)
    bottom, top = run(layer, [SCORES, np.full((2, 2), 255.0)])
    assert float(top[0].data) == 0.0
    np.testing.assert_array_equal(backward(layer, bottom, top), np.zeros(SCORES.shape))


def test_softmax_loss_is_stable_and_caps_at_flt_min():
    scores = np.array([[1000.0, 0.0], [0.0, 2000.0]])
    labels = np.array([0.0, 0.0])
    loss = loss_of('type: "SoftmaxWithLoss" loss_param { normalization: NONE }', [scores, labels])
    # item 0: p = 1; item 1: p = exp(-2000) < FLT_MIN, so Caffe's loss is -log(FLT_MIN)
    assert loss == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-12)


def test_softmax_loss_labels_are_truncated_floats():
    labels = np.array([[0.9, 2.7], [255.0, 1.2]])  # static_cast<int>: 0, 2, 255, 1
    assert loss_of('type: "SoftmaxWithLoss" ' + IGNORE % '', [SCORES, labels]) == \
        pytest.approx(SUM / 3, rel=1e-12)


def test_softmax_loss_errors():
    with pytest.raises(LayerError, match='out of range'):
        loss_of('type: "SoftmaxWithLoss"', [SCORES, [[0, 3], [0, 0]]])
    with pytest.raises(LayerError, match='number of labels'):
        loss_of('type: "SoftmaxWithLoss"', [SCORES, [[0, 1, 2], [0, 1, 2]]])
    with pytest.raises(LayerError, match='first dimension'):
        loss_of('type: "SoftmaxWithLoss"', [SCORES, [0, 1, 2, 0]])
    layer = make('type: "SoftmaxWithLoss"')
    bottom, top = run(layer, [SCORES, [[0, 1], [1, 0]]])
    with pytest.raises(LayerError, match='label'):
        backward(layer, bottom, top, propagate=[True, True])
    assert layer.is_loss and not layer.allow_force_backward(1) and layer.allow_force_backward(0)


# -- Softmax -------------------------------------------------------------------------------------

@pytest.mark.parametrize('axis', [1, 0, -1])
def test_softmax_forward_and_gradient(axis):
    x = np.random.default_rng(1).standard_normal((2, 3, 4)) * 3
    layer = make('type: "Softmax" softmax_param { axis: %d }' % axis)
    _, top = run(layer, [x])
    np.testing.assert_allclose(top[0].data, np_softmax(x, axis), rtol=1e-13)
    text = 'type: "Softmax" softmax_param { axis: %d }' % axis
    gradcheck(text, [x])
    # in place: the top is the bottom blob
    b = blob(x)
    check_layer_gradient(make(text), [b], [b])


def test_softmax_large_inputs_are_stable():
    _, top = run(make('type: "Softmax"'), [[[1000.0, 1000.0, -1000.0]]])
    np.testing.assert_allclose(top[0].data, [[0.5, 0.5, 0.0]])


# -- Accuracy -----------------------------------------------------------------------------------

ACC_SCORES = np.array([
    [0.1, 0.5, 0.3, 0.05],   # ranking 1, 2, 0, 3
    [0.9, 0.0, 0.05, 0.05],  # ranking 0, {2, 3}, 1
    [0.2, 0.2, 0.5, 0.1],    # ranking 2, {0, 1}, 3
    [0.0, 0.1, 0.2, 0.7],    # ranking 3, 2, 1, 0
    [0.3, 0.3, 0.3, 0.1],    # three-way tie
])


def accuracy(text, scores, labels, num_top=1):
    _, top = run(make('type: "Accuracy" ' + text), [scores, labels], num_top)
    assert top[0].shape == ()
    return [t.data.copy() for t in top]


def test_accuracy_top1_and_topk():
    labels = np.array([1, 0, 0, 1, 0], dtype=float)
    # top-1: items 0, 1 right; 2: label 0 loses to 2; 3 wrong; 4: tie 0/1/2, Caffe 1.0's
    # partial_sort ranks the highest index first, so class 2 is the top-1 -> wrong.
    assert accuracy('', ACC_SCORES, labels)[0] == pytest.approx(2 / 5)
    # top-2: item 2: label 0 ties with class 1 for second place; class 1 ranks first -> wrong;
    # item 4: tie order 2, 1, 0 -> label 0 third -> wrong.  item 3: label 1 is third -> wrong.
    assert accuracy('accuracy_param { top_k: 2 }', ACC_SCORES, labels)[0] == pytest.approx(2 / 5)
    # top-3: items 0, 1, 2, 3 (label 1 is third), 4 (third) -> all
    assert accuracy('accuracy_param { top_k: 3 }', ACC_SCORES, labels)[0] == pytest.approx(1.0)
    labels2 = np.array([2, 3, 1, 2, 2], dtype=float)
    # top-1: only item 4 (label 2 wins the three-way tie); top-2: every item (item 1: label 3
    # ties class 2 for second place and ranks first by its higher index).
    assert accuracy('', ACC_SCORES, labels2)[0] == pytest.approx(1 / 5)
    assert accuracy('accuracy_param { top_k: 2 }', ACC_SCORES, labels2)[0] == pytest.approx(1.0)


def test_accuracy_ignore_label_and_per_class_top():
    labels = np.array([1, -1, 0, 3, 1], dtype=float)
    # valid items 0, 2, 3, 4: right 0 (label 1) and 3 (label 3); wrong 2 (label 0 < class 2)
    # and 4 (tie, class 2 ranks first).
    top0, top1 = accuracy('accuracy_param { ignore_label: -1 }', ACC_SCORES, labels, 2)
    assert top0 == pytest.approx(2 / 4)
    assert top1.shape == (4,)
    # per class: 0: 0/1, 1: 1/2, 2: absent -> 0, 3: 1/1
    np.testing.assert_allclose(top1, [0.0, 0.5, 0.0, 1.0])
    # all labels ignored: Caffe's 0 / 0
    assert np.isnan(accuracy('accuracy_param { ignore_label: 7 }', ACC_SCORES,
                             np.full(5, 7.0))[0])


def test_accuracy_spatial_axis_and_errors():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((2, 4, 3))  # N x C x inner
    labels = rng.integers(0, 4, (2, 3)).astype(float)
    expected = (scores.argmax(axis=1) == labels).mean()
    assert accuracy('', scores, labels)[0] == pytest.approx(expected)
    scores_last = np.moveaxis(scores, 1, 2).copy()  # N x inner x C
    assert accuracy('accuracy_param { axis: -1 }', scores_last, labels)[0] == \
        pytest.approx(expected)
    with pytest.raises(LayerError, match='top_k'):
        accuracy('accuracy_param { top_k: 5 }', scores, labels)
    with pytest.raises(LayerError, match='out of range'):
        accuracy('', scores, np.full((2, 3), 4.0))
    layer = make('type: "Accuracy"')
    bottom, top = run(layer, [scores, labels])
    layer.backward(top, [False, False], bottom)  # not needed: nothing happens
    with pytest.raises(LayerError, match='no backward'):
        layer.backward(top, [True, False], bottom)
    assert not layer.is_loss and not layer.allow_force_backward(0)


# -- EuclideanLoss --------------------------------------------------------------------------------

def test_euclidean_loss_value_and_gradients_to_both_bottoms():
    a = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, -1.0]])
    b = np.array([[1.5, 2.0], [1.0, 4.0], [0.0, 1.0]])
    layer = make('type: "EuclideanLoss"')
    bottom, top = run(layer, [a, b])
    # (0.25 + 4 + 4) / (2 * 3)
    assert float(top[0].data) == pytest.approx(8.25 / 6, rel=1e-14)
    top[0].diff[...] = 3.0
    layer.backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff, 3.0 * (a - b) / 3)
    np.testing.assert_allclose(bottom[1].diff, -3.0 * (a - b) / 3)
    assert layer.allow_force_backward(0) and layer.allow_force_backward(1)
    rng = np.random.default_rng(3)
    gradcheck('type: "EuclideanLoss"', [rng.standard_normal((4, 3, 2)),
                                        rng.standard_normal((4, 6))], check_bottom=(0, 1))
    with pytest.raises(LayerError, match='same dimension'):
        loss_of('type: "EuclideanLoss"', [a, np.ones((3, 3))])


# -- SigmoidCrossEntropyLoss ----------------------------------------------------------------------

def naive_sigmoid_ce(x, t):
    s = 1 / (1 + np.exp(-x))
    return -(t * np.log(s) + (1 - t) * np.log(1 - s))


def test_sigmoid_cross_entropy_default_batch_size_normalization():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4)) * 3
    t = rng.uniform(0, 1, (3, 4))
    # Caffe 1.0 default: BATCH_SIZE (divide by shape[0] = 3, not by 12)
    assert loss_of('type: "SigmoidCrossEntropyLoss"', [x, t]) == \
        pytest.approx(naive_sigmoid_ce(x, t).sum() / 3, rel=1e-12)
    assert loss_of('type: "SigmoidCrossEntropyLoss" loss_param { normalize: true }', [x, t]) == \
        pytest.approx(naive_sigmoid_ce(x, t).sum() / 12, rel=1e-12)
    gradcheck('type: "SigmoidCrossEntropyLoss"', [x, t])


def test_sigmoid_cross_entropy_ignore_label_and_valid():
    x = np.array([[0.5, -1.0, 2.0], [1.5, -0.5, 0.0]])
    t = np.array([[1.0, 0.0, -1.0], [0.0, -1.0, 1.0]])
    valid = t != -1
    text = ('type: "SigmoidCrossEntropyLoss" '
            'loss_param { ignore_label: -1 normalization: VALID }')
    expected = naive_sigmoid_ce(x, np.where(valid, t, 0))[valid].sum() / 4
    layer = make(text)
    bottom, top = run(layer, [x, t])
    assert float(top[0].data) == pytest.approx(expected, rel=1e-12)
    grad = backward(layer, bottom, top, loss_weight=2.0)
    np.testing.assert_allclose(grad, np.where(valid, 1 / (1 + np.exp(-x)) - t, 0) * 2.0 / 4)
    gradcheck(text, [x, t])
    gradcheck('type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: -1 '
              'normalization: FULL }', [x, t])
    with pytest.raises(LayerError, match='label'):
        backward(layer, bottom, top, propagate=[True, True])


def test_sigmoid_cross_entropy_is_stable():
    x = np.array([[800.0, -800.0, 800.0]])
    t = np.array([[1.0, 0.0, 0.0]])
    with np.errstate(over='raise', invalid='raise'):
        loss = loss_of('type: "SigmoidCrossEntropyLoss"', [x, t])
    assert loss == pytest.approx(800.0, rel=1e-14)  # only the wrong third term costs


# -- HingeLoss ------------------------------------------------------------------------------------

HINGE_X = np.array([[0.5, -2.0, 0.3], [1.5, 0.2, -0.5]])
HINGE_LABELS = np.array([0.0, 2.0])
# margins max(0, 1 + delta x): item 0: [0.5, 0, 1.3]; item 1: [2.5, 1.2, 1.5]


def test_hinge_loss_l1_l2_values_and_gradients():
    assert loss_of('type: "HingeLoss"', [HINGE_X, HINGE_LABELS]) == \
        pytest.approx((0.5 + 1.3 + 2.5 + 1.2 + 1.5) / 2, rel=1e-14)
    l2 = 'type: "HingeLoss" hinge_loss_param { norm: L2 }'
    assert loss_of(l2, [HINGE_X, HINGE_LABELS]) == \
        pytest.approx((0.25 + 1.69 + 6.25 + 1.44 + 2.25) / 2, rel=1e-14)
    layer = make('type: "HingeLoss"')
    bottom, top = run(layer, [HINGE_X, HINGE_LABELS])
    np.testing.assert_allclose(backward(layer, bottom, top),
                               [[-0.5, 0.0, 0.5], [0.5, 0.5, -0.5]])
    gradcheck('type: "HingeLoss"', [HINGE_X, HINGE_LABELS])
    gradcheck(l2, [HINGE_X, HINGE_LABELS])
    rng = np.random.default_rng(5)
    x = rng.uniform(-3, 3, (4, 5, 1, 1))
    x = np.where(np.abs(np.abs(x) - 1) < 0.05, x * 1.2, x)  # away from the hinge kinks
    gradcheck(l2, [x, rng.integers(0, 5, 4).astype(float)])


# -- MultinomialLogisticLoss ------------------------------------------------------------------------

def test_multinomial_logistic_loss():
    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]])
    labels = np.array([[[[1.0]]], [[[2.0]]]])  # N x 1 x 1 x 1, as Caffe wants
    layer = make('type: "MultinomialLogisticLoss"')
    bottom, top = run(layer, [p, labels])
    assert float(top[0].data) == pytest.approx((math.log(4) + math.log(2)) / 2, rel=1e-14)
    np.testing.assert_allclose(backward(layer, bottom, top, 2.0),
                               [[0, -2.0 / 2 / 0.25, 0], [0, 0, -2.0 / 2 / 0.5]])
    gradcheck('type: "MultinomialLogisticLoss"', [p, labels])
    zero = loss_of('type: "MultinomialLogisticLoss"', [[[0.0, 1.0]], [0.0]])
    assert zero == pytest.approx(-math.log(1e-20), rel=1e-12)  # kLOG_THRESHOLD
    with pytest.raises(LayerError, match='one label per item'):
        loss_of('type: "MultinomialLogisticLoss"', [p, [[0, 1], [1, 0]]])


# -- InfogainLoss ---------------------------------------------------------------------------------

def infogain_reference(scores, labels, h, ignore=None):
    """-sum_valid sum_l H[label, l] log softmax(x)_l (summed, not normalized), classes axis 1."""
    logp = np.log(np_softmax(scores, 1))
    total = 0.0
    for i in range(scores.shape[0]):
        for j in range(scores.shape[2]):
            lab = int(labels.reshape(scores.shape[0], -1)[i, j])
            if lab == ignore:
                continue
            total -= (h[lab] * logp[i, :, j]).sum()
    return total


def test_infogain_identity_equals_softmax_loss():
    text_sm = 'type: "SoftmaxWithLoss" ' + IGNORE % ''
    text_ig = 'type: "InfogainLoss" ' + IGNORE % ''
    h = np.eye(3)
    assert loss_of(text_ig, [SCORES, LABELS, h]) == \
        pytest.approx(loss_of(text_sm, [SCORES, LABELS]), rel=1e-12)


def test_infogain_general_matrix_values_and_gradient():
    rng = np.random.default_rng(6)
    scores = rng.standard_normal((3, 4, 2))
    labels = np.array([[0, 3], [2, -1], [1, 1]], dtype=float)
    h = rng.uniform(0, 1, (4, 4))
    text = 'type: "InfogainLoss" loss_param { ignore_label: -1 }'
    expected = infogain_reference(scores, labels, h, ignore=-1) / 5
    layer = make(text)
    bottom, top = run(layer, [scores, labels, h], num_top=2)
    assert float(top[0].data) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(top[1].data, np_softmax(scores, 1), rtol=1e-13)
    gradcheck(text, [scores, labels, h])
    gradcheck('type: "InfogainLoss" loss_param { normalization: BATCH_SIZE }',
              [scores, np.abs(labels), h])
    with pytest.raises(LayerError, match='infogain matrix'):
        backward(layer, bottom, top, propagate=[True, False, True])
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(2)


def test_infogain_from_binaryproto_source(tmp_path):
    h = np.array([[1.0, 0.5], [0.25, 2.0]])
    proto = pb.BlobProto(num=1, channels=1, height=2, width=2)  # Caffe's legacy 1 x 1 x C x C
    proto.data.extend(h.ravel())
    path = tmp_path / 'H.binaryproto'
    path.write_bytes(proto.SerializeToString())
    scores = np.array([[0.3, -0.2], [1.0, 0.5], [-1.0, 2.0]])
    labels = np.array([0.0, 1.0, 1.0])
    text = 'type: "InfogainLoss" infogain_loss_param { source: "%s" }' % path
    expected = infogain_reference(scores[:, :, None], labels, h) / 3
    assert loss_of(text, [scores, labels]) == pytest.approx(expected, rel=1e-6)  # float32 data
    gradcheck(text, [scores, labels])
    with pytest.raises(LayerError, match='source'):
        loss_of('type: "InfogainLoss"', [scores, labels])
    with pytest.raises(CaffeliteError, match='cannot read /nonexistent/H'):
        loss_of('type: "InfogainLoss" infogain_loss_param { source: "/nonexistent/H" }',
                [scores, labels])
    with pytest.raises(LayerError, match='2 x 2'):
        loss_of('type: "InfogainLoss"', [scores, labels, np.eye(3)])


# -- ContrastiveLoss -------------------------------------------------------------------------------

def contrastive_bottoms():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((6, 3, 1, 1))
    b = rng.standard_normal((6, 3, 1, 1))
    sim = np.array([1, 0, 0, 1, 0, 0], dtype=float).reshape(6, 1, 1, 1)
    return a, b, sim


@pytest.mark.parametrize('legacy', [False, True])
def test_contrastive_loss_value(legacy):
    a, b, sim = contrastive_bottoms()
    margin = 2.0
    d2 = ((a - b) ** 2).reshape(6, -1).sum(axis=1)
    y = sim.ravel() != 0
    if legacy:
        dissimilar = np.maximum(margin - d2, 0)
    else:
        dissimilar = np.maximum(margin - np.sqrt(d2), 0) ** 2
    expected = np.where(y, d2, dissimilar).sum() / 6 / 2
    text = ('type: "ContrastiveLoss" contrastive_loss_param { margin: 2 legacy_version: %s }'
            % ('true' if legacy else 'false'))
    assert loss_of(text, [a, b, sim]) == pytest.approx(expected, rel=1e-12)


def test_contrastive_loss_gradients():
    a, b, sim = contrastive_bottoms()
    d2 = ((a - b) ** 2).reshape(6, -1).sum(axis=1)
    dissimilar = sim.ravel() == 0
    # Each margin puts some dissimilar pairs inside it and some outside, none near it:
    # legacy compares d^2 with 3.2, the current version d with 2.2.
    for value, margin in ((d2, 3.2), (np.sqrt(d2), 2.2)):
        assert (np.abs(value - margin) > 0.05).all()
        assert (value[dissimilar] < margin).any() and (value[dissimilar] > margin).any()
    gradcheck('type: "ContrastiveLoss" contrastive_loss_param { margin: 3.2 legacy_version: true }',
              [a, b, sim], check_bottom=(0, 1))
    # Caffe's non-legacy gradient divides by (d + 1e-4) instead of d: relative error ~1e-4 / d
    gradcheck('type: "ContrastiveLoss" contrastive_loss_param { margin: 2.2 }',
              [a, b, sim], check_bottom=(0, 1), rtol=2e-4)
    layer = make('type: "ContrastiveLoss"')
    assert layer.allow_force_backward(1) and not layer.allow_force_backward(2)
