"""LSTM, RNN and LSTMUnit: gradient checks, a per-step reference, PyTorch's nn.LSTM, the state
carried between forward passes, Caffe's parameter layout, and the LRCN prototxts' LSTM layers."""
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffelite.errors import LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import blob, forward_once, make, tops

pytestmark = pytest.mark.usefixtures('array_backend')

LRCN = Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'lrcn'


def recurrent(kind, hidden, expose=False, dtype=np.float64, weight='uniform min: -0.6 max: 0.6',
              bias='uniform min: -0.5 max: 0.5'):
    return make(f'name: "{kind.lower()}" type: "{kind}" recurrent_param {{ num_output: {hidden} '
                f'expose_hidden: {str(expose).lower()} weight_filler {{ type: {weight.split()[0]!r}'
                f' {" ".join(weight.split()[1:])} }} bias_filler {{ type: {bias.split()[0]!r} '
                f'{" ".join(bias.split()[1:])} }} }}'.replace("'", '"'), dtype=dtype)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


# -- per-step references (straight from the formulas) ------------------------------------------

def ref_lstm(x, cont, params, static=None, h0=None, c0=None):
    """Caffe's LSTM, one stream and one step at a time. Returns h (T x N x H), h_T, c_T."""
    steps, streams = cont.shape
    w_xc, b_c = params[0], params[1]
    w_s = params[2] if static is not None else None
    w_hc = params[-1]
    hidden = w_hc.shape[1]
    out = np.zeros((steps, streams, hidden))
    h_last, c_last = np.zeros((streams, hidden)), np.zeros((streams, hidden))
    for n in range(streams):
        h = np.zeros(hidden) if h0 is None else h0[0, n].copy()
        c = np.zeros(hidden) if c0 is None else c0[0, n].copy()
        for t in range(steps):
            hp, cp = cont[t, n] * h, cont[t, n] * c
            z = w_xc @ x[t, n].ravel() + b_c + w_hc @ hp
            if static is not None:
                z = z + w_s @ static[n].ravel()
            i = sigmoid(z[:hidden])
            f = sigmoid(z[hidden:2 * hidden])
            o = sigmoid(z[2 * hidden:3 * hidden])
            g = np.tanh(z[3 * hidden:])
            c = f * cp + i * g
            h = o * np.tanh(c)
            out[t, n] = h
        h_last[n], c_last[n] = h, c
    return out, h_last, c_last


def ref_rnn(x, cont, params, static=None, h0=None):
    """Caffe's RNN: h_t = tanh(W_xh x_t + b_h + W_xh_static x_static + W_hh cont_t h_{t-1}),
    o_t = tanh(W_ho h_t + b_o). Returns o (T x N x H) and h_T."""
    steps, streams = cont.shape
    w_xh, b_h = params[0], params[1]
    w_s = params[2] if static is not None else None
    w_hh, w_ho, b_o = params[-3:]
    hidden = w_hh.shape[0]
    out = np.zeros((steps, streams, hidden))
    h_last = np.zeros((streams, hidden))
    for n in range(streams):
        h = np.zeros(hidden) if h0 is None else h0[0, n].copy()
        for t in range(steps):
            a = w_xh @ x[t, n].ravel() + b_h + w_hh @ (cont[t, n] * h)
            if static is not None:
                a = a + w_s @ static[n].ravel()
            h = np.tanh(a)
            out[t, n] = np.tanh(w_ho @ h + b_o)
        h_last[n] = h
    return out, h_last


# -- fixtures of inputs ------------------------------------------------------------------------

def restarts(steps, streams, rng):
    """cont markers: 0 at t = 0, a few sequences starting mid-batch, 1 elsewhere."""
    cont = np.ones((steps, streams))
    cont[0] = 0
    if steps > 3:
        cont[3, 0] = 0          # stream 0: a new sequence starts at t = 3 (cont[:, 0] = 0,1,1,0,1)
    if steps > 2 and streams > 1:
        cont[2, -1] = 0
    return cont


