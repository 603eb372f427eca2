"""Solver: Caffe's training loop (Solver::Step / Solve / Test / Snapshot / Restore).

One iteration (``step``) runs these stages, each a method so that data-parallel training can
slot in (a reduction in an ``on_gradients_ready`` hook) without touching the update rules:

1. ``reseed_for_iteration``  the random stream is reseeded from (random_seed + rank, iter)
2. ``clear_param_diffs``     zero every learnable parameter's diff
3. ``test_all``              every test_interval iterations (and at 0 if test_initialization)
4. ``on_start`` hooks
5. ``forward_backward``      iter_size forward/backward passes; diffs accumulate, loss averaged
6. ``on_gradients_ready`` hooks (e.g. an allreduce of the diffs over workers; see
                             ``attach_sync``)
7. ``apply_update``          lr = get_learning_rate(); clip_gradients(); then for each param
                             normalize (1/iter_size), regularize (L2 / L1 weight decay),
                             compute_update_value (the solver type's rule); update_params
                             (W <- W - diff)
8. snapshot every ``snapshot`` iterations, or when a signal asks for one; stop when asked.

Exact resumption: with ``random_seed >= 0`` the random stream (fillers at construction, then
dropout masks, random data, shuffling) is reseeded at the start of every iteration from
(random_seed + rank, iter), so N iterations, a snapshot, a restore and M more iterations draw
the same numbers, and give the same weights bit for bit, as N + M iterations in one run.
Without a seed the stream is not reseeded (and a resumed run is not repeatable, as in Caffe).
"""
import math
import os
import time

import numpy as np
from google.protobuf import text_format

from .. import backend, io
from ..blob import Blob
from ..errors import CaffeliteError
from ..net import Net
from ..proto import caffelite_pb2 as pb
from ..upgrade import upgrade_solver_param
from . import signals
from .log import ensure_default_log, fmt, logger
from .lr_policy import check_lr_policy, learning_rate
from .params import (read_solver_param, resolve_input, resolve_output_prefix,
                     test_net_specs, train_net_spec)
from .snapshot import (SolverStateData, find_learned_net, read_state, weight_layer_names,
                       write_state_binary, write_state_hdf5)


