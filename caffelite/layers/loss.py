"""Softmax, the loss layers and Accuracy, with Caffe 1.0 semantics.

Loss layers write a scalar top (shape (), Caffe's 0-axis blob) and, in backward, scale their
gradient by that top's diff: the loss_weight the Net puts there. Labels arrive as floats and
are cast to int by truncation (Caffe's static_cast<int>). Everything stays on the backend of
the inputs: the normalizers and the loss weight are 0-d arrays, never pulled to the host;
only the label range checks and Accuracy's counts synchronize.
"""
import numpy as np

from .. import backend
from ..blob import shape_count
from ..errors import LayerError
from ..io import array_from_blob_proto
from ..prototxt import read_proto_binary
from ..proto import caffelite_pb2 as pb
from .base import Layer, register
from .neuron import sigmoid

FLT_MIN = float(np.finfo(np.float32).tiny)  # Caffe clips probabilities at FLT_MIN...
LOG_THRESHOLD = 1e-20                       # ...or at kLOG_THRESHOLD, depending on the layer


def _xp(array):
    return backend.get_array_module(array)


def _scalar(xp, value, dtype):
    """A 0-d array (a loss top's value) of ``dtype``; never a bare NumPy scalar."""
    return xp.asarray(value, dtype=dtype).reshape(())


def normalization_mode(loss_param, default=pb.LossParameter.VALID):
    """Caffe's rule: an explicit ``normalization`` wins; otherwise the deprecated
    ``normalize`` (true -> VALID, false -> BATCH_SIZE); otherwise the layer's default."""
    if loss_param.HasField('normalization'):
        return loss_param.normalization
    if loss_param.HasField('normalize'):
        return pb.LossParameter.VALID if loss_param.normalize else pb.LossParameter.BATCH_SIZE
    return default


def normalizer(xp, mode, outer_num, inner_num, valid_count, dtype):
    """Caffe's get_normalizer, floored at 1 (e.g. when every label is ignored), as a 0-d array.
    ``valid_count`` is a 0-d array (the number of non-ignored labels)."""
    if mode == pb.LossParameter.FULL:
        value = xp.asarray(outer_num * inner_num, dtype=dtype)
    elif mode == pb.LossParameter.VALID:
        value = xp.asarray(valid_count, dtype=dtype)
    elif mode == pb.LossParameter.BATCH_SIZE:
        value = xp.asarray(outer_num, dtype=dtype)
    elif mode == pb.LossParameter.NONE:
        value = xp.asarray(1, dtype=dtype)
    else:
        raise LayerError(f'unknown loss_param.normalization {mode}')
    return xp.maximum(value, dtype.type(1))


def _labels(xp, label_blob, outer, inner, ignore_label, num_classes):
    """(index, valid), both outer x inner: ``valid`` marks the labels that are not
    ``ignore_label``, ``index`` is the label where valid and 0 elsewhere. Raises on a
    non-ignored label outside [0, num_classes) (one host sync)."""
    labels = label_blob.xdata.reshape(outer, inner).astype(np.int64)
    valid = (labels != ignore_label) if ignore_label is not None \
        else xp.ones(labels.shape, dtype=bool)
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        first = int(backend.to_host(labels[bad])[0])
        raise LayerError(f'label {first} is out of range: there are {num_classes} classes '
                         f'(valid labels 0..{num_classes - 1})')
    return xp.where(valid, labels, 0), valid