# (T, N, x trailing shape, static trailing shape or None, expose_hidden, cont kind)
CASES = [
    pytest.param(5, 3, (4,), None, False, 'restarts', id='restarts'),
    pytest.param(5, 3, (2, 2), (3,), True, 'restarts', id='static+expose'),
    pytest.param(4, 2, (3,), (2, 2), False, 'all-restart-mid', id='static+all-restart-step'),
    pytest.param(3, 2, (3,), None, True, 'ones', id='expose-cont-ones'),
    pytest.param(4, 2, (3,), None, True, 'fractional', id='fractional-cont'),
    pytest.param(1, 1, (3,), None, True, 'ones', id='T1-N1-expose'),
    pytest.param(1, 2, (2,), (2,), False, 'zeros', id='T1-static'),
]


def make_inputs(kind, steps, streams, xshape, sshape, expose, cont_kind, hidden, rng):
    x = rng.standard_normal((steps, streams) + xshape)
    if cont_kind == 'restarts':
        cont = restarts(steps, streams, rng)
    elif cont_kind == 'all-restart-mid':
        cont = np.ones((steps, streams))
        cont[0] = 0
        cont[2] = 0             # every stream restarts at t = 2: that step has no recurrent term
    elif cont_kind == 'fractional':
        cont = rng.uniform(0, 1, (steps, streams))
    elif cont_kind == 'zeros':
        cont = np.zeros((steps, streams))
    else:
        cont = np.ones((steps, streams))
    bottoms = [x, cont]
    if sshape is not None:
        bottoms.append(rng.standard_normal((streams,) + sshape))
    if expose:
        for _ in range(2 if kind == 'LSTM' else 1):
            bottoms.append(rng.standard_normal((1, streams, hidden)))
    return bottoms


def n_tops(kind, expose):
    return 1 + ((2 if kind == 'LSTM' else 1) if expose else 0)


# -- gradient checks -------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['LSTM', 'RNN'])
@pytest.mark.parametrize('steps,streams,xshape,sshape,expose,cont_kind', CASES)
def test_gradient(kind, steps, streams, xshape, sshape, expose, cont_kind):
    rng = np.random.default_rng(7)
    hidden = 3
    arrays = make_inputs(kind, steps, streams, xshape, sshape, expose, cont_kind, hidden, rng)
    layer = recurrent(kind, hidden, expose)
    bottom = [blob(a) for a in arrays]
    top = tops(n_tops(kind, expose))
    check_bottom = [i for i in range(len(bottom)) if i != 1]      # never the cont markers
    check_layer_gradient(layer, bottom, top, check_bottom=check_bottom)


@pytest.mark.parametrize('kind', ['LSTM', 'RNN'])
def test_gemm_layouts_agree_and_check(kind):
    """The per-step GEMM uses W_h^T as a view (few rows) or a transposed copy (many rows):
    both give the same forward and backward, and the copy path passes the gradient check."""
    rng = np.random.default_rng(8)
    arrays = make_inputs(kind, 5, 3, (4,), (2,), True, 'restarts', 3, rng)
    results, weights = [], None
    for min_rows in (10 ** 9, 0):
        layer = recurrent(kind, 3, expose=True)
        layer.TRANSPOSE_MIN_ROWS = min_rows
        bottom = [blob(a) for a in arrays]
        top = tops(n_tops(kind, True))
        layer.set_up(bottom, top)
        weights = weights or [p.data.copy() for p in layer.blobs]
        for p, w in zip(layer.blobs, weights):
            p.data[...] = w
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        for t in top:
            t.diff[...] = np.linspace(-1, 1, t.count).reshape(t.shape)
        for p in layer.blobs:
            p.diff[...] = 0
        layer.backward(top, [True, False, True] + [True] * (len(bottom) - 3), bottom)
        results.append([t.data.copy() for t in top] + [b.diff.copy() for b in bottom[2:]]
                       + [bottom[0].diff.copy()] + [p.diff.copy() for p in layer.blobs])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    check_layer_gradient(layer, bottom, top, check_bottom=[0, 2, 3] + [4] * (kind == 'LSTM'))


