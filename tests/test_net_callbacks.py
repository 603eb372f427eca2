"""Net's callbacks (Caffe's net.hpp: before/after forward and backward, called with the layer
index) and the solver's data-parallel sync slot (Solver.attach_sync)."""
import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
from caffelite.errors import CaffeliteError
from caffelite.proto import caffelite_pb2 as pb
from caffelite.solvers import get_solver, signals

NET = '''
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 1 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "loss" }
'''


def make_net():
    return caffelite.Net(text_format.Parse(NET, pb.NetParameter()), pb.TRAIN)


@pytest.mark.parametrize('prefix', ['add_', ''])      # caffelite's names, pycaffe's
def test_callbacks_run_around_every_layer_in_order_with_the_layer_index(prefix):
    net = make_net()
    calls = []
    for hook in ('before_forward', 'after_forward', 'before_backward', 'after_backward'):
        getattr(net, prefix + hook)(lambda i, hook=hook: calls.append((hook, i)))
    net.forward_backward()
    forward = [c for i in range(3) for c in (('before_forward', i), ('after_forward', i))]
    backward = [c for i in (2, 1, 0) for c in (('before_backward', i), ('after_backward', i))]
    assert calls == forward + backward     # the Input layer (no backward) is called too


def test_after_backward_sees_the_layers_gradient_already_computed():
    net = make_net()
    net.blobs['x'].data[...] = 1.0
    net.blobs['y'].data[...] = 5.0
    seen = {}
    ip_weight = net.params['ip'][0]
    net.add_before_backward(lambda i: seen.setdefault(('before', i),
                                                      float(np.abs(ip_weight.diff).sum())))
    net.add_after_backward(lambda i: seen.setdefault(('after', i),
                                                     float(np.abs(ip_weight.diff).sum())))
    net.clear_param_diffs()
    net.forward_backward()
    assert seen[('before', 1)] == 0.0 and seen[('after', 1)] > 0.0


class FakeSync:
    """A sync that records what the solver asks of it."""

    def __init__(self, solver, action=signals.NONE):
        self.solver, self.action, self.events = solver, action, []

    def on_start(self):
        self.events.append('start')

    def on_gradients_ready(self):
        self.events.append(('gradients', self.solver.poll_action_function()))

    def requested_action(self):
        return self.action

    def restore(self, state_file):
        self.events.append(('restore', state_file))


def solver_param(tmp_path, max_iter=2):
    (tmp_path / 'net.prototxt').write_text(NET)
    return text_format.Parse(f'net: "{tmp_path / "net.prototxt"}" base_lr: 0.1 '
                             f'lr_policy: "fixed" max_iter: {max_iter} random_seed: 1',
                             pb.SolverParameter())


def test_an_attached_sync_joins_each_iteration_decides_the_action_and_restores(tmp_path):
    solver = get_solver(solver_param(tmp_path))
    sync = FakeSync(solver, action=signals.STOP)
    solver.attach_sync(sync)
    solver.set_action_function(lambda: signals.SNAPSHOT)     # polled by the sync only
    solver.restore(tmp_path / 'state.solverstate')
    solver.solve()
    assert sync.events == [('restore', str(tmp_path / 'state.solverstate')), 'start',
                           ('gradients', signals.SNAPSHOT)]
    assert solver.iter == 1 and solver.requested_early_exit    # the sync's STOP was obeyed
    with pytest.raises(CaffeliteError, match='already attached'):
        solver.attach_sync(FakeSync(solver))


def test_without_a_sync_the_solver_polls_its_own_action_function(tmp_path):
    solver = get_solver(solver_param(tmp_path, max_iter=5))
    solver.set_action_function(lambda: signals.STOP)
    solver.solve()
    assert solver.sync is None and solver.iter == 1 and solver.requested_early_exit