def _log_softmax(xp, x, axis):
    """Numerically stable log-softmax along ``axis``."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


@register('Softmax')
class SoftmaxLayer(Layer):
    """y = exp(x) / sum_axis exp(x) along softmax_param.axis (default 1);
    dx = y * (dy - sum_axis(dy * y)). Works in place."""
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self._axis_param = int(self.layer_param.softmax_param.axis)

    def reshape(self, bottom, top):
        try:
            self.axis = bottom[0].canonical_axis(self._axis_param)
        except IndexError as err:
            raise LayerError(f'softmax_param.axis: {err}') from None
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].xdata
        xp = _xp(x)
        shifted = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self._y = shifted / shifted.sum(axis=self.axis, keepdims=True)
        top[0].xdata = self._y

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].xdiff
        y = self._y
        bottom[0].xdiff = y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))


class LossLayer(Layer):
    """Base: two bottoms (predictions, labels) with the same first dimension; one scalar top.
    Force-backward never reaches the labels (bottom 1)."""
    is_loss = True
    auto_top_blobs = True
    exact_num_bottom = 2
    exact_num_top = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        s0, s1 = bottom[0].shape, bottom[1].shape
        if len(s0) == 0 or len(s1) == 0 or s0[0] != s1[0]:
            raise LayerError(f'the data and label should have the same first dimension '
                             f'(got {s0} and {s1})')
        top[0].reshape(())

    def no_label_gradient(self, propagate_down, label_index=1):
        if len(propagate_down) > label_index and propagate_down[label_index]:
            raise LayerError(f'{self.type} cannot backpropagate to label inputs')

    def _ignore_label(self):
        lp = self.layer_param.loss_param
        return int(lp.ignore_label) if lp.HasField('ignore_label') else None


def _class_layout(shape, axis):
    """(outer, classes, inner) for a class axis."""
    return shape_count(shape, 0, axis), shape[axis], shape_count(shape, axis + 1)


def _labelled_class_layout(bottom, axis_param, axis_field):
    """(axis, outer, classes, inner) of scores bottom[0] with one label per outer*inner
    position in bottom[1]; a LayerError when the axis or the label count does not fit."""
    try:
        axis = bottom[0].canonical_axis(axis_param)
    except IndexError as err:
        raise LayerError(f'{axis_field}: {err}') from None
    outer, classes, inner = _class_layout(bottom[0].shape, axis)
    if outer * inner != bottom[1].count:
        raise LayerError(
            f'number of labels must match number of predictions: with classes on axis '
            f'{axis} of a {bottom[0].shape} bottom there must be {outer * inner} labels, '
            f'got {bottom[1].count} (shape {bottom[1].shape})')
    return axis, outer, classes, inner


@register('SoftmaxWithLoss')
class SoftmaxWithLossLayer(LossLayer):
    """Multinomial logistic loss of the softmax of bottom[0] along softmax_param.axis.

    bottom[0]: scores (outer x C x inner); bottom[1]: labels, outer*inner of them.
    loss = -sum_{non-ignored i} log(max(p_{i, label_i}, FLT_MIN)) / normalizer
    (loss_param.normalization, default VALID; ignore_label drops those positions).
    dx = (p - onehot(label)) * loss_weight / normalizer, 0 at ignored positions.
    Optional top[1]: the softmax probabilities.
    """
    exact_num_top = None
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        self.ignore_label = self._ignore_label()
        self.normalization = normalization_mode(self.layer_param.loss_param)
        self._axis_param = int(self.layer_param.softmax_param.axis)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.classes, self.inner = _labelled_class_layout(
            bottom, self._axis_param, 'softmax_param.axis')
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].xdata.reshape(self.outer, self.classes, self.inner)
        xp = _xp(x)
        index, valid = _labels(xp, bottom[1], self.outer, self.inner, self.ignore_label,
                               self.classes)
        log_prob = _log_softmax(xp, x, axis=1)
        picked = xp.take_along_axis(log_prob, index[:, None, :], axis=1)[:, 0, :]
        picked = xp.maximum(picked, np.log(FLT_MIN))
        dtype = top[0].dtype
        self._norm = normalizer(xp, self.normalization, self.outer, self.inner,
                                valid.sum(), dtype)
        top[0].xdata = _scalar(xp, -xp.where(valid, picked, 0).sum() / self._norm, dtype)
        self._prob, self._index, self._valid = xp.exp(log_prob), index, valid
        if len(top) > 1:
            top[1].xdata = self._prob.reshape(bottom[0].shape)

    def backward(self, top, propagate_down, bottom):
        self.no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        xp = _xp(self._prob)
        onehot = xp.arange(self.classes)[None, :, None] == self._index[:, None, :]
        scale = top[0].xdiff / self._norm
        diff = (self._prob - onehot) * (self._valid[:, None, :] * scale)
        bottom[0].xdiff = diff.reshape(bottom[0].shape)


@register('Accuracy')
class AccuracyLayer(Layer):
    """Top-k accuracy. bottom[0]: scores (outer x C x inner, classes on accuracy_param.axis);
    bottom[1]: labels (outer*inner). top[0]: scalar accuracy over the non-ignored labels;
    optional top[1]: per-class accuracy (C,), 0 for a class absent from the labels.

    As Caffe 1.0 (std::partial_sort with greater<pair<score, index>>), ties rank the higher
    class index first: a label is correct when
    #{k: s_k > s_label} + #{k > label: s_k == s_label} < top_k.
    No backward.
    """
    exact_num_bottom = 2
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.accuracy_param
        self.top_k = int(p.top_k)
        self.ignore_label = int(p.ignore_label) if p.HasField('ignore_label') else None
        self._axis_param = int(p.axis)

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        if self.top_k > bottom[0].count // max(bottom[1].count, 1):
            raise LayerError(f'top_k ({self.top_k}) must be less than or equal to the number '
                             f'of classes ({bottom[0].count // max(bottom[1].count, 1)})')
        self.axis, self.outer, self.classes, self.inner = _labelled_class_layout(
            bottom, self._axis_param, 'accuracy_param.axis')
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.classes,))

    def forward(self, bottom, top):
        scores = bottom[0].xdata.reshape(self.outer, self.classes, self.inner)
        xp = _xp(scores)
        index, valid = _labels(xp, bottom[1], self.outer, self.inner, self.ignore_label,
                               self.classes)
        true_score = xp.take_along_axis(scores, index[:, None, :], axis=1)
        classes = xp.arange(self.classes)[None, :, None]
        better = (scores > true_score) | ((scores == true_score) & (classes > index[:, None, :]))
        correct = (better.sum(axis=1) < self.top_k) & valid
        count = int(valid.sum())
        # Caffe divides by the count even when it is 0 (every label ignored): NaN.
        accuracy = float(correct.sum()) / count if count else float('nan')
        top[0].xdata = _scalar(xp, accuracy, top[0].dtype)
        if len(top) > 1:
            flat, ok = index.reshape(-1), valid.reshape(-1)
            seen = xp.bincount(flat[ok], minlength=self.classes)
            hits = xp.bincount(flat[correct.reshape(-1)], minlength=self.classes)
            per_class = xp.where(seen > 0, hits / xp.maximum(seen, 1), 0)
            top[1].xdata = per_class.astype(top[1].dtype)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise LayerError('Accuracy has no backward; set propagate_down: false or feed the '
                             'scores to a loss layer')


@register('EuclideanLoss')
class EuclideanLossLayer(LossLayer):
    """loss = sum((a - b)^2) / (2 N), N = shape[0]; da = (a - b) * w / N, db = -da
    (w = loss_weight). Both bottoms may receive gradients."""

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise LayerError(f'inputs must have the same dimension: {bottom[0].shape} vs '
                             f'{bottom[1].shape}')

    def forward(self, bottom, top):
        a = bottom[0].xdata
        xp = _xp(a)
        self._diff = a - bottom[1].xdata.reshape(a.shape)
        num = bottom[0].shape[0]
        top[0].xdata = _scalar(xp, (self._diff * self._diff).sum() / num / 2, top[0].dtype)

    def backward(self, top, propagate_down, bottom):
        num = bottom[0].shape[0]
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = top[0].xdiff * (sign / num)
                bottom[i].xdiff = (alpha * self._diff).reshape(bottom[i].shape)


@register('SigmoidCrossEntropyLoss')
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Cross-entropy of sigmoid(x) against targets t in [0, 1], element-wise:
    loss = -sum_{non-ignored} [t log s + (1 - t) log(1 - s)] / normalizer, computed stably as
    sum max(x, 0) - x t + log(1 + exp(-|x|)). Normalization as Caffe 1.0: loss_param
    normalization, else normalize (true: VALID, false: BATCH_SIZE), else BATCH_SIZE;
    outer = shape[0], inner = count / shape[0]. Positions whose int(target) equals
    ignore_label are dropped. dx = (sigmoid(x) - t) * loss_weight / normalizer.
    """

    def setup(self, bottom, top):
        self.ignore_label = self._ignore_label()
        self.normalization = normalization_mode(self.layer_param.loss_param,
                                                default=pb.LossParameter.BATCH_SIZE)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise LayerError(f'SigmoidCrossEntropyLoss needs as many targets as inputs: '
                             f'{bottom[0].shape} vs {bottom[1].shape}')
        self.outer = bottom[0].shape[0]
        self.inner = bottom[0].count // max(self.outer, 1)

    def forward(self, bottom, top):
        x = bottom[0].xdata
        xp = _xp(x)
        t = bottom[1].xdata.reshape(x.shape)
        if self.ignore_label is not None:
            valid = t.astype(np.int64) != self.ignore_label
        else:
            valid = xp.ones(x.shape, dtype=bool)
        per_element = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        dtype = top[0].dtype
        self._norm = normalizer(xp, self.normalization, self.outer, self.inner,
                                valid.sum(), dtype)
        self._x, self._t, self._valid = x, t, valid
        top[0].xdata = _scalar(xp, xp.where(valid, per_element, 0).sum() / self._norm, dtype)

    def backward(self, top, propagate_down, bottom):
        self.no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        xp = _xp(self._x)
        scale = top[0].xdiff / self._norm
        bottom[0].xdiff = (sigmoid(xp, self._x) - self._t) * (self._valid * scale)