def test_lstm_unit_gradient():
    rng = np.random.default_rng(3)
    streams, hidden = 4, 3
    layer = make('type: "LSTMUnit"')
    bottom = [blob(rng.standard_normal((1, streams, hidden))),
              blob(rng.standard_normal((1, streams, 4 * hidden)) * 2),
              blob(np.array([[0, 1, 1, 0.5]]))]
    check_layer_gradient(layer, bottom, tops(2),
                         check_bottom=[0, 1])


# -- forward against the per-step reference ----------------------------------------------------

@pytest.mark.parametrize('kind', ['LSTM', 'RNN'])
@pytest.mark.parametrize('steps,streams,xshape,sshape,expose,cont_kind', CASES)
def test_forward_matches_reference(kind, steps, streams, xshape, sshape, expose, cont_kind):
    rng = np.random.default_rng(11)
    hidden = 4
    arrays = make_inputs(kind, steps, streams, xshape, sshape, expose, cont_kind, hidden, rng)
    layer = recurrent(kind, hidden, expose)
    bottom = [blob(a) for a in arrays]
    top = tops(n_tops(kind, expose))
    forward_once(layer, bottom, top)
    params = [b.data for b in layer.blobs]
    static = arrays[2] if sshape is not None else None
    first_state = 2 + (sshape is not None)
    if kind == 'LSTM':
        h0, c0 = (arrays[first_state], arrays[first_state + 1]) if expose else (None, None)
        want, h_last, c_last = ref_lstm(arrays[0], arrays[1], params, static, h0, c0)
        final = [h_last, c_last]
    else:
        h0 = arrays[first_state] if expose else None
        want, h_last = ref_rnn(arrays[0], arrays[1], params, static, h0)
        final = [h_last]
    assert top[0].shape == (steps, streams, hidden)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-12)
    if expose:
        for t, f in zip(top[1:], final):
            assert t.shape == (1, streams, hidden)
            np.testing.assert_allclose(t.data[0], f, rtol=1e-12, atol=1e-12)


def test_lstm_unit_matches_formulas():
    rng = np.random.default_rng(5)
    streams, hidden = 3, 5
    c_prev = rng.standard_normal((1, streams, hidden))
    x = rng.standard_normal((1, streams, 4 * hidden))
    cont = np.array([[1.0, 0.0, 1.0]])
    layer = make('type: "LSTMUnit"')
    bottom = [blob(c_prev), blob(x), blob(cont)]
    top = tops(2)
    forward_once(layer, bottom, top)
    i, f, o = (sigmoid(x[0, :, k * hidden:(k + 1) * hidden]) for k in range(3))
    g = np.tanh(x[0, :, 3 * hidden:])
    c = cont[0][:, None] * f * c_prev[0] + i * g
    np.testing.assert_allclose(top[0].data[0], c, rtol=1e-12)
    np.testing.assert_allclose(top[1].data[0], o * np.tanh(c), rtol=1e-12)
    assert top[0].shape == top[1].shape == (1, streams, hidden)


# -- PyTorch's nn.LSTM ---------------------------------------------------------------------------

def caffe_gate_order(a):
    """torch's gate blocks i, f, g, o -> Caffe's i, f, o, g (the swap is its own inverse)."""
    i, f, g, o = np.split(np.asarray(a), 4, axis=0)
    return np.concatenate([i, f, o, g], axis=0)


