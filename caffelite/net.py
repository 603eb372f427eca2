"""Net: a NetParameter built for one NetState, wired into blobs, run forward and backward.

The pycaffe API is kept: ``Net(model, phase, weights=...)``, ``net.blobs``, ``net.params``,
``net.forward(**inputs)``, ``net.backward(**diffs)``, ``net.save(path)``.

Caffe's net callbacks: ``add_before_forward(f)``, ``add_after_forward(f)``,
``add_before_backward(f)``, ``add_after_backward(f)`` (pycaffe's ``before_forward(f)`` and so
on are the same methods); each ``f(i)`` is called with the
layer index around layer i's forward (reshape included) or backward, for every layer the
pass runs (also those that need no backward), in the order the layers run.
"""
import os
from collections import OrderedDict

import numpy as np

from . import io
from .blob import Blob
from .errors import CaffeliteError, LayerError, PycaffeRuntimeError, layer_context
from .layers import create_layer
from .layers.python_layer import python_layer_error
from .net_rules import filter_net, insert_splits
from .prototxt import read_prototxt
from .proto import caffelite_pb2 as pb
from .upgrade import upgrade_net_as_needed


def _net_state(phase, level, stages, state, param):
    """The NetState to build for: an explicit ``state``, else phase/level/stages over the
    prototxt's own ``state`` field."""
    if state is not None:
        return state
    result = pb.NetState()
    result.CopyFrom(param.state)
    if phase is not None:
        result.phase = phase
    if level:
        result.level = level
    if stages:
        del result.stage[:]
        result.stage.extend(stages)
    return result


def _check_readable(path, what):
    """PycaffeRuntimeError naming ``path`` unless it can be opened (pycaffe's CheckFile)."""
    try:
        open(path, 'rb').close()
    except OSError as err:
        raise PycaffeRuntimeError(f'cannot open the {what} {path}: '
                                  f'{err.strerror or err}') from None


