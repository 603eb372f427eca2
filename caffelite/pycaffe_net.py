"""pycaffe's Net extras in Python (pycaffe.py's _Net_* functions), attached to
:class:`caffelite.net.Net` by ``caffelite/__init__.py``:

    Net.forward_all, Net.forward_backward_all, Net._batch,
    Net._top_ids, Net._bottom_ids, Net._inputs, Net._outputs, Net._blob_loss_weights

Each is a plain function taking the net first, so it can also be called as
``forward_all(net, data=x)`` before the wiring exists.
"""
from itertools import zip_longest

import numpy as np

from .errors import CaffeliteError


def _batch(self, blobs):
    """Split ``blobs`` ({name: N x ...}) into the net's batch size (the first blob's N),
    the last batch padded with zeros, as pycaffe does."""
    if not blobs:
        return
    num = len(next(iter(blobs.values())))
    for name, array in blobs.items():
        if len(array) != num:
            raise CaffeliteError(f'"{name}" holds {len(array)} items but '
                                 f'"{next(iter(blobs))}" holds {num}; they must match')
    batch_size = next(iter(self.blobs.values())).shape[0]
    if batch_size < 1:
        raise CaffeliteError(f'{self.source}: the first blob has batch size {batch_size}')
    full, remainder = divmod(num, batch_size)
    for b in range(full):
        start = b * batch_size
        yield {name: blobs[name][start:start + batch_size] for name in blobs}
    if remainder:
        padded = {}
        for name in blobs:
            tail = np.asarray(blobs[name][num - remainder:])
            padding = np.zeros((batch_size - remainder,) + tail.shape[1:], dtype=tail.dtype)
            padded[name] = np.concatenate([tail, padding])
        yield padded


def _gather(collected, count):
    """{name: [batch arrays]} -> {name: one array of the first ``count`` items}."""
    return {name: np.concatenate(parts)[:count] for name, parts in collected.items() if parts}


def forward_all(self, blobs=None, **kwargs):
    """Forward any number of inputs (``name=N x ...`` arrays), batch by batch; return
    {output (and each of ``blobs``): N x ... array}, the padding dropped."""
    names = list(dict.fromkeys(list(self.outputs) + list(blobs or [])))
    collected = {name: [] for name in names}
    if not kwargs:
        outs = self.forward(blobs=blobs)
        return {name: outs[name].copy() for name in names}
    count = len(next(iter(kwargs.values())))
    for batch in _batch(self, kwargs):
        outs = self.forward(blobs=blobs, **batch)
        for name in names:
            collected[name].append(outs[name].copy())
    return _gather(collected, count)


def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
    """Forward and backward any number of items, batch by batch. ``kwargs`` hold inputs
    (forwarded) and output diffs (back-propagated); returns (outputs, diffs) as
    {name: N x ...}, the padding dropped."""
    out_names = list(dict.fromkeys(list(self.outputs) + list(blobs or [])))
    diff_names = list(dict.fromkeys(list(self.inputs) + list(diffs or [])))
    unknown = [k for k in kwargs if k not in self.inputs and k not in self.outputs]
    if unknown:
        raise CaffeliteError(f'{self.source}: {", ".join(unknown)} are neither inputs '
                             f'({", ".join(self.inputs)}) nor outputs '
                             f'({", ".join(self.outputs)}) of this net')
    forward_batches = _batch(self, {k: v for k, v in kwargs.items() if k in self.inputs})
    backward_batches = _batch(self, {k: v for k, v in kwargs.items() if k in self.outputs})
    all_outs = {name: [] for name in out_names}
    all_diffs = {name: [] for name in diff_names}
    for fb, bb in zip_longest(forward_batches, backward_batches, fillvalue={}):
        outs = self.forward(blobs=blobs, **fb)
        grads = self.backward(diffs=diffs, **bb)
        for name in out_names:
            all_outs[name].append(outs[name].copy())
        for name in diff_names:
            all_diffs[name].append(grads[name].copy())
    count = len(next(iter(kwargs.values()))) if kwargs else None
    return _gather(all_outs, count), _gather(all_diffs, count)


def _top_ids(self, i):
    """Indices (into ``net.blobs``) of layer i's tops."""
    names = list(self.blobs)
    return [names.index(n) for n in self.top_names[self._layer_names[i]]]


def _bottom_ids(self, i):
    """Indices (into ``net.blobs``) of layer i's bottoms."""
    names = list(self.blobs)
    return [names.index(n) for n in self.bottom_names[self._layer_names[i]]]


def _inputs(self):
    names = list(self.blobs)
    return [names.index(n) for n in self.inputs]


def _outputs(self):
    names = list(self.blobs)
    return [names.index(n) for n in self.outputs]


def _blob_loss_weights(self):
    return list(self.blob_loss_weights.values())


METHODS = {'forward_all': forward_all, 'forward_backward_all': forward_backward_all,
           '_batch': _batch, '_top_ids': _top_ids, '_bottom_ids': _bottom_ids}
PROPERTIES = {'_inputs': _inputs, '_outputs': _outputs,
              '_blob_loss_weights': _blob_loss_weights}


def attach(net_class):
    """Add the functions above to ``net_class`` (methods, and read-only properties)."""
    for name, function in METHODS.items():
        setattr(net_class, name, function)
    for name, function in PROPERTIES.items():
        setattr(net_class, name, property(function))