@pytest.mark.slow
def test_lstm_matches_torch():
    torch = pytest.importorskip('torch')
    steps, streams, dim, hidden = 6, 3, 5, 4
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(dim, hidden).double()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((steps, streams, dim))
    w_out = rng.standard_normal((steps, streams, hidden))

    xt = torch.tensor(x, requires_grad=True)
    yt, (h_t, c_t) = lstm(xt)
    (yt * torch.tensor(w_out)).sum().backward()

    layer = recurrent('LSTM', hidden)
    cont = np.ones((steps, streams))
    cont[0] = 0                                       # torch starts every stream from zero
    bottom, top = [blob(x), blob(cont)], tops()
    layer.set_up(bottom, top)
    w_ih, w_hh = lstm.weight_ih_l0.detach().numpy(), lstm.weight_hh_l0.detach().numpy()
    b = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    layer.blobs[0].data[...] = caffe_gate_order(w_ih)
    layer.blobs[1].data[...] = caffe_gate_order(b)
    layer.blobs[2].data[...] = caffe_gate_order(w_hh)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, yt.detach().numpy(), rtol=1e-5, atol=1e-5)

    top[0].diff[...] = w_out
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.blobs[0].diff, caffe_gate_order(lstm.weight_ih_l0.grad),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.blobs[1].diff, caffe_gate_order(lstm.bias_ih_l0.grad),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.blobs[1].diff, caffe_gate_order(lstm.bias_hh_l0.grad),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.blobs[2].diff, caffe_gate_order(lstm.weight_hh_l0.grad),
                               rtol=1e-5, atol=1e-5)


# -- state carried between forward passes (Caffe 1.0 without expose_hidden) ---------------------

@pytest.mark.parametrize('kind', ['LSTM', 'RNN'])
def test_state_carries_over_between_forward_passes(kind):
    """T = 6 at once equals three passes of T = 2 whose cont continue the sequences; a pass that
    starts every stream (cont[0] = 0) ignores the carried state; a new N starts from zero."""
    rng = np.random.default_rng(4)
    steps, streams, dim, hidden = 6, 3, 4, 5
    x = rng.standard_normal((steps, streams, dim))
    cont = restarts(steps, streams, rng)
    whole = recurrent(kind, hidden)
    bottom, top = [blob(x), blob(cont)], tops()
    forward_once(whole, bottom, top)
    want = top[0].data.copy()

    chunked = recurrent(kind, hidden)
    pieces = []
    for t in range(0, steps, 2):
        b, tp = [blob(x[t:t + 2]), blob(cont[t:t + 2])], tops()
        if t == 0:
            chunked.set_up(b, tp)
            for p, q in zip(chunked.blobs, whole.blobs):
                p.data[...] = q.data
        chunked.reshape(b, tp)
        chunked.forward(b, tp)
        pieces.append(tp[0].data.copy())
    np.testing.assert_allclose(np.concatenate(pieces), want, rtol=1e-12, atol=1e-12)

    # cont[0] = 0 for every stream: the carried state has no effect.
    again = [blob(x[:2]), blob(cont[:2])]
    out = tops()
    chunked.reshape(again, out)
    chunked.forward(again, out)
    np.testing.assert_allclose(out[0].data, want[:2], rtol=1e-12, atol=1e-12)

    # A different batch size: the state restarts from zero even where cont says "continue".
    one = [blob(x[:2, :1]), blob(np.ones((2, 1)))]
    out = tops()
    chunked.reshape(one, out)
    chunked.forward(one, out)
    fresh = recurrent(kind, hidden)
    fout = tops()
    fresh.set_up(one, fout)
    for p, q in zip(fresh.blobs, whole.blobs):
        p.data[...] = q.data
    fresh.reshape(one, fout)
    fresh.forward(one, fout)
    np.testing.assert_allclose(out[0].data, fout[0].data, rtol=1e-12, atol=1e-12)

    chunked.reset_state()
    chunked.reshape(one, out)
    chunked.forward(one, out)
    np.testing.assert_allclose(out[0].data, fout[0].data, rtol=1e-12, atol=1e-12)


# -- parameters: Caffe's order, shapes and fillers -----------------------------------------------