class Solver:
    """Base of the solver types; ``type`` is the SolverParameter.type string.

    ``Solver(solver_prototxt_path_or_SolverParameter)``; pycaffe's attributes: ``net``,
    ``test_nets``, ``iter``, ``param``, and ``step(n)``, ``solve(resume_file=None)``,
    ``restore(path)``, ``snapshot()``, ``apply_update()``, ``add_callback(...)``.
    ``rank`` / ``world_size`` say which of how many data-parallel workers this is (0 / 1);
    ``sync`` is the data-parallel synchronizer attached with ``attach_sync`` (else None).
    """
    type = None

    def __init__(self, param, rank=0, world_size=1, solver_path=None):
        ensure_default_log()
        if isinstance(param, (str, os.PathLike)):
            self.solver_path = os.fspath(param)
            param = read_solver_param(self.solver_path)
        else:
            # A SolverParameter; ``solver_path`` (if any) is the file it came from, whose
            # folder is the fallback for relative paths.
            self.solver_path = os.fspath(solver_path) if solver_path else None
            copy = pb.SolverParameter()
            copy.CopyFrom(param)
            param = copy
            upgrade_solver_param(param)
        self.param = param
        self.base_dir = os.path.dirname(self.solver_path) if self.solver_path else None
        self.rank, self.world_size = int(rank), int(world_size)
        self.on_start, self.on_gradients_ready = [], []
        self._action_function = None
        self.sync = None
        try:
            self.check_param()
        except CaffeliteError as err:
            raise CaffeliteError(f'{self.solver_path}: {err}' if self.solver_path else str(err)) \
                from None
        self.snapshot_prefix = resolve_output_prefix(param.snapshot_prefix, self.base_dir) \
            if param.HasField('snapshot_prefix') else None
        self._check_snapshot_folder()
        if param.HasField('type') and param.type != self.type:
            logger.warning('the solver file asks for type "%s"; running %s as constructed',
                           param.type, self.type)
        logger.info('Initializing solver from parameters: \n%s',
                    text_format.MessageToString(param))
        if param.random_seed >= 0:
            backend.set_random_seed(param.random_seed + self.rank)
        self.net = self._init_train_net()
        self.test_nets = self._init_test_nets()
        self._load_weights()
        logger.info('Solver scaffolding done.')
        self.iter = 0
        self.current_step = 0
        self.smoothed_loss = 0.0
        self._losses = []
        self.requested_early_exit = False
        self.history = []
        self.pre_solve()

    # -- set-up --------------------------------------------------------------------------------
    def check_param(self):
        """Reject a SolverParameter this solver cannot run (Caffe's CHECKs, done up front)."""
        p = self.param
        if p.average_loss < 1:
            raise CaffeliteError(f'average_loss must be >= 1, got {p.average_loss}')
        if p.iter_size < 1:
            raise CaffeliteError(f'iter_size must be >= 1, got {p.iter_size}')
        if p.regularization_type not in ('L1', 'L2'):
            raise CaffeliteError(f'unknown regularization_type "{p.regularization_type}"; '
                                 f'use L1 or L2')
        check_lr_policy(p)

    def _init_train_net(self):
        net_param, state, source = train_net_spec(self.param, self.base_dir, self.solver_path)
        logger.info('Creating training net from %s', source)
        return Net(net_param, state=state, source=source)

    def _init_test_nets(self):
        nets = []
        for i, (net_param, state, source) in enumerate(test_net_specs(
                self.param, self.base_dir, self.solver_path)):
            logger.info('Creating test net (#%d) specified by %s', i, source)
            nets.append(Net(net_param, state=state, source=source))
        return nets

    def _load_weights(self):
        """Fine-tuning: copy the ``weights`` files (each may be a comma-separated list) into
        the train and test nets (Caffe's LoadNetWeights)."""
        for entry in self.param.weights:
            for name in (n.strip() for n in entry.split(',') if n.strip()):
                path = resolve_input(name, self.base_dir, 'weights file')
                logger.info('Finetuning from %s', path)
                for net in [self.net] + self.test_nets:
                    net.copy_from(path)

    def pre_solve(self):
        """Create the history blobs (one per learnable parameter, zeros; Caffe's PreSolve)."""
        self.history = [Blob(p.shape, p.dtype) for p in self.net.learnable_params]

    def _check_snapshot_folder(self):
        """Caffe's CheckSnapshotWritePermissions, up front: periodic snapshots need a prefix,
        and the prefix's folder must be writable (it is created if missing)."""
        p = self.param
        if p.snapshot and not self.snapshot_prefix:
            raise CaffeliteError('the solver asks for a snapshot every '
                                 f'{p.snapshot} iterations but has no snapshot_prefix')
        if not self.snapshot_prefix or not (p.snapshot or p.snapshot_after_train):
            return
        folder = os.path.dirname(self.snapshot_prefix) or '.'
        try:
            os.makedirs(folder, exist_ok=True)
            # A name of its own, so that runs sharing a prefix do not remove each other's.
            os.remove(io.create_unique(f'{self.snapshot_prefix}_iter_0', '.tempfile'))
        except OSError as err:
            raise CaffeliteError(f'cannot write to snapshot prefix "{p.snapshot_prefix}" '
                                 f'({err.strerror}); make sure that folder {folder} is '
                                 f'writable') from None

    # -- callbacks and signals --------------------------------------------------------------------
    def add_callback(self, on_start=None, on_gradients_ready=None):
        """pycaffe's add_callback: functions called (without arguments) at the start of each
        iteration and once the gradients are ready, before the update."""
        if on_start is not None:
            self.on_start.append(on_start)
        if on_gradients_ready is not None:
            self.on_gradients_ready.append(on_gradients_ready)

    def attach_sync(self, sync):
        """Make this solver one worker of a data-parallel run (Caffe's P2PSync / NCCL
        registering itself as a Solver::Callback). ``sync`` provides:

        - ``on_start()`` / ``on_gradients_ready()``: added as callbacks (the gradient
          reduction; on_gradients_ready also agrees on the action, polling this solver's
          action function through ``poll_action_function`` where it decides);
        - ``requested_action()``: the action every worker takes, which ``get_requested_action``
          then returns instead of polling the action function;
        - ``restore(state_file)``: what ``restore`` does (e.g. rank 0 reads with
          ``load_state``, then broadcasts).

        The caller keeps calling ``set_action_function``, ``restore`` and ``solve`` on the
        solver, parallel or not. One sync per solver."""
        if self.sync is not None:
            raise CaffeliteError('this solver is already attached to a data-parallel run')
        self.sync = sync
        self.add_callback(on_start=sync.on_start, on_gradients_ready=sync.on_gradients_ready)

    def set_action_function(self, function):
        """``function()`` -> 'none' | 'stop' | 'snapshot', polled between iterations
        (Caffe's SetActionFunction; see signals.SignalHandler)."""
        self._action_function = function

    def poll_action_function(self):
        """What this process's action function asks for now ('none' without one)."""
        return self._action_function() if self._action_function else signals.NONE

    def get_requested_action(self):
        """The action to take now: the sync's agreed one when attached, else this process's."""
        if self.sync is not None:
            return self.sync.requested_action()
        return self.poll_action_function()

    # -- training ------------------------------------------------------------------------------
    def solve(self, resume_file=None):
        """Train to max_iter (resuming from ``resume_file`` if given), snapshot, and run the
        final display / test pass (Caffe's Solver::Solve)."""
        p = self.param
        logger.info('Solving %s', self.net.name)
        logger.info('Learning Rate Policy: %s', p.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            logger.info('Restoring previous solver status from %s', resume_file)
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self._auto_snapshot()
        if self.requested_early_exit:
            logger.info('Optimization stopped early.')
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_from_to(0, len(self.net.layers) - 1)
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            logger.info('Iteration %d, loss = %s', self.iter, fmt(self.smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        logger.info('Optimization Done.')

    def step(self, iters):
        """Run ``iters`` iterations (Caffe's Solver::Step)."""
        p = self.param
        start_iter, stop_iter = self.iter, self.iter + int(iters)
        self._losses = []
        self.smoothed_loss = 0.0
        self._timer, self._iterations_last = time.perf_counter(), self.iter
        while self.iter < stop_iter:
            self.reseed_for_iteration()
            self.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and \
                    (self.iter > 0 or p.test_initialization):
                self.test_all()
                if self.requested_early_exit:
                    break
            for hook in self.on_start:
                hook()
            display = bool(p.display) and self.iter % p.display == 0
            loss = self.forward_backward()
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            if display:
                self._display()
            for hook in self.on_gradients_ready:
                hook()
            self.apply_update()
            self.iter += 1
            request = self.get_requested_action()
            if (p.snapshot and self.iter % p.snapshot == 0) or request == signals.SNAPSHOT:
                self._auto_snapshot()
            if request == signals.STOP:
                self.requested_early_exit = True
                break

    def reseed_for_iteration(self):
        """Reseed the random stream from (random_seed + rank, iter); see the module doc."""
        if self.param.random_seed >= 0:
            seq = np.random.SeedSequence([self.param.random_seed + self.rank, self.iter])
            backend.set_random_seed(int(seq.generate_state(1)[0]))

    def clear_param_diffs(self):
        self.net.clear_param_diffs()

    def forward_backward(self):
        """iter_size forward/backward passes (parameter diffs accumulate); the mean loss."""
        total = 0.0
        for _ in range(self.param.iter_size):
            loss = self.net.forward_backward()
            if not math.isfinite(loss):
                self._report_non_finite(loss)
            total += loss
        return total / self.param.iter_size

    def _report_non_finite(self, loss):
        net = self.net
        for name, layer, tops, top_names in zip(net._layer_names, net.layers, net.top_vecs,
                                                net.top_names.values()):
            for top, top_name in zip(tops, top_names):
                xp = backend.get_array_module(top.xdata)
                if not bool(xp.isfinite(top.xdata).all()):
                    raise CaffeliteError(
                        f'Iteration {self.iter}: the loss is {loss}; the first non-finite '
                        f'output is top "{top_name}" of layer "{name}" (type {layer.type})')
        raise CaffeliteError(f'Iteration {self.iter}: the loss is {loss}')

    def _update_smoothed_loss(self, loss, start_iter, average_loss):
        """The running mean of the last ``average_loss`` losses (Caffe's UpdateSmoothedLoss)."""
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            size = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss += (loss - self._losses[idx]) / average_loss
            self._losses[idx] = loss

    def _display(self):
        now = time.perf_counter()
        lapse = now - self._timer
        per_s = (self.iter - self._iterations_last) / (lapse or 1)
        logger.info('Iteration %d (%s iter/s, %ss/%d iters), loss = %s', self.iter, fmt(per_s),
                    fmt(lapse), self.param.display, fmt(self.smoothed_loss))
        self._timer, self._iterations_last = now, self.iter
        index = 0
        for name in self.net.outputs:
            weight = self.net.blob_loss_weights.get(name, 0.0)
            for value in self.net.blobs[name].data.ravel():
                logger.info('    Train net output #%d: %s = %s%s', index, name, fmt(value),
                            _loss_note(weight, value))
                index += 1

    # -- the update ------------------------------------------------------------------------------
    def get_learning_rate(self):
        """The rate for this iteration (advances ``current_step`` for step/multistep)."""
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    def apply_update(self):
        """Caffe's SGDSolver::ApplyUpdate: lr, clipping, then per parameter normalize,
        regularize and the solver's update rule; finally W <- W - diff."""
        rate = self.get_learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            logger.info('Iteration %d, lr = %s', self.iter, fmt(rate))
        self.clip_gradients()
        for i in range(len(self.net.learnable_params)):
            self.normalize(i)
            self.regularize(i)
            self.compute_update_value(i, rate)
        self.update_params()

    def clip_gradients(self):
        """Scale every diff by clip_gradients / ||all diffs||_2 when that norm exceeds it."""
        threshold = self.param.clip_gradients
        if threshold < 0:
            return
        params = self.net.learnable_params
        sumsq = sum(float((p.xdiff.astype(np.float64) ** 2).sum()) for p in params)
        norm = math.sqrt(sumsq)
        if norm > threshold:
            scale = threshold / norm
            logger.info('Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale '
                        'factor %s', fmt(norm), fmt(threshold), fmt(scale))
            for p in params:
                diff = p.xdiff
                diff *= scale

    def normalize(self, i):
        """Undo the accumulation over iter_size passes: diff *= 1 / iter_size."""
        if self.param.iter_size != 1:
            diff = self.net.learnable_params[i].xdiff
            diff *= 1.0 / self.param.iter_size

    def regularize(self, i):
        """diff += local_decay * W (L2) or local_decay * sign(W) (L1), with
        local_decay = weight_decay * decay_mult."""
        local_decay = self.param.weight_decay * self.net.params_weight_decay[i]
        if not local_decay:
            return
        blob = self.net.learnable_params[i]
        diff, data = blob.xdiff, blob.xdata
        xp = backend.get_array_module(data)
        if self.param.regularization_type == 'L2':
            diff += local_decay * data
        else:
            diff += local_decay * xp.sign(data)

    def local_rate(self, i, rate):
        return rate * self.net.params_lr[i]

    def compute_update_value(self, i, rate):
        """Turn parameter i's diff into the step to subtract; the solver type's rule."""
        raise NotImplementedError

    def update_params(self):
        """W <- W - diff for every learnable parameter (Caffe's Net::Update)."""
        for blob in self.net.learnable_params:
            data = blob.xdata
            data -= blob.xdiff

    # -- testing ---------------------------------------------------------------------------------
    def test_all(self):
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            self.test(i)

    def test(self, test_net_id=0):
        """Run test_iter[test_net_id] forward passes of that test net (sharing the train net's
        weights) and log the mean of each output."""
        p = self.param
        logger.info('Iteration %d, Testing net (#%d)', self.iter, test_net_id)
        test_net = self.test_nets[test_net_id]
        test_net.share_trained_layers_with(self.net)
        iterations = p.test_iter[test_net_id]
        scores, loss = None, 0.0
        for _ in range(iterations):
            request = self.get_requested_action()
            while request != signals.NONE:
                if request == signals.SNAPSHOT:
                    self._auto_snapshot()
                elif request == signals.STOP:
                    self.requested_early_exit = True
                request = self.get_requested_action()
            if self.requested_early_exit:
                break
            iter_loss = test_net.forward_from_to(0, len(test_net.layers) - 1)
            if p.test_compute_loss:
                loss += iter_loss
            values = _output_values(test_net)
            scores = values if scores is None else scores + values
        if self.requested_early_exit:
            logger.info('Test interrupted.')
            return None
        if p.test_compute_loss:
            logger.info('Test loss: %s', fmt(loss / iterations))
        means = {}
        if scores is not None:
            index = 0
            for name in test_net.outputs:
                weight = test_net.blob_loss_weights.get(name, 0.0)
                for _ in range(test_net.blobs[name].count):
                    mean = scores[index] / iterations
                    logger.info('    Test net output #%d: %s = %s%s', index, name, fmt(mean),
                                _loss_note(weight, mean))
                    means.setdefault(name, []).append(mean)
                    index += 1
        return means

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot_filename(self, extension):
        if not self.snapshot_prefix:
            raise CaffeliteError('cannot snapshot: the solver has no snapshot_prefix')
        return f'{self.snapshot_prefix}_iter_{self.iter}{extension}'

    def _auto_snapshot(self):
        """A snapshot the loop decided on (periodic, after training, on a signal); without a
        snapshot_prefix (a SolverParameter built in code) it is skipped with a warning."""
        if not self.snapshot_prefix:
            logger.warning('no snapshot_prefix: not writing the snapshot of iteration %d',
                           self.iter)
            return None
        return self.snapshot()

    def snapshot(self):
        """Write ``<prefix>_iter_N.caffemodel`` and ``.solverstate`` (or the .h5 pair); each
        goes to a temporary file renamed into place. Returns (weights path, state path)."""
        hdf5 = self.param.snapshot_format == pb.SolverParameter.HDF5
        model = self.snapshot_filename('.caffemodel.h5' if hdf5 else '.caffemodel')
        path = self.snapshot_filename('.solverstate.h5' if hdf5 else '.solverstate')
        folder = os.path.dirname(model)
        if folder and not os.path.isdir(folder):
            logger.info('Creating the snapshot folder %s', folder)
        writing = model
        try:
            if hdf5:
                logger.info('Snapshotting to HDF5 file %s', model)
                io.save_weights_hdf5(self.net, model, self.param.snapshot_diff)
            else:
                logger.info('Snapshotting to binary proto file %s', model)
                io.write_proto_atomic(model, io.net_proto_chunks(self.net,
                                                                   self.param.snapshot_diff))
            state = SolverStateData(self.iter, model, self.current_step,
                                    [backend.to_host(h.xdata) for h in self.history])
            writing = path
            logger.info('Snapshotting solver state to %s file %s',
                        'HDF5' if hdf5 else 'binary proto', path)
            (write_state_hdf5 if hdf5 else write_state_binary)(path, state)
        except (OSError, RuntimeError) as err:     # h5py reports a full disk as RuntimeError
            raise CaffeliteError(f'cannot write the snapshot {writing}: {err}') from None
        return model, path

    def restore(self, state_file):
        """Continue from a .solverstate (or .solverstate.h5): iteration, weights, history
        (through the attached sync, if any: see ``attach_sync``)."""
        if self.sync is not None:
            self.sync.restore(os.fspath(state_file))
        else:
            self.load_state(state_file)

    def load_state(self, state_file):
        """Read a .solverstate (or .solverstate.h5) into this solver: iteration, weights,
        history (Caffe's Restore on one worker)."""
        state_file = os.fspath(state_file)
        state = read_state(state_file)
        self._check_history(state, state_file)
        if state.learned_net:
            weights = find_learned_net(state.learned_net, state_file)
            self._check_weights_match(weights, state_file)
            self.net.copy_from(weights)
        for blob, array in zip(self.history, state.history):
            blob.xdata = backend.to_device(array.astype(blob.dtype, copy=False))
        self.iter = state.iter
        self.current_step = state.current_step
        logger.info('%s: restored iteration %d and %d history blobs', type(self).__name__,
                    self.iter, len(self.history))

    def _check_history(self, state, state_file):
        if len(state.history) != len(self.history):
            raise CaffeliteError(
                f'{state_file} holds {len(state.history)} history blobs; this {self.type} '
                f'solver on net "{self.net.name}" needs {len(self.history)}: the snapshot is '
                f'from a different net or solver type')
        for i, (array, blob) in enumerate(zip(state.history, self.history)):
            if tuple(array.shape) != blob.shape:
                raise CaffeliteError(
                    f'{state_file}: history blob {i} has shape {tuple(array.shape)}, the net\'s '
                    f'parameter {i} has {blob.shape}: the snapshot is from a different net')

    def _check_weights_match(self, weights, state_file):
        missing = [name for name in self.net.params if name not in weight_layer_names(weights)]
        if missing:
            raise CaffeliteError(
                f'{state_file}: its weights {weights} have no parameters for layer(s) '
                f'{", ".join(missing)} of net "{self.net.name}": the snapshot is from a '
                f'different net')


def _output_values(net):
    """Every output blob's values, flattened and concatenated (float64)."""
    parts = [np.asarray(net.blobs[name].data, np.float64).ravel() for name in net.outputs]
    return np.concatenate(parts) if parts else np.zeros(0)


def _loss_note(weight, value):
    """Caffe's ' (* w = w*v loss)' suffix for weighted loss outputs."""
    return f' (* {fmt(weight)} = {fmt(weight * value)} loss)' if weight else ''
