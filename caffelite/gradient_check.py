"""Finite-difference gradient checks (Caffe's GradientChecker, Chainer's check_backward).

The objective is L = sum_k <w_k, top_k> with fixed random weights w_k, so every top element
contributes. The analytic gradient comes from ``backward`` with top diffs set to w_k; the
numeric one is (L(x + eps) - L(x - eps)) / (2 eps) per element. Run in float64.
Each evaluation restores the bottoms first (so in-place layers are checked correctly) and
reseeds the random stream (so Dropout draws the same mask every time).
"""
import numpy as np

from . import backend


def _sample_indices(count, max_checks, rng):
    if count <= max_checks:
        return np.arange(count)
    return np.sort(rng.choice(count, size=max_checks, replace=False))


class _Mismatch:
    def __init__(self):
        self.lines = []

    def compare(self, what, index, analytic, numeric, rtol, atol):
        if abs(analytic - numeric) > atol + rtol * max(abs(analytic), abs(numeric)):
            self.lines.append(f'{what}[{index}]: backward {analytic:.8g}, '
                              f'finite difference {numeric:.8g}')

    def raise_if_any(self, title):
        if self.lines:
            shown = '\n  '.join(self.lines[:20])
            more = f'\n  ... and {len(self.lines) - 20} more' if len(self.lines) > 20 else ''
            raise AssertionError(f'{title}: {len(self.lines)} gradient mismatch(es)\n  {shown}{more}')


def check_layer_gradient(layer, bottom, top, check_bottom=None, check_params=True,
                         eps=1e-5, rtol=1e-4, atol=1e-6, max_checks=300, seed=1701,
                         setup=True):
    """Assert that ``layer.backward`` matches finite differences.

    check_bottom: indices of bottoms to check (default: all floating-point bottoms; label
    bottoms are integers stored as floats, so pass the indices explicitly for loss layers).
    Large blobs are checked on a seeded sample of ``max_checks`` elements.
    """
    rng = np.random.default_rng(seed)
    if setup:
        backend.set_random_seed(seed)
        layer.set_up(bottom, top)
    if check_bottom is None:
        check_bottom = list(range(len(bottom)))
    values = [b.data.copy() for b in bottom]
    param_values = [p.data.copy() for p in layer.blobs]

    def evaluate():
        for b, v in zip(bottom, values):
            b.reshape(v.shape)
            b.data[...] = v
        for p, v in zip(layer.blobs, param_values):
            p.data[...] = v
        backend.set_random_seed(seed)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)

    evaluate()
    weights = [rng.standard_normal(t.shape) for t in top]

    def objective():
        evaluate()
        return sum(float(np.sum(w * t.data)) for w, t in zip(weights, top))

    # Analytic gradients.
    evaluate()
    for t, w in zip(top, weights):
        t.diff[...] = w
    for p in layer.blobs:
        p.diff[...] = 0
    propagate = [i in check_bottom for i in range(len(bottom))]
    layer.backward(top, propagate, bottom)
    analytic_bottom = {i: bottom[i].diff.copy() for i in check_bottom}
    analytic_params = [p.diff.copy() for p in layer.blobs] if check_params else []

    mismatch = _Mismatch()
    targets = [(f'bottom[{i}]', values[i], analytic_bottom[i]) for i in check_bottom]
    targets += [(f'blobs[{j}]', param_values[j], g) for j, g in enumerate(analytic_params)]
    for what, value, grad in targets:
        flat = value.reshape(-1)
        for k in _sample_indices(flat.size, max_checks, rng):
            original = flat[k]
            flat[k] = original + eps
            plus = objective()
            flat[k] = original - eps
            minus = objective()
            flat[k] = original
            mismatch.compare(what, np.unravel_index(k, value.shape), grad.reshape(-1)[k],
                             (plus - minus) / (2 * eps), rtol, atol)
    evaluate()
    mismatch.raise_if_any(f'{layer.type} layer "{layer.name}"')


def check_net_gradient(net, check_inputs=True, eps=1e-5, rtol=1e-4, atol=1e-6, max_checks=100,
                       seed=1701):
    """Assert that ``net``'s backward matches finite differences of its loss, on every
    learnable parameter and (with force_backward) the input blobs: all of them, or the names
    listed in ``check_inputs``. Build the net in float64."""
    rng = np.random.default_rng(seed)
    last = len(net.layers) - 1

    def loss():
        backend.set_random_seed(seed)
        return net.forward_from_to(0, last)

    net.clear_param_diffs()
    loss()
    net.seed_loss_diffs()
    net.backward_from_to(last, 0)
    targets = [(f'param {k}', blob, blob.diff.copy()) for k, blob in
               enumerate(net.learnable_params)]
    inputs = net.inputs if check_inputs is True else (check_inputs or [])
    targets += [(f'input "{n}"', net.blobs[n], net.blobs[n].diff.copy()) for n in inputs]
    mismatch = _Mismatch()
    for what, blob, grad in targets:
        for k in _sample_indices(blob.count, max_checks, rng):
            original = blob.data.reshape(-1)[k]
            blob.data.reshape(-1)[k] = original + eps
            plus = loss()
            blob.data.reshape(-1)[k] = original - eps
            minus = loss()
            blob.data.reshape(-1)[k] = original
            mismatch.compare(what, np.unravel_index(k, blob.shape), grad.reshape(-1)[k],
                             (plus - minus) / (2 * eps), rtol, atol)
    loss()
    mismatch.raise_if_any(f'net "{net.name}"')
