"""LRCN's published prototxts (../shared/reference/lrcn): every net parses and filters for the
TRAIN and TEST states its solvers use; with their data layers swapped for Input layers of
small made-up shapes, the nets build and run forward and backward."""
import os
from pathlib import Path

import numpy as np
import pytest

import caffelite as caffe
from caffelite.layers import LAYER_REGISTRY
from caffelite.net_rules import filter_net
from caffelite.prototxt import read_prototxt
from caffelite.proto import caffelite_pb2 as pb

REFERENCE = Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'lrcn'
pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(),
                                reason=f'LRCN reference prototxts not found at {REFERENCE}')
SOLVERS = sorted(REFERENCE.glob('*/*solver*.prototxt')) if REFERENCE.is_dir() else []
DATA_TYPES = {'HDF5Data', 'ImageData', 'Python', 'Data'}


def solver_states(solver_path):
    """[(net path, NetState)] for the train state and every test state of a solver."""
    solver = read_prototxt(solver_path, pb.SolverParameter())
    net_path = solver_path.parent / os.path.basename(solver.net or solver.train_net)
    train = pb.NetState(phase=pb.TRAIN)
    train.MergeFrom(solver.train_state)
    states = [train]
    for test_state in solver.test_state:
        state = pb.NetState(phase=pb.TEST)
        state.MergeFrom(test_state)
        states.append(state)
    return [(net_path, s) for s in states]


@pytest.mark.parametrize('solver_path', SOLVERS, ids=lambda p: p.name)
def test_solver_nets_filter_to_known_layers(solver_path):
    for net_path, state in solver_states(solver_path):
        net = filter_net(read_prototxt(net_path, pb.NetParameter()), state)
        types = [l.type for l in net.layer]
        assert types, f'{net_path} has no layer for {state}'
        assert set(types) <= set(LAYER_REGISTRY), set(types) - set(LAYER_REGISTRY)
        assert sum(t in DATA_TYPES for t in types) >= 1


def with_made_up_inputs(net_param, shapes):
    """Replace the data layers of ``net_param`` by one Input layer with ``shapes``."""
    result = pb.NetParameter()
    result.CopyFrom(net_param)
    del result.layer[:]
    tops = [t for l in net_param.layer if l.type in DATA_TYPES for t in l.top]
    inputs = result.layer.add(name='made_up_input', type='Input')
    for top in tops:
        inputs.top.append(top)
        inputs.input_param.shape.add().dim.extend(shapes[top])
    result.layer.extend(l for l in net_param.layer if l.type not in DATA_TYPES)
    return result


def fill_inputs(net, vocab=8000):
    rng = np.random.default_rng(0)
    for name in net.inputs:
        blob = net.blobs[name]
        if name == 'data':
            blob.data[...] = rng.standard_normal(blob.shape)
        elif name in ('cont_sentence', 'clip_markers'):
            blob.data[...] = 1
            blob.data[0] = 0
        else:
            blob.data[...] = rng.integers(0, min(vocab, 101), blob.shape)


@pytest.mark.parametrize('net_name, stages', [
    ('lrcn.prototxt', ['factored', '2-layer']),
    ('lrcn.prototxt', ['unfactored', '1-layer']),
    ('lstm_language_model.prototxt', []),
])
def test_captioning_nets_run_forward_backward(net_name, stages):
    T, N = 3, 2
    shapes = {'data': (N, 3, 227, 227), 'label': (N,), 'cont_sentence': (T, N),
              'input_sentence': (T, N), 'target_sentence': (T, N)}
    param = filter_net(read_prototxt(REFERENCE / 'coco_caption' / net_name, pb.NetParameter()),
                       pb.NetState(phase=pb.TRAIN, stage=stages))
    net = caffe.Net(with_made_up_inputs(param, shapes), caffe.TRAIN, stages=stages)
    fill_inputs(net)
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    lstms = [l for l in net.layers if l.type == 'LSTM']
    assert lstms and all(np.abs(l.blobs[0].diff).sum() > 0 for l in lstms)


def test_activity_lstm_net_runs_forward_backward_at_test():
    T, N = 16, 3                      # the TEST reshapes of the prototxt fix T=16, N=3
    shapes = {'data': (T * N, 3, 227, 227), 'label': (T * N,), 'clip_markers': (T * N,)}
    path = REFERENCE / 'activity_recognition' / 'train_test_lstm_RGB.prototxt'
    state = pb.NetState(phase=pb.TEST, stage=['test-on-test'])
    param = filter_net(read_prototxt(path, pb.NetParameter()), state)
    param.force_backward = True
    net = caffe.Net(with_made_up_inputs(param, shapes), state=state)
    fill_inputs(net, vocab=101)
    outputs = net.forward()
    assert all(np.isfinite(v).all() for v in outputs.values())
    net.backward()
    lstm = [l for l in net.layers if l.type == 'LSTM'][0]
    assert lstm.blobs[0].shape[0] == 4 * lstm.layer_param.recurrent_param.num_output