@pytest.mark.parametrize('kind,static,want', [
    ('LSTM', False, [(20, 6), (20,), (20, 5)]),
    ('LSTM', True, [(20, 6), (20,), (20, 3), (20, 5)]),
    ('RNN', False, [(5, 6), (5,), (5, 5), (5, 5), (5,)]),
    ('RNN', True, [(5, 6), (5,), (5, 3), (5, 5), (5, 5), (5,)]),
])
def test_param_shapes_order_and_fillers(kind, static, want):
    layer = recurrent(kind, 5, weight='constant value: 0.25', bias='constant value: -0.5')
    bottom = [blob(np.zeros((2, 4, 3, 2))), blob(np.zeros((2, 4)))]    # D = 3 * 2
    if static:
        bottom.append(blob(np.zeros((4, 3))))
    layer.set_up(bottom, tops())
    assert [b.shape for b in layer.blobs] == want
    for b in layer.blobs:
        expected = -0.5 if len(b.shape) == 1 else 0.25               # biases are the 1-D blobs
        assert np.all(b.data == expected), b.shape


def test_uniform_filler_reaches_every_weight():
    layer = recurrent('LSTM', 4, weight='uniform min: -0.08 max: 0.08')
    layer.set_up([blob(np.zeros((2, 3, 5))), blob(np.zeros((2, 3))), blob(np.zeros((3, 2)))],
                tops())
    for j in (0, 2, 3):                                               # W_xc, W_xc_static, W_hc
        w = layer.blobs[j].data
        assert np.all(np.abs(w) <= 0.08) and np.std(w) > 0.01


# -- dtype, propagate_down, accumulation, force_backward ----------------------------------------

def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    layer = recurrent('LSTM', 4, dtype=np.float32)
    bottom = [blob(rng.standard_normal((3, 2, 5)), np.float32),
              blob(restarts(3, 2, rng), np.float32)]
    top = tops(1, np.float32)
    forward_once(layer, bottom, top)
    assert top[0].xdata.dtype == np.float32
    top[0].diff[...] = 1
    layer.backward(top, [True, False], bottom)
    assert bottom[0].xdiff.dtype == np.float32
    assert all(p.xdiff.dtype == np.float32 for p in layer.blobs)


def test_propagate_down_and_param_accumulation():
    rng = np.random.default_rng(1)
    layer = recurrent('LSTM', 3, expose=True)
    arrays = make_inputs('LSTM', 4, 2, (3,), (2,), True, 'restarts', 3, rng)
    bottom = [blob(a) for a in arrays]
    top = tops(3)
    forward_once(layer, bottom, top)
    for t in top:
        t.diff[...] = rng.standard_normal(t.shape)
    for b in bottom:
        b.diff[...] = 7.0
    for p in layer.blobs:
        p.diff[...] = 0
    layer.param_propagate_down = [True, True, True, False]     # no gradient for W_hc
    layer.backward(top, [False, False, True, False, True], bottom)
    for i in (0, 1, 3):
        assert np.all(bottom[i].diff == 7.0), i                # untouched where not asked
    assert not np.all(bottom[2].diff == 7.0) and not np.all(bottom[4].diff == 7.0)
    assert np.all(layer.blobs[3].diff == 0)
    once = [p.diff.copy() for p in layer.blobs]
    layer.backward(top, [False, False, False, False, False], bottom)
    for p, d in zip(layer.blobs[:3], once[:3]):
        np.testing.assert_allclose(p.diff, 2 * d)              # param diffs accumulate
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)
    assert not make('type: "LSTMUnit"').allow_force_backward(2)


# -- bad input -------------------------------------------------------------------------------------

def setup_error(layer, shapes, n_top=1):
    with pytest.raises(LayerError) as err:
        bottom = [blob(np.zeros(s)) for s in shapes]
        top = tops(n_top)
        layer.set_up(bottom, top)
    return str(err.value)


