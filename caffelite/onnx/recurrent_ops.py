"""Caffe's LSTM and RNN layers as one ONNX LSTM / RNN pass (caffelite/layers/recurrent.py
has the Caffe 1.0 math).

Caffe's cont markers multiply the previous state at every step; ONNX's recurrences always
carry it. The exported pass therefore computes Caffe's result exactly when each stream runs
through the whole pass: cont[t] = 1 for t >= 1. cont[0] still gates the initial state
(expose_hidden: h_0 and c_0 are multiplied by it; otherwise the state starts at zero, as it
does in Caffe for a stream starting at t = 0). Each such layer is recorded in
``g.cont_markers`` so that the model's metadata names the cont inputs and the rule, and
caffelite.onnx.runtime refuses a feed that restarts a stream mid-pass.

Layouts: Caffe's gate blocks are i, f, o, g; ONNX's are i, o, f, c, so the blocks of W, R and
the bias are reordered. ONNX's recurrence bias Rb is zero (Caffe has one bias, b_c, in Wb).
A static input x_static (N x D_s) is the same at every step: it is broadcast over T and
concatenated to x, with W_xc_static appended to W_xc's columns.
"""
import numpy as np

from .registry import converts

_ONNX_GATE_ORDER = [0, 2, 1, 3]          # ONNX block k is Caffe block _ONNX_GATE_ORDER[k]


def _lstm_gates(array):
    """4H x ... (Caffe order i, f, o, g) -> 4H x ... (ONNX order i, o, f, c)."""
    blocks = array.reshape((4, -1) + array.shape[1:])
    return blocks[_ONNX_GATE_ORDER].reshape(array.shape)


def _recurrent_inputs(ctx, g, num_states, input_weight):
    """The pieces shared by LSTM and RNN: (X as T x N x D', W_x as G x D', initial states
    or None, expose_hidden)."""
    p = ctx.param.recurrent_param
    expose = bool(p.expose_hidden)
    states = num_states if expose else 0
    static = len(ctx.bottoms) > 2 + states
    steps, streams = ctx.bottom_shapes[0][:2]
    x = g.reshape(ctx.bottoms[0], (steps, streams, -1), ctx.name)
    if static:
        w_static = ctx.blob(2)
        xs = g.reshape(ctx.bottoms[2], (1, streams, w_static.shape[1]), ctx.name)
        xs = g.op('Expand', [xs, g.ints([steps, streams, w_static.shape[1]],
                                        f'{ctx.name}/static_shape')], ctx.name)
        x = g.op('Concat', [x, xs], ctx.name, axis=2)
        input_weight = np.concatenate([input_weight, w_static], axis=1)
    g.cont_markers.append({'layer': ctx.name, 'type': ctx.type,
                           'cont': g.source(ctx.bottoms[1]), 'expose_hidden': expose})
    initial = None
    if expose:
        first = 2 + int(static)
        cont0 = ctx.bottoms[1]
        if steps > 1:
            cont0 = g.op('Slice', [cont0, g.ints([0], f'{ctx.name}/start'),
                                   g.ints([1], f'{ctx.name}/end'),
                                   g.ints([0], f'{ctx.name}/axis')], ctx.name)
        cont0 = g.reshape(cont0, (1, streams, 1), ctx.name)
        initial = [g.op('Mul', [state, cont0], ctx.name)
                   for state in ctx.bottoms[first:first + num_states]]
    return x, input_weight, initial, expose


def _squeeze_direction(ctx, g, y, out=None):
    """ONNX's Y is T x num_directions (1) x N x H; Caffe's top is T x N x H."""
    return g.squeeze(y, [1], ctx.name, out)


@converts('LSTM')
def lstm(ctx, g):
    hidden = int(ctx.param.recurrent_param.num_output)
    w_h = ctx.blob(ctx.num_blobs - 1)
    x, w_x, initial, expose = _recurrent_inputs(ctx, g, 2, ctx.blob(0))
    bias = np.concatenate([_lstm_gates(ctx.blob(1)), np.zeros(4 * hidden, np.float32)])
    inputs = [x, g.const(_lstm_gates(w_x)[None], f'{ctx.name}/W'),
              g.const(_lstm_gates(w_h)[None], f'{ctx.name}/R'),
              g.const(bias[None], f'{ctx.name}/B')]
    if initial:
        inputs += [''] + initial                  # no sequence_lens: every stream runs T steps
    outputs = [g.unique(f'{ctx.name}/Y')] + (ctx.tops[1:3] if expose else [])
    g.node('LSTM', inputs, outputs, ctx.name, hidden_size=hidden)
    _squeeze_direction(ctx, g, outputs[0], ctx.tops[0])


@converts('RNN')
def rnn(ctx, g):
    """h_t = tanh(W_xh x_t + b_h + W_hh h_{t-1}) is ONNX's RNN (tanh); the output layer
    o_t = tanh(W_ho h_t + b_o) follows it as MatMul, Add, Tanh over all steps."""
    hidden = int(ctx.param.recurrent_param.num_output)
    n = ctx.num_blobs
    w_hh, w_ho, b_o = ctx.blob(n - 3), ctx.blob(n - 2), ctx.blob(n - 1)
    x, w_x, initial, expose = _recurrent_inputs(ctx, g, 1, ctx.blob(0))
    bias = np.concatenate([ctx.blob(1), np.zeros(hidden, np.float32)])
    inputs = [x, g.const(w_x[None], f'{ctx.name}/W'), g.const(w_hh[None], f'{ctx.name}/R'),
              g.const(bias[None], f'{ctx.name}/B')]
    if initial:
        inputs += [''] + initial
    outputs = [g.unique(f'{ctx.name}/Y')] + (ctx.tops[1:2] if expose else [])
    g.node('RNN', inputs, outputs, ctx.name, hidden_size=hidden)
    h = _squeeze_direction(ctx, g, outputs[0])
    pre = g.op('MatMul', [h, g.const(w_ho.T, f'{ctx.name}/W_ho_T')], ctx.name)
    pre = g.op('Add', [pre, g.const(b_o, f'{ctx.name}/b_o')], ctx.name)
    g.op('Tanh', [pre], ctx.name, ctx.tops[0])