class PerItemLabelLoss(LossLayer):
    """Base for losses with bottom[0] of N x dim and exactly one label per item."""

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        num = bottom[0].shape[0]
        if bottom[1].count != num:
            raise LayerError(f'{self.type} needs one label per item: {num} items, '
                             f'got labels of shape {bottom[1].shape}')


def _per_item_labels(bottom):
    """bottom[0] as (N, dim) and bottom[1] as N int labels, each checked to be in 0..dim-1."""
    num = bottom[0].shape[0]
    x = bottom[0].xdata.reshape(num, -1)
    labels, _ = _labels(_xp(x), bottom[1], num, 1, None, x.shape[1])
    return x, labels[:, 0]


@register('HingeLoss')
class HingeLossLayer(PerItemLabelLoss):
    """One-vs-all hinge loss. bottom[0]: scores (N x dim), bottom[1]: N labels.
    m_{nk} = max(0, 1 + delta_{nk} x_{nk}) with delta = -1 at the label, +1 elsewhere.
    L1: loss = sum m / N; L2: loss = sum m^2 / N.
    dx_{nk} = delta_{nk} * (sign(m_{nk}) | 2 m_{nk}) * loss_weight / N.
    """

    def setup(self, bottom, top):
        self.norm = self.layer_param.hinge_loss_param.norm

    def forward(self, bottom, top):
        x, labels = _per_item_labels(bottom)
        xp = _xp(x)
        delta = xp.ones(x.shape, dtype=x.dtype)
        delta[xp.arange(x.shape[0]), labels] = -1
        margin = xp.maximum(1 + delta * x, 0)
        self._delta, self._margin = delta, margin
        num = x.shape[0]
        if self.norm == pb.HingeLossParameter.L1:
            loss = margin.sum() / num
        elif self.norm == pb.HingeLossParameter.L2:
            loss = (margin * margin).sum() / num
        else:
            raise LayerError(f'unknown hinge_loss_param.norm {self.norm}')
        top[0].xdata = _scalar(xp, loss, top[0].dtype)

    def backward(self, top, propagate_down, bottom):
        self.no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        xp = _xp(self._margin)
        num = self._margin.shape[0]
        if self.norm == pb.HingeLossParameter.L1:
            grad = xp.sign(self._margin)
        else:
            grad = 2 * self._margin
        scale = top[0].xdiff / num
        bottom[0].xdiff = (self._delta * grad * scale).reshape(bottom[0].shape)