def test_errors():
    assert 'num_output' in setup_error(make('type: "LSTM" recurrent_param { }'),
                                       [(2, 3, 4), (2, 3)])
    assert 'cont' in setup_error(recurrent('LSTM', 3), [(2, 3, 4), (2, 4)])
    assert 'axes' in setup_error(recurrent('RNN', 3), [(2,), (2, 1)])
    assert 'x_static' in setup_error(recurrent('LSTM', 3), [(2, 3, 4), (2, 3), (2, 5)])
    assert 'bottoms' in setup_error(recurrent('LSTM', 3, expose=True),
                                    [(2, 3, 4), (2, 3), (1, 3, 3)], n_top=3)
    assert 'top' in setup_error(recurrent('LSTM', 3, expose=True),
                                [(2, 3, 4), (2, 3), (1, 3, 3), (1, 3, 3)], n_top=1)
    assert 'initial state' in setup_error(recurrent('RNN', 3, expose=True),
                                          [(2, 3, 4), (2, 3), (1, 3, 4)], n_top=2)
    layer = recurrent('LSTM', 3)
    bottom, top = [blob(np.zeros((2, 3, 4))), blob(np.zeros((2, 3)))], tops()
    layer.set_up(bottom, top)
    with pytest.raises(LayerError, match='input size'):
        layer.reshape([blob(np.zeros((2, 3, 5))), blob(np.zeros((2, 3)))], top)

    unit = make('type: "LSTMUnit"')
    assert 'x (bottom[1])' in setup_error(unit, [(1, 2, 3), (1, 2, 11), (1, 2)], n_top=2)
    assert 'cont' in setup_error(unit, [(1, 2, 3), (1, 2, 12), (2, 2)], n_top=2)
    bottom = [blob(np.zeros((1, 2, 3))), blob(np.zeros((1, 2, 12))), blob(np.ones((1, 2)))]
    top = tops(2)
    unit.reshape(bottom, top)
    unit.forward(bottom, top)
    with pytest.raises(LayerError, match='sequence indicators'):
        unit.backward(top, [True, True, True], bottom)


# -- the LRCN prototxts' recurrent layers ---------------------------------------------------------

def lrcn_recurrent_layers():
    """The recurrent layers of every LRCN prototxt, one per distinct configuration (type,
    recurrent_param, number of bottoms and tops): the captioning nets repeat the same blocks."""
    if not LRCN.is_dir():
        return []
    found = {}
    for path in sorted(LRCN.rglob('*.prototxt')):
        text = path.read_text()
        if '"LSTM"' not in text and '"RNN"' not in text:
            continue
        net = text_format.Parse(text, pb.NetParameter())
        for layer in net.layer:
            if layer.type in ('LSTM', 'RNN'):
                key = (layer.type, layer.recurrent_param.SerializeToString(deterministic=True),
                       len(layer.bottom), len(layer.top))
                stages = '+'.join(s for rule in layer.include for s in rule.stage)
                found.setdefault(key, pytest.param(
                    layer, id=f'{path.stem}:{layer.name}{":" + stages if stages else ""}'))
    return list(found.values())


LRCN_LAYERS = lrcn_recurrent_layers()