class Net:
    """A network of layers and blobs, built from a prototxt path or a NetParameter.

    pycaffe's signatures both work: ``Net(model, phase, level=0, stages=None, weights=None)``
    and the older ``Net(model, weights, phase)``.
    """

    def __init__(self, model, phase=None, level=0, stages=None, weights=None, state=None,
                 source=None, dtype=np.float32):
        self._before_forward, self._after_forward = [], []
        self._before_backward, self._after_backward = [], []
        if isinstance(phase, (str, os.PathLike)):          # Net(model, weights, phase)
            phase, weights, level = level, phase, 0
        if isinstance(model, pb.NetParameter):
            param, self.source = model, source or '<NetParameter>'
        else:
            self.source = os.fspath(model)
            _check_readable(self.source, 'net file')
            if isinstance(weights, (str, os.PathLike)):     # both before building, as pycaffe
                _check_readable(os.fspath(weights), 'weights file')
            param = read_prototxt(self.source, pb.NetParameter())
        self.dtype = np.dtype(dtype)
        self._build(param, _net_state(phase, level, stages, state, param))
        if weights:
            self.copy_from(weights)

    # -- construction ------------------------------------------------------------------------
    def _fail(self, layer_param, message):
        raise CaffeliteError(f'{layer_context(layer_param, self.source)}: {message}') from None

    def _build(self, param, state):
        param = upgrade_net_as_needed(param, self.source)
        self.name = param.name
        self.state = state
        self.phase = state.phase
        param = insert_splits(filter_net(param, state, self.source), self.source)
        self.param = param

        self.layers, self._layer_names = [], []
        self.blobs = OrderedDict()
        self.bottom_vecs, self.top_vecs = [], []
        self.bottom_names, self.top_names = OrderedDict(), OrderedDict()
        self._tops_by_layer = []              # top names per layer index (layer names repeat)
        self.blob_loss_weights = OrderedDict()
        self._loss_tops = []                  # (layer index, top index, weight)
        self._loss_tops_by_layer = {}         # layer index -> [(top index, weight)]
        self._loss_diff_shapes = {}           # (layer, top) -> shape its weight was written at
        self.inputs = []
        self.learnable_params, self.params_lr, self.params_weight_decay = [], [], []
        self._param_owner_by_name = {}        # ParamSpec name -> (layer index, blob index)
        blob_need_backward = {}
        self.layer_need_backward, self.bottom_need_backward = [], []
        consumed = set()
        source_dir = os.path.dirname(os.path.abspath(self.source)) \
            if os.path.exists(self.source) else os.getcwd()

        for i, lp in enumerate(param.layer):
            if not lp.HasField('phase'):
                lp.phase = state.phase
            try:
                layer = create_layer(lp, lp.phase, self.dtype)
            except CaffeliteError as err:
                self._fail(lp, str(err))
            layer.source_dir = source_dir
            if len(lp.propagate_down) not in (0, len(lp.bottom)):
                self._fail(lp, f'propagate_down has {len(lp.propagate_down)} entries for '
                               f'{len(lp.bottom)} bottoms')
            bottom, need = [], []
            for j, name in enumerate(lp.bottom):
                if name not in self.blobs or name in consumed:
                    self._fail(lp, f'bottom "{name}" is not produced by any earlier layer')
                consumed.add(name)
                bottom.append(self.blobs[name])
                propagate = lp.propagate_down[j] if lp.propagate_down else True
                need.append(blob_need_backward[name] and propagate)
            top = []
            for j, name in enumerate(lp.top):
                if j < len(lp.bottom) and name == lp.bottom[j]:
                    top.append(bottom[j])             # in place
                    consumed.discard(name)
                    continue
                if name in self.blobs:
                    self._fail(lp, f'top "{name}" is produced by more than one layer')
                self.blobs[name] = Blob((), self.dtype)
                top.append(self.blobs[name])
                if lp.type == 'Input':
                    self.inputs.append(name)
            top_names = list(lp.top) + self._automatic_tops(layer, top)
            try:
                layer.set_up(bottom, top)
            except Exception as err:  # noqa: BLE001 - each kind is reported by _layer_failed
                self._layer_failed(lp, layer, err, setup=True)
            self.layers.append(layer)
            self._layer_names.append(lp.name)
            self.bottom_vecs.append(bottom)
            self.top_vecs.append(top)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = top_names
            self._tops_by_layer.append(top_names)
            self._set_loss_weights(i, layer, lp, top_names)
            layer_needs = any(blob_need_backward[n] for n in lp.bottom)
            layer_needs |= self._append_params(i, layer, lp)
            if layer_needs:
                for name in top_names:
                    blob_need_backward[name] = True
            for name in top_names:
                blob_need_backward.setdefault(name, False)
            self.layer_need_backward.append(layer_needs)
            self.bottom_need_backward.append(need)

        self._prune_backward(param.force_backward, blob_need_backward)
        self.outputs = [n for n in self.blobs if n not in consumed]

    def _automatic_tops(self, layer, top):
        """Caffe's AutoTopBlobs: a loss layer given fewer tops than it needs gets anonymous
        ones (named "(automatic)", numbered when there are several); returns their names."""
        names = []
        if not layer.auto_top_blobs:
            return names
        while len(top) < max(layer.min_top or 0, layer.exact_num_top or 0):
            name = '(automatic)'
            while name in self.blobs:
                name = f'(automatic){len(self.blobs)}'
            self.blobs[name] = Blob((), self.dtype)
            top.append(self.blobs[name])
            names.append(name)
        return names

    def _set_loss_weights(self, i, layer, lp, top_names):
        if lp.loss_weight and len(lp.loss_weight) != len(top_names):
            self._fail(lp, f'loss_weight must be given once per top ({len(top_names)}), '
                           f'got {len(lp.loss_weight)}')
        for j, name in enumerate(top_names):
            weight = lp.loss_weight[j] if lp.loss_weight else (1.0 if layer.is_loss and j == 0
                                                                else 0.0)
            if weight:
                self._loss_tops.append((i, j, float(weight)))
                self._loss_tops_by_layer.setdefault(i, []).append((j, float(weight)))
                self.blob_loss_weights[name] = float(weight)
                self._write_loss_weight(i, j, float(weight))
            else:
                self.blob_loss_weights.setdefault(name, 0.0)

    def _write_loss_weight(self, i, j, weight):
        """Caffe's SetLossWeights for top j of layer i: its diff holds the loss weight, which
        forward uses to weigh the loss and backward starts from."""
        top = self.top_vecs[i][j]
        top.xdiff.fill(weight)
        self._loss_diff_shapes[(i, j)] = top.shape

    def _append_params(self, i, layer, lp):
        """Register the layer's parameter blobs (sharing by ParamSpec name); return whether
        any of them needs a gradient."""
        if len(lp.param) > len(layer.blobs):
            self._fail(lp, f'{len(lp.param)} param specs for {len(layer.blobs)} parameter blobs')
        layer.param_propagate_down = []
        for k, blob in enumerate(layer.blobs):
            spec = lp.param[k] if k < len(lp.param) else pb.ParamSpec()
            owner = self._param_owner_by_name.get(spec.name) if spec.name else None
            if owner is None:
                if spec.name:
                    self._param_owner_by_name[spec.name] = (i, k, len(self.learnable_params))
                self.learnable_params.append(blob)
                self.params_lr.append(spec.lr_mult)
                self.params_weight_decay.append(spec.decay_mult)
            else:
                owner_layer, owner_k, learnable_id = owner
                owner_blob = self.layers[owner_layer].blobs[owner_k]
                if owner_blob.shape != blob.shape:
                    # PERMISSIVE (equal counts) would need a reshaped alias; Caffe's nets use STRICT.
                    self._fail(lp, f'cannot share parameter "{spec.name}" (blob {k}): its shape '
                                   f'{blob.shape} differs from the owner\'s {owner_blob.shape}')
                if spec.HasField('lr_mult') and spec.lr_mult != self.params_lr[learnable_id]:
                    self._fail(lp, f'shared parameter "{spec.name}" has lr_mult {spec.lr_mult}, '
                                   f'the owner has {self.params_lr[learnable_id]}')
                layer.blobs[k] = owner_blob
            layer.param_propagate_down.append(spec.lr_mult != 0)
        return any(layer.param_propagate_down)

    def _prune_backward(self, force_backward, blob_need_backward):
        """Caffe's rules: skip backward for layers that do not lead to a loss or whose
        bottoms need no gradient; ``force_backward`` turns every allowed one back on."""
        under_loss, skip = set(), set()
        for i in reversed(range(len(self.layers))):
            lp, tops = self.param.layer[i], self._tops_by_layer[i]
            contributes = any(self.blob_loss_weights.get(n, 0) or n in under_loss for n in tops)
            skippable = all(n in skip for n in tops)
            if self.layer_need_backward[i] and skippable:
                self.layer_need_backward[i] = False
                self.bottom_need_backward[i] = [False] * len(lp.bottom)
            if not contributes:
                self.layer_need_backward[i] = False
            for j, name in enumerate(lp.bottom):
                if contributes:
                    under_loss.add(name)
                else:
                    self.bottom_need_backward[i][j] = False
                if not self.bottom_need_backward[i][j]:
                    skip.add(name)
        if force_backward:
            for i, layer in enumerate(self.layers):
                self.layer_need_backward[i] = True
                self.bottom_need_backward[i] = [
                    need or layer.allow_force_backward(j)
                    for j, need in enumerate(self.bottom_need_backward[i])]
                layer.param_propagate_down = [True] * len(layer.blobs)

    # -- pycaffe views ----------------------------------------------------------------------
    @property
    def params(self):
        return OrderedDict((name, layer.blobs) for name, layer in
                           zip(self._layer_names, self.layers) if layer.blobs)

    @property
    def layer_dict(self):
        return OrderedDict(zip(self._layer_names, self.layers))

    @property
    def _blob_names(self):
        return list(self.blobs)

    # -- callbacks (Caffe's Net::Callback) ----------------------------------------------------
    def add_before_forward(self, callback):
        """``callback(i)`` runs before layer i's reshape and forward."""
        self._before_forward.append(callback)

    def add_after_forward(self, callback):
        """``callback(i)`` runs right after layer i's forward."""
        self._after_forward.append(callback)

    def add_before_backward(self, callback):
        """``callback(i)`` runs before layer i's backward."""
        self._before_backward.append(callback)

    def add_after_backward(self, callback):
        """``callback(i)`` runs right after layer i's backward (e.g. a gradient reduction
        that starts on the parameters that are final once backward has passed layer i)."""
        self._after_backward.append(callback)

    # pycaffe's names for the same (Net_before_forward & co. in _caffe.cpp)
    before_forward, after_forward = add_before_forward, add_after_forward
    before_backward, after_backward = add_before_backward, add_after_backward

    # -- running ----------------------------------------------------------------------------
    def _layer_index(self, name, default):
        if name is None:
            return default
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise CaffeliteError(f'{self.source}: no layer named "{name}"') from None

    def _layer_failed(self, layer_param, layer, err, setup=False):
        """Raise ``err`` of a layer naming the layer. A Python layer's own exception keeps
        its type (see python_layer_error); a built-in layer's LayerError or ValueError (and in
        setup IndexError) becomes a CaffeliteError; in setup, any other error too."""
        context = layer_context(layer_param, self.source)
        if layer.type == 'Python' and not isinstance(err, CaffeliteError):
            raise python_layer_error(err, context) from err
        if isinstance(err, (LayerError, ValueError) + ((CaffeliteError, IndexError)
                                                        if setup else ())):
            self._fail(layer_param, str(err))
        if setup:
            raise CaffeliteError(f'{context}: setup failed: {type(err).__name__}: {err}') from err
        raise err

    def _run_layer(self, i, method):
        try:
            method()
        except Exception as err:  # noqa: BLE001 - each kind is reported by _layer_failed
            self._layer_failed(self.param.layer[i], self.layers[i], err)

    def forward_from_to(self, start, end):
        """Reshape and forward layers start..end (inclusive); return their weighted loss."""
        for i in range(start, end + 1):
            for callback in self._before_forward:
                callback(i)
            layer, bottom, top = self.layers[i], self.bottom_vecs[i], self.top_vecs[i]
            self._run_layer(i, lambda: layer.reshape(bottom, top))
            for j, weight in self._loss_tops_by_layer.get(i, ()):
                if top[j].shape != self._loss_diff_shapes[(i, j)]:
                    self._write_loss_weight(i, j, weight)      # reshaped: weigh it anew
            self._run_layer(i, lambda: layer.forward(bottom, top))
            for callback in self._after_forward:
                callback(i)
        loss = 0.0
        for i, j, _ in self._loss_tops:
            if start <= i <= end:
                top = self.top_vecs[i][j]             # sum(weight * top), the weight in the diff
                loss += float((top.xdata.astype(np.float64, copy=False) * top.xdiff).sum())
        return loss

    def backward_from_to(self, start, end):
        """Backward for layers start down to end (inclusive), where a gradient is needed."""
        for i in range(start, end - 1, -1):
            for callback in self._before_backward:
                callback(i)
            if self.layer_need_backward[i]:
                layer, bottom, top = self.layers[i], self.bottom_vecs[i], self.top_vecs[i]
                self._run_layer(i, lambda: layer.backward(top, self.bottom_need_backward[i],
                                                          bottom))
            for callback in self._after_backward:
                callback(i)

    def seed_loss_diffs(self):
        """Write each loss top's loss weight into its diff again, as set-up did (Caffe's
        SetLossWeights); undoes a diff a script wrote there."""
        for i, j, weight in self._loss_tops:
            self._write_loss_weight(i, j, weight)

    def forward(self, blobs=None, start=None, end=None, **inputs):
        """pycaffe's forward: copy ``inputs`` (name=array, every input of the net, each with
        the blob's batch size; ``blob.reshape`` first for another size) into the input blobs,
        run, return the output blobs' data (plus those named in ``blobs``)."""
        if inputs:
            self._set_inputs(inputs)
        first = self._layer_index(start, 0)
        last = self._layer_index(end, len(self.layers) - 1)
        self.forward_from_to(first, last)
        names = (self.outputs if end is None else self.top_names[self._layer_names[last]])
        names = list(names) + [b for b in (blobs or []) if b not in names]
        return {name: self.blobs[name].data for name in names}

    def feed(self, **arrays):
        """caffelite's own: reshape each named blob to its array's shape and copy the array
        in (any blob, any batch size); the next ``forward()`` runs on them. pycaffe's
        ``forward(**inputs)`` takes batch-sized arrays for exactly the net's inputs."""
        for name, array in arrays.items():
            if name not in self.blobs:
                raise CaffeliteError(f'{self.source}: feed() got "{name}", which is not a '
                                     f'blob of this net (inputs: {", ".join(self.inputs)})')
            array = np.asarray(array)
            self.blobs[name].reshape(array.shape)
            self.blobs[name].data[...] = array
        return self

    def _set_inputs(self, inputs):
        """pycaffe's checks, then ``blob.data[...] = array`` (broadcast as NumPy does)."""
        if set(inputs) != set(self.inputs):
            raise CaffeliteError(
                f'{self.source}: forward() input blob arguments do not match the net\'s inputs:'
                f' got {", ".join(sorted(inputs))}; the inputs are '
                f'{", ".join(self.inputs) or "none"}')
        for name, array in inputs.items():
            array, blob = np.asarray(array), self.blobs[name]
            if array.ndim == 0 or not blob.shape or array.shape[0] != blob.shape[0]:
                raise CaffeliteError(
                    f'{self.source}: forward() input "{name}" is not batch sized: shape '
                    f'{array.shape} for a blob of shape {blob.shape} (reshape the blob first: '
                    f'net.blobs["{name}"].reshape(...))')
            blob.data[...] = array

    def backward(self, diffs=None, start=None, end=None, **top_diffs):
        """pycaffe's backward: ``top_diffs`` set output diffs (as does writing
        ``blobs[name].diff``); every top's diff is used as it is, a loss top's holding its
        loss weight unless a script overwrote it (as in Caffe). Returns the input blobs'
        diffs (plus those named in ``diffs``)."""
        for name, array in top_diffs.items():
            if name not in self.blobs:
                raise CaffeliteError(f'{self.source}: backward() got "{name}", which is not a '
                                     f'blob of this net (outputs: {", ".join(self.outputs)})')
            self.blobs[name].diff[...] = array
        first = self._layer_index(start, len(self.layers) - 1)
        last = self._layer_index(end, 0)
        self.backward_from_to(first, last)
        base = self.inputs if end is None else self.bottom_names[self._layer_names[last]]
        names = list(base) + [d for d in (diffs or []) if d not in base]
        return {name: self.blobs[name].diff for name in names}

    def forward_backward(self):
        """One forward and one backward over the whole net; returns the loss."""
        loss = self.forward_from_to(0, len(self.layers) - 1)
        self.backward_from_to(len(self.layers) - 1, 0)
        return loss

    def reshape(self):
        """Propagate new input shapes through every layer (Caffe's Net::Reshape)."""
        for i, layer in enumerate(self.layers):
            self._run_layer(i, lambda: layer.reshape(self.bottom_vecs[i], self.top_vecs[i]))

    def clear_param_diffs(self):
        """Zero every learnable parameter's diff in place (no reallocation per iteration)."""
        for blob in self.learnable_params:
            blob.xdiff.fill(0)

    # -- weights ----------------------------------------------------------------------------
    def copy_from(self, path):
        """Copy weights by layer name from a .caffemodel, or a Caffe .h5 weights file."""
        io.copy_weights_into(self, path)

    def save(self, path):
        """Write the net and its weights as a binary .caffemodel (atomically)."""
        io.write_proto_atomic(path, io.net_proto_chunks(self))

    def save_hdf5(self, path):
        io.save_weights_hdf5(self, path)

    def load_hdf5(self, path):
        io.copy_weights_into(self, path)

    def share_trained_layers_with(self, other):
        """Use ``other``'s parameter blobs for same-named layers (Caffe's
        ShareTrainedLayersWith: a test net sees the train net's weights without copies)."""
        mine = self.layer_dict
        for name, source_layer in other.layer_dict.items():
            layer = mine.get(name)
            if layer is None or not source_layer.blobs:
                continue
            if len(layer.blobs) != len(source_layer.blobs):
                raise CaffeliteError(f'layer "{name}": {len(layer.blobs)} parameter blobs here, '
                                     f'{len(source_layer.blobs)} in the net to share with')
            for k, blob in enumerate(source_layer.blobs):
                if blob.shape != layer.blobs[k].shape:
                    raise CaffeliteError(f'layer "{name}": cannot share parameter {k}; shape '
                                         f'{blob.shape} vs {layer.blobs[k].shape}')
                layer.blobs[k] = blob

    share_with = share_trained_layers_with

    def set_input_arrays(self, data, labels, layer_index=0):
        """pycaffe's MemoryData feeding: give the layer at ``layer_index`` (or named so) its
        arrays. Bad arrays raise PycaffeRuntimeError (pycaffe's RuntimeError)."""
        if isinstance(layer_index, str):
            if layer_index not in self._layer_names:
                raise PycaffeRuntimeError(f'set_input_arrays: no layer "{layer_index}"')
            layer_index = self._layer_names.index(layer_index)
        layer, name = self.layers[layer_index], self._layer_names[layer_index]
        if not hasattr(layer, 'reset'):
            raise PycaffeRuntimeError(f'set_input_arrays: layer "{name}" is a {layer.type} '
                                      f'layer, not MemoryData')
        try:
            layer.reset(data, labels)
        except LayerError as err:
            raise PycaffeRuntimeError(f'set_input_arrays: layer "{name}": {err}') from None