@register('MultinomialLogisticLoss')
class MultinomialLogisticLossLayer(PerItemLabelLoss):
    """bottom[0]: probabilities (N x dim); bottom[1]: N labels.
    loss = -sum_n log(max(p_{n, label_n}, 1e-20)) / N;
    dp_{n, label_n} = -loss_weight / (N * max(p_{n, label_n}, 1e-20)), 0 elsewhere."""

    def forward(self, bottom, top):
        p, labels = _per_item_labels(bottom)
        xp = _xp(p)
        picked = xp.maximum(p[xp.arange(p.shape[0]), labels], p.dtype.type(LOG_THRESHOLD))
        self._picked, self._labels = picked, labels
        top[0].xdata = _scalar(xp, -xp.log(picked).sum() / p.shape[0], top[0].dtype)

    def backward(self, top, propagate_down, bottom):
        self.no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        num = bottom[0].shape[0]
        xp = _xp(self._picked)
        diff = xp.zeros((num, bottom[0].count // num), dtype=bottom[0].dtype)
        diff[xp.arange(num), self._labels] = -(top[0].xdiff / num) / self._picked
        bottom[0].xdiff = diff.reshape(bottom[0].shape)


@register('InfogainLoss')
class InfogainLossLayer(LossLayer):
    """Softmax + infogain-weighted log loss (Caffe 1.0, after PR #3855).

    bottom[0]: scores (outer x C x inner, classes on infogain_loss_param.axis); bottom[1]:
    labels; bottom[2] (optional): the C x C matrix H (otherwise read from
    infogain_loss_param.source). p = softmax(x) over the class axis.
    loss = -sum_{non-ignored i} sum_l H[label_i, l] log(max(p_{i,l}, 1e-20)) / normalizer
    (loss_param normalization, default VALID, as SoftmaxWithLoss).
    dx_{i,l} = (p_{i,l} sum_k H[label_i, k] - H[label_i, l]) * loss_weight / normalizer.
    Optional top[1]: the probabilities.
    """
    exact_num_bottom = None
    min_bottom = 2
    max_bottom = 3
    exact_num_top = None
    min_top = 1
    max_top = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def setup(self, bottom, top):
        self.ignore_label = self._ignore_label()
        self.normalization = normalization_mode(self.layer_param.loss_param)
        self._axis_param = int(self.layer_param.infogain_loss_param.axis)
        self._stored_h = None
        if len(bottom) < 3:
            source = self.layer_param.infogain_loss_param.source
            if not source:
                raise LayerError('the infogain matrix needs a third bottom or '
                                 'infogain_loss_param.source')
            self._stored_h = array_from_blob_proto(
                read_proto_binary(source, pb.BlobProto()), np.float64).ravel()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.classes, self.inner = _labelled_class_layout(
            bottom, self._axis_param, 'infogain_loss_param.axis')
        h_count = bottom[2].count if len(bottom) > 2 else self._stored_h.size
        if h_count != self.classes * self.classes:
            raise LayerError(f'the infogain matrix must be {self.classes} x {self.classes} '
                             f'(one row and column per class), it has {h_count} values')
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def _infogain(self, bottom, xp, dtype):
        if len(bottom) > 2:
            return bottom[2].xdata.reshape(self.classes, self.classes)
        h = self._stored_h.reshape(self.classes, self.classes).astype(dtype)
        return backend.to_device(h) if xp is not np else h

    def forward(self, bottom, top):
        x = bottom[0].xdata.reshape(self.outer, self.classes, self.inner)
        xp = _xp(x)
        index, valid = _labels(xp, bottom[1], self.outer, self.inner, self.ignore_label,
                               self.classes)
        h = self._infogain(bottom, xp, x.dtype)
        log_prob = _log_softmax(xp, x, axis=1)
        prob = xp.exp(log_prob)
        log_clipped = xp.maximum(log_prob, np.log(LOG_THRESHOLD))
        rows = xp.moveaxis(h[index], -1, 1)          # H[label_i, :] as (outer, C, inner)
        per_item = (rows * log_clipped).sum(axis=1)  # (outer, inner)
        dtype = top[0].dtype
        self._norm = normalizer(xp, self.normalization, self.outer, self.inner,
                                valid.sum(), dtype)
        top[0].xdata = _scalar(xp, -xp.where(valid, per_item, 0).sum() / self._norm, dtype)
        self._prob, self._rows, self._valid = prob, rows, valid
        if len(top) > 1:
            top[1].xdata = prob.reshape(bottom[0].shape)

    def backward(self, top, propagate_down, bottom):
        self.no_label_gradient(propagate_down)
        if len(propagate_down) > 2 and propagate_down[2]:
            raise LayerError('InfogainLoss cannot backpropagate to the infogain matrix')
        if not propagate_down[0]:
            return
        rows = self._rows
        diff = self._prob * rows.sum(axis=1, keepdims=True) - rows
        scale = top[0].xdiff / self._norm
        bottom[0].xdiff = (diff * (self._valid[:, None, :] * scale)).reshape(bottom[0].shape)


@register('ContrastiveLoss')
class ContrastiveLossLayer(LossLayer):
    """Hadsell et al. contrastive loss. bottom[0], bottom[1]: features a, b (N x ...);
    bottom[2]: N similarity labels (int(y) != 0: similar). d^2 = ||a_n - b_n||^2.
    loss = sum_n [y_n d^2 + (1 - y_n) max(margin - d, 0)^2] / (2 N)
    (legacy_version: max(margin - d^2, 0) for dissimilar pairs).
    Gradients as Caffe, including its 1e-4 in the non-legacy dissimilar term:
    da = w/N * (a - b) for similar pairs, -w/N * (margin - d) / (d + 1e-4) * (a - b) for
    dissimilar ones with margin > d (legacy: -w/N * (a - b) where margin > d^2); db = -da.
    """
    exact_num_bottom = 3

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def setup(self, bottom, top):
        p = self.layer_param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = bool(p.legacy_version)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].shape != bottom[1].shape:
            raise LayerError(f'the two feature bottoms must have the same shape: '
                             f'{bottom[0].shape} vs {bottom[1].shape}')
        if bottom[2].count != bottom[0].shape[0]:
            raise LayerError(f'ContrastiveLoss needs one similarity label per pair: '
                             f'{bottom[0].shape[0]} pairs, labels of shape {bottom[2].shape}')

    def forward(self, bottom, top):
        num = bottom[0].shape[0]
        a = bottom[0].xdata.reshape(num, -1)
        xp = _xp(a)
        diff = a - bottom[1].xdata.reshape(num, -1)
        dist_sq = (diff * diff).sum(axis=1)
        similar = bottom[2].xdata.reshape(num).astype(np.int64) != 0
        if self.legacy:
            dissimilar_term = xp.maximum(self.margin - dist_sq, 0)
        else:
            dissimilar_term = xp.maximum(self.margin - xp.sqrt(dist_sq), 0) ** 2
        self._diff, self._dist_sq, self._similar = diff, dist_sq, similar
        loss = xp.where(similar, dist_sq, dissimilar_term).sum() / num / 2
        top[0].xdata = _scalar(xp, loss, top[0].dtype)

    def backward(self, top, propagate_down, bottom):
        self.no_label_gradient(propagate_down, label_index=2)
        num = bottom[0].shape[0]
        xp = _xp(self._diff)
        if self.legacy:
            mdist = self.margin - self._dist_sq
            dissimilar_coeff = xp.where(mdist > 0, -1.0, 0.0)
        else:
            dist = xp.sqrt(self._dist_sq)
            mdist = self.margin - dist
            dissimilar_coeff = xp.where(mdist > 0, -mdist / (dist + 1e-4), 0.0)
        coeff = xp.where(self._similar, 1.0, dissimilar_coeff).astype(self._diff.dtype)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = top[0].xdiff * (sign / num)
                bottom[i].xdiff = (self._diff * (coeff[:, None] * alpha)).reshape(bottom[i].shape)