@pytest.mark.skipif(not LRCN_LAYERS, reason=f'LRCN reference prototxts not found under {LRCN}')
@pytest.mark.parametrize('layer_param', LRCN_LAYERS)
def test_lrcn_layer_builds_and_runs(layer_param):
    """Build the prototxt's LSTM as written (its num_output, fillers, static input if it has a
    third bottom) on T = 3, N = 2 and small feature sizes; check Caffe's parameter layout, the
    fillers, forward against the reference, and backward along a random direction."""
    steps, streams, dim, static_dim = 3, 2, 6, 5
    hidden = layer_param.recurrent_param.num_output
    static = len(layer_param.bottom) == 3
    rng = np.random.default_rng(0)
    layer = make(layer_param, pb.TRAIN)
    arrays = [rng.standard_normal((steps, streams, dim)), restarts(steps, streams, rng)]
    if static:
        arrays.append(rng.standard_normal((streams, static_dim)))
    bottom, top = [blob(a) for a in arrays], tops()
    layer.set_up(bottom, top)
    want = [(4 * hidden, dim), (4 * hidden,)] + ([(4 * hidden, static_dim)] if static else []) \
        + [(4 * hidden, hidden)]
    assert [b.shape for b in layer.blobs] == want
    wf = layer_param.recurrent_param.weight_filler
    for j, b in enumerate(layer.blobs):
        if len(b.shape) == 1:
            assert np.all(b.data == layer_param.recurrent_param.bias_filler.value)
        elif wf.type == 'uniform':
            assert np.all((b.data >= wf.min) & (b.data <= wf.max)) and np.std(b.data) > 0
        else:
            assert wf.type == 'constant' and np.all(b.data == wf.value)
    for b in layer.blobs:                     # as if trained weights had been loaded
        if len(b.shape) == 1 or wf.type == 'constant':
            b.data[...] = rng.uniform(-0.08, 0.08, b.shape)

    def run():
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        return top[0].data.copy()

    out = run()
    assert out.shape == (steps, streams, hidden)
    params = [b.data for b in layer.blobs]
    ref, _, _ = ref_lstm(arrays[0], arrays[1], params, arrays[2] if static else None)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)

    # Backward of L = <w, h> against a central difference along a random direction of
    # (x, x_static, every parameter).
    w = rng.standard_normal(out.shape)
    top[0].diff[...] = w
    for b in layer.blobs:
        b.diff[...] = 0
    layer.backward(top, [True, False] + [True] * static, bottom)
    targets = [bottom[0]] + ([bottom[2]] if static else []) + list(layer.blobs)
    grads = [t.diff.copy() for t in targets]
    directions = [rng.standard_normal(t.shape) for t in targets]
    analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, directions))
    base = [t.data.copy() for t in targets]
    eps = 1e-6
    values = []
    for sign in (1, -1):
        for t, b0, d in zip(targets, base, directions):
            t.data[...] = b0 + sign * eps * d
        values.append(float(np.sum(w * run())))
    for t, b0 in zip(targets, base):
        t.data[...] = b0
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)


def test_lrcn_captioner_word_by_word():
    """LRCN's captioner runs its 2-layer LSTM (lstm2 with the image as static input) with T = 1,
    one word per forward pass, continuing the sequence through the carried state; that must
    equal running the whole sentence at once."""
    path = LRCN / 'coco_caption' / 'lrcn_word_to_preds.deploy.prototxt'
    if not path.is_file():
        pytest.skip(f'{path} not found')
    net = text_format.Parse(path.read_text(), pb.NetParameter())
    params = {l.name: l for l in net.layer}
    rng = np.random.default_rng(9)
    steps, streams, dim, static_dim = 4, 2, 7, 5
    hidden = params['lstm2'].recurrent_param.num_output
    x = rng.standard_normal((steps, streams, dim))
    image = rng.standard_normal((streams, static_dim))
    cont = np.ones((steps, streams))
    cont[0] = 0

    whole = make(params['lstm2'], pb.TEST)
    bottom, top = [blob(x), blob(cont), blob(image)], tops()
    whole.set_up(bottom, top)
    for b in whole.blobs:
        b.data[...] = rng.uniform(-0.08, 0.08, b.shape)
    whole.reshape(bottom, top)
    whole.forward(bottom, top)

    stepwise = make(params['lstm2'], pb.TEST)
    words = []
    for t in range(steps):
        b, tp = [blob(x[t:t + 1]), blob(cont[t:t + 1]), blob(image)], tops()
        if t == 0:
            stepwise.set_up(b, tp)
            for p, q in zip(stepwise.blobs, whole.blobs):
                p.data[...] = q.data
        stepwise.reshape(b, tp)
        stepwise.forward(b, tp)
        words.append(tp[0].data.copy())
    assert hidden == top[0].shape[2]
    np.testing.assert_allclose(np.concatenate(words), top[0].data, rtol=1e-12, atol=1e-12)
