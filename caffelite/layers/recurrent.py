"""Recurrent layers: LSTM and RNN (Caffe's RecurrentLayer family) and LSTMUnit.

Layout is time-major: x is T x N x ... (T timesteps of N independent streams), cont is T x N.
``cont[t, n]`` is 0 where stream n starts a new sequence at step t and 1 where it continues;
the previous hidden (and cell) state of that stream is multiplied by it before it is used.

Caffe builds these layers as an unrolled net of InnerProduct/Eltwise/LSTMUnit layers; here the
same computation is written out by hand, forward and backward through time (BPTT):

- the input projection of all T steps is ONE GEMM ((T*N) x D times D x G), the static input's
  projection is computed once (N x G) and added to every step;
- each step does one recurrent GEMM (N x H times H x G) and the elementwise gate math, into
  preallocated arrays;
- backward runs the steps in reverse (elementwise gate gradients and one GEMM per step for the
  gradient reaching h_{t-1}), then ONE GEMM each for dx, dW_x and dW_h over all steps.

Parameter blobs keep Caffe's shapes and order (so a Caffe .caffemodel loads):

- LSTM (G = 4H): W_xc (G x D), b_c (G), [W_xc_static (G x D_static)], W_hc (G x H);
  gate blocks of G in the order i, f, o, g.
- RNN: W_xh (H x D), b_h (H), [W_xh_static (H x D_static)], W_hh (H x H), W_ho (H x H), b_o (H).

D is the product of x's axes after the first two, D_static the product of x_static's axes after
the first (x_static is N x ...). H = recurrent_param.num_output.

State between forward passes (Caffe 1.0's RecurrentLayer): without ``expose_hidden`` the initial
state h_0 (and c_0) of a forward pass is the final state h_T (c_T) of the previous forward pass
(zero before the first one, or after the batch size changed); a sequence that starts at t = 0
has cont[0] = 0, which discards it. This is how Caffe continues sequences across batches and how
LRCN's captioner generates word by word with T = 1. No gradient flows into the carried state.
With ``expose_hidden`` the initial state comes from the extra bottoms and the final state goes
to the extra tops; caffelite back-propagates through them exactly (Caffe 1.0 shares only their
data with its unrolled net, so it leaves the h_0/c_0 diffs untouched and ignores h_T/c_T diffs).

``debug_info`` is accepted and has no effect (there is no unrolled net to print). The number of
timesteps may change between forward passes (Caffe's unrolled net refuses that).
"""
import numpy as np

from .. import backend
from ..backend import get_array_module
from ..errors import LayerError
from . import cpu_kernels
from .base import Layer, register
from .gemm import gemm_accumulate, output_array


# -- shared helpers ----------------------------------------------------------------------------

class _BufferPool:
    """Arrays reused across forward/backward calls while the shape, dtype and backend stay."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype, xp):
        entry = self._arrays.get(name)
        if entry is None or entry[1] is not xp or entry[0].shape != shape \
                or entry[0].dtype != dtype:
            entry = self._arrays[name] = (xp.empty(shape, dtype=dtype), xp)
        return entry[0]


def _gate_scale(hidden, dtype, xp):
    """(4H,) factors 0.5 for the sigmoid gates i, f, o and 1 for g.

    sigmoid(z) = 0.5 * tanh(z / 2) + 0.5, so scaling the pre-activations by these factors lets
    one tanh pass over all 4H gate columns serve both nonlinearities (in float32 a sigmoid below
    ~6e-8 rounds to 0, an absolute error under 6e-8).
    """
    scale = np.ones(4 * hidden, dtype=dtype)
    scale[:3 * hidden] = 0.5
    return xp.asarray(scale)


def _lstm_step_forward(xp, z, scale, c_prev, cont_t, cp, c, tc, h, tmp):
    """One LSTM cell step on N streams, in place into preallocated arrays.

    z (N x 4H) holds the pre-activations; it is overwritten with the activations
    i, f, o = sigmoid, g = tanh (through one tanh: see _gate_scale).
    Then cp = cont_t * c_prev, c = f * cp + i * g, tc = tanh(c), h = o * tc.
    ``cont_t`` is N x H (or broadcasts to it); ``tmp`` is an N x H scratch array.
    """
    hidden = c.shape[-1]
    z *= scale
    xp.tanh(z, out=z)
    if _fused(z, c_prev, cont_t, cp, c) and cont_t.shape == c.shape:
        cpu_kernels.lstm_cell(z, c_prev, cont_t, cp, c)
    else:
        sig = z[:, :3 * hidden]
        sig *= 0.5
        sig += 0.5
        xp.multiply(c_prev, cont_t, out=cp)
        xp.multiply(z[:, hidden:2 * hidden], cp, out=c)            # f cp
        xp.multiply(z[:, :hidden], z[:, 3 * hidden:], out=tmp)     # i g
        c += tmp
    xp.tanh(c, out=tc)
    xp.multiply(z[:, 2 * hidden:3 * hidden], tc, out=h)            # o tanh(c)


def _fused(*arrays):
    """True when the compiled LSTM step kernels (cpu_kernels) can take ``arrays`` and Numba is
    already loaded (the kernels give the twins' numbers; see cpu_kernels on why they do not
    import it)."""
    return (cpu_kernels.loaded() and cpu_kernels.usable(*arrays)
            and all(a.flags.c_contiguous for a in arrays))


def _lstm_backward_factors(xp, acts, cp, tc, cont, q, po, fc):
    """Step-independent factors of the LSTM gate gradients, for all T steps at once.

    acts: T x N x 4 x H activations (i, f, o, g); cp = cont * c_{t-1}, tc = tanh(c_t): T x N x H;
    cont: T x N x H (or broadcasting to it).
    Writes q (T x N x 4 x H), po, fc (T x N x H) so that, per step, with dh the gradient
    reaching h_t and dc the one reaching c_t (before adding dh * po):
        dc += dh * po;  dz_i, dz_f, dz_g = dc * q_i, q_f, q_g;  dz_o = dh * q_o;
        gradient reaching c_{t-1} = dc * fc.
    """
    i, f, o, g = acts[:, :, 0], acts[:, :, 1], acts[:, :, 2], acts[:, :, 3]
    sig = acts[:, :, :3]
    dsig = q[:, :, :3]
    xp.subtract(1, sig, out=dsig)
    dsig *= sig                       # sigmoid'(z) = a (1 - a)
    # (out= keeps these in place; q[k] *= ... would copy the result onto itself once more)
    xp.multiply(q[:, :, 0], g, out=q[:, :, 0])     # dc_t/dz_i = g i (1 - i)
    xp.multiply(q[:, :, 1], cp, out=q[:, :, 1])    # dc_t/dz_f = c' f (1 - f)
    xp.multiply(q[:, :, 2], tc, out=q[:, :, 2])    # dh_t/dz_o = tanh(c_t) o (1 - o)
    qg = q[:, :, 3]
    xp.multiply(g, g, out=qg)
    xp.subtract(1, qg, out=qg)
    qg *= i                           # dc_t/dz_g = i (1 - g^2)
    xp.multiply(tc, tc, out=po)
    xp.subtract(1, po, out=po)
    po *= o                           # dh_t/dc_t = o (1 - tanh(c_t)^2)
    xp.multiply(f, cont, out=fc)      # dc_t/dc_{t-1} = f cont_t


def _lstm_step_backward(xp, dh, dc, q, po, fc, dz, tmp):
    """One reverse LSTM step: from dh (gradient reaching h_t, all paths) and dc (gradient
    reaching c_t from step t+1 and the c_T top), write dz (N x 4 x H, the gradient of the gate
    pre-activations) and replace dc by the gradient reaching c_{t-1}; ``q, po, fc`` are this
    step's factors."""
    xp.multiply(dh, po, out=tmp)
    dc += tmp
    xp.multiply(q[:, 0:2], dc[:, None, :], out=dz[:, 0:2])
    xp.multiply(q[:, 2], dh, out=dz[:, 2])
    xp.multiply(q[:, 3], dc, out=dz[:, 3])
    dc *= fc


def _accumulate(blob, value):
    """Add ``value`` into a parameter blob's diff (the solver clears it each iteration)."""
    diff = blob.xdiff
    diff += value
    blob.xdiff = diff


# -- LSTM and RNN ------------------------------------------------------------------------------

class _RecurrentLayer(Layer):
    """Caffe's RecurrentLayer: bottoms x (T x N x ...), cont (T x N), optional x_static
    (N x ...), then with expose_hidden the initial states (1 x N x H each); tops: the output
    (T x N x H), then with expose_hidden the final states (1 x N x H each)."""
    min_bottom = 2
    min_top = 1
    num_states = None          # 2 for LSTM (h, c), 1 for RNN (h)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1      # cont is a marker, never differentiated

    # -- setup and shapes ------------------------------------------------------------------
    def setup(self, bottom, top):
        param = self.layer_param.recurrent_param
        self.hidden = int(param.num_output)
        if self.hidden <= 0:
            raise LayerError('recurrent_param.num_output must be positive')
        self.expose_hidden = bool(param.expose_hidden)
        exposed = self.num_states if self.expose_hidden else 0
        self.static_input = len(bottom) > 2 + exposed
        expected = 2 + int(self.static_input) + exposed
        if len(bottom) != expected:
            raise LayerError(
                f'takes x, cont{", x_static" if self.static_input else ""}'
                f'{" and the initial hidden state(s)" if exposed else ""}: expected '
                f'{expected} bottoms, got {len(bottom)}')
        if len(top) != 1 + exposed:
            raise LayerError(f'expected {1 + exposed} top(s) '
                             f'(expose_hidden: {self.expose_hidden}), got {len(top)}')
        x = bottom[0]
        if len(x.shape) < 2:
            raise LayerError(f'bottom[0] must have at least 2 axes (timesteps, streams, ...), '
                             f'got shape {x.shape}')
        self.input_dim = int(np.prod(x.shape[2:], dtype=np.int64))
        if self.static_input:
            if len(bottom[2].shape) < 1:
                raise LayerError('the static input bottom[2] must have at least 1 axis')
            self.static_dim = int(np.prod(bottom[2].shape[1:], dtype=np.int64))
        self.make_params(param)
        self._pool = _BufferPool()
        self._state = None          # final state(s) of the last forward pass (carried over)

    def reshape(self, bottom, top):
        x, cont = bottom[0], bottom[1]
        if len(x.shape) < 2:
            raise LayerError(f'bottom[0] must have at least 2 axes (timesteps, streams, ...), '
                             f'got shape {x.shape}')
        steps, streams = x.shape[:2]
        if int(np.prod(x.shape[2:], dtype=np.int64)) != self.input_dim:
            raise LayerError(f'input size {int(np.prod(x.shape[2:]))} per step (shape '
                             f'{x.shape}) does not match the {self.input_dim} the layer was set '
                             f'up with')
        if tuple(cont.shape) != (steps, streams):
            raise LayerError(f'cont (bottom[1]) must be T x N = {steps} x {streams}, '
                             f'got shape {cont.shape}')
        if self.static_input:
            xs = bottom[2]
            if len(xs.shape) < 1 or xs.shape[0] != streams:
                raise LayerError(f'x_static (bottom[2]) must be N x ... with N = {streams}, '
                                 f'got shape {xs.shape}')
            if int(np.prod(xs.shape[1:], dtype=np.int64)) != self.static_dim:
                raise LayerError(f'x_static size {int(np.prod(xs.shape[1:]))} per stream does '
                                 f'not match the {self.static_dim} the layer was set up with')
        state_shape = (1, streams, self.hidden)
        if self.expose_hidden:
            first = 2 + int(self.static_input)
            for k in range(self.num_states):
                if tuple(bottom[first + k].shape) != state_shape:
                    raise LayerError(f'bottom[{first + k}] (initial state) must have shape '
                                     f'{state_shape}, got {bottom[first + k].shape}')
        top[0].reshape(steps, streams, self.hidden)
        for t in top[1:]:
            t.reshape(state_shape)

    def reset_state(self):
        """Forget the state carried over from the previous forward pass (Caffe's Reset)."""
        self._state = None

    # -- helpers ---------------------------------------------------------------------------
    def _inputs(self, bottom, with_states=True):
        """x as (T*N) x D, cont as T x N, x_static as N x D_s (or None), initial states.

        Also records ``self._live``: per step, whether the recurrent term can be non-zero (not
        when every stream restarts at that step, nor at t = 0 from a zero state); the
        recurrent GEMMs of the other steps are skipped (typically t = 0)."""
        x = bottom[0].xdata
        xp = get_array_module(x)
        steps, streams = x.shape[:2]
        x2 = x.reshape(steps * streams, self.input_dim).astype(self.dtype, copy=False)
        cont = bottom[1].xdata.astype(self.dtype, copy=False)
        xs = None
        if self.static_input:
            xs = bottom[2].xdata.reshape(streams, self.static_dim).astype(self.dtype, copy=False)
        shape = (streams, self.hidden)
        zero_state = False
        if not with_states:
            states = None
        elif self.expose_hidden:
            first = 2 + int(self.static_input)
            states = [bottom[first + k].xdata.reshape(shape).astype(self.dtype, copy=False)
                      for k in range(self.num_states)]
        elif (self._state is not None and self._state[0].shape == shape
              and get_array_module(self._state[0]) is xp):
            states = self._state
        else:
            states = [xp.zeros(shape, dtype=self.dtype) for _ in range(self.num_states)]
            zero_state = True
        if with_states:
            live = backend.to_host(cont.any(axis=1)).tolist()   # one host sync per forward
            if steps and zero_state:
                live[0] = False
            self._live = live
            self._live_rows = sum(live) * streams
        return xp, steps, streams, x2, cont, xs, states

    # Below this many recurrent rows (live steps x streams), transposing W_h costs more than the
    # faster GEMM layout it buys (measured with OpenBLAS: NT ~1.5x slower than NN at N >= 24).
    TRANSPOSE_MIN_ROWS = 128

    def _recurrent_weights(self, xp, w_h):
        """The right operand of the per-step GEMM h' @ W_h^T: with enough rows a contiguous
        copy of W_h^T (every step is then a plain NN GEMM), otherwise the transposed view."""
        if self._live_rows < self.TRANSPOSE_MIN_ROWS:
            return w_h.T
        w_t = self._pool.get('wh', w_h.shape[::-1], self.dtype, xp)
        if xp is np:        # numpy's strided copy is several times faster in column blocks
            for j in range(0, w_h.shape[0], 64):
                w_t[:, j:j + 64] = w_h[j:j + 64].T
        else:
            w_t[...] = w_h.T
        return w_t

    def _first_live(self):
        """First step whose h' can be non-zero (earlier steps add nothing to dW_hh)."""
        return next((t for t, live in enumerate(self._live) if live), len(self._live))

    def _broadcast_cont(self, xp, cont, hidden):
        """cont as T x N x H (per-step multiplies by an N x 1 column broadcast slowly)."""
        conts = self._pool.get('cont', cont.shape + (hidden,), self.dtype, xp)
        conts[...] = cont[:, :, None]
        return conts

    def _input_projection(self, xp, x2, xs, steps, streams, w_x, b, w_s):
        """z = x W_x^T + b (+ x_static W_s^T) for all steps: T x N x G."""
        gates = w_x.shape[0]
        z = self._pool.get('z', (steps, streams, gates), self.dtype, xp)
        xp.matmul(x2, w_x.T, out=z.reshape(steps * streams, gates))
        shift = b if xs is None else xp.matmul(xs, w_s.T) + b   # G or N x G, all steps
        z += shift
        return z

    def _input_backward(self, xp, propagate_down, bottom, dz, x2, xs, steps,
                        streams, idx_wx, idx_b, idx_ws):
        """Gradients of the input projection from dz (T x N x G): W_x, b, W_s, x, x_static."""
        gates = dz.shape[-1]
        dz2 = dz.reshape(steps * streams, gates)
        if self.param_needs_grad(idx_wx):
            gemm_accumulate(dz2.T, x2, output_array(self.blobs[idx_wx], diff=True))
        if self.param_needs_grad(idx_b):
            _accumulate(self.blobs[idx_b], dz2.sum(axis=0))
        if propagate_down[0]:
            dx = output_array(bottom[0], diff=True).reshape(steps * streams, -1)
            xp.matmul(dz2, self.blobs[idx_wx].xdata, out=dx)
        if propagate_down[1]:
            bottom[1].xdiff = xp.zeros(bottom[1].shape, dtype=bottom[1].dtype)
        if self.static_input:
            need_w = self.param_needs_grad(idx_ws)
            if need_w or propagate_down[2]:
                dzs = dz.sum(axis=0)                       # N x G: x_static feeds every step
                if need_w:
                    gemm_accumulate(dzs.T, xs, output_array(self.blobs[idx_ws], diff=True))
                if propagate_down[2]:
                    bottom[2].xdiff = xp.matmul(dzs, self.blobs[idx_ws].xdata).reshape(
                        bottom[2].shape)

    def _write_state_diffs(self, propagate_down, bottom, diffs):
        if not self.expose_hidden:
            return
        first = 2 + int(self.static_input)
        for k, d in enumerate(diffs):
            if propagate_down[first + k]:
                bottom[first + k].xdiff = d.reshape(bottom[first + k].shape).copy()

    def _state_top_diffs(self, xp, top, streams):
        """Diffs arriving at the exposed final-state tops (zeros without expose_hidden)."""
        shape = (streams, self.hidden)
        out = []
        for k in range(self.num_states):
            if self.expose_hidden:
                out.append(top[1 + k].xdiff.reshape(shape).astype(self.dtype, copy=True))
            else:
                out.append(xp.zeros(shape, dtype=self.dtype))
        return out


@register('LSTM')
class LSTMLayer(_RecurrentLayer):
    """Long short-term memory over T steps (Caffe 1.0's LSTM layer).

    Per step t, with H = num_output and the gates in Caffe's order i, f, o, g:
        h' = cont_t * h_{t-1},  c' = cont_t * c_{t-1}
        z  = W_xc x_t + b_c + W_xc_static x_static + W_hc h'        (4H per stream)
        i, f, o = sigmoid(z_i, z_f, z_o),  g = tanh(z_g)
        c_t = f * c' + i * g,  h_t = o * tanh(c_t)
    Bottoms: x (T x N x ...), cont (T x N), [x_static (N x ...)], [h_0, c_0 (1 x N x H)].
    Tops: h (T x N x H), [h_T, c_T (1 x N x H)].
    Params: W_xc (4H x D), b_c (4H), [W_xc_static (4H x D_static)], W_hc (4H x H).
    """
    max_bottom = 5
    max_top = 3
    num_states = 2

    def make_params(self, param):
        hidden, gates = self.hidden, 4 * self.hidden
        self.blobs = [self.make_param_blob((gates, self.input_dim), param.weight_filler),
                      self.make_param_blob((gates,), param.bias_filler)]
        if self.static_input:
            self.blobs.append(self.make_param_blob((gates, self.static_dim),
                                                   param.weight_filler))
        self.blobs.append(self.make_param_blob((gates, hidden), param.weight_filler))
        self._i_ws = 2 if self.static_input else None
        self._i_wh = 3 if self.static_input else 2

    def forward(self, bottom, top):
        xp, steps, streams, x2, cont, xs, (h_prev, c_prev) = self._inputs(bottom)
        hidden, gates = self.hidden, 4 * self.hidden
        scale = _gate_scale(hidden, self.dtype, xp)
        w_s = self.blobs[self._i_ws].xdata if self.static_input else None
        acts = self._input_projection(xp, x2, xs, steps, streams, self.blobs[0].xdata,
                                      self.blobs[1].xdata, w_s)
        pool, shape3 = self._pool, (steps, streams, hidden)
        w_h = self._recurrent_weights(xp, self.blobs[self._i_wh].xdata)
        conts = self._broadcast_cont(xp, cont, hidden)
        hc = pool.get('hc', shape3, self.dtype, xp)      # cont_t * h_{t-1}, kept for dW_hc
        cp = pool.get('cp', shape3, self.dtype, xp)      # cont_t * c_{t-1}
        cell = pool.get('c', shape3, self.dtype, xp)
        tc = pool.get('tc', shape3, self.dtype, xp)      # tanh(c_t)
        rec = pool.get('rec', (streams, gates), self.dtype, xp)
        tmp = pool.get('tmp', (streams, hidden), self.dtype, xp)
        h = output_array(top[0]).reshape(shape3)         # written in the top's own storage
        for t in range(steps):
            xp.multiply(h_prev, conts[t], out=hc[t])
            if self._live[t]:
                xp.matmul(hc[t], w_h, out=rec)
                xp.add(acts[t], rec, out=acts[t])
            _lstm_step_forward(xp, acts[t], scale, c_prev, conts[t], cp[t], cell[t], tc[t], h[t],
                               tmp)
            h_prev, c_prev = h[t], cell[t]
        h_last, c_last = h_prev.copy(), c_prev.copy()
        if self.expose_hidden:
            top[1].xdata = h_last.reshape(1, streams, hidden)
            top[2].xdata = c_last.reshape(1, streams, hidden)
        else:
            self._state = [h_last, c_last]

    def backward(self, top, propagate_down, bottom):
        xp, steps, streams, x2, cont, xs, _ = self._inputs(bottom, with_states=False)
        hidden, gates = self.hidden, 4 * self.hidden
        pool, shape3 = self._pool, (steps, streams, hidden)
        acts = pool.get('z', (steps, streams, gates), self.dtype, xp)
        acts4 = acts.reshape(steps, streams, 4, hidden)
        cp = pool.get('cp', shape3, self.dtype, xp)
        tc = pool.get('tc', shape3, self.dtype, xp)
        conts = self._broadcast_cont(xp, cont, hidden)
        dz = pool.get('dz', (steps, streams, 4, hidden), self.dtype, xp)
        w_h = self.blobs[self._i_wh].xdata
        dtop = top[0].xdiff
        dh, dc = self._state_top_diffs(xp, top, streams)
        fused = _fused(acts4, cp, tc, conts, dz, dh, dc)
        if not fused:   # the xp path: the step-independent factors for all steps at once
            q = pool.get('q', (steps, streams, 4, hidden), self.dtype, xp)
            po = pool.get('po', shape3, self.dtype, xp)
            fc = pool.get('fc', shape3, self.dtype, xp)
            _lstm_backward_factors(xp, acts4, cp, tc, conts, q, po, fc)
            tmp = pool.get('tmp', (streams, hidden), self.dtype, xp)
        for t in range(steps - 1, -1, -1):
            dh += dtop[t]
            if fused:
                cpu_kernels.lstm_step_backward(dh, dc, acts4[t], cp[t], tc[t], conts[t], dz[t])
            else:
                _lstm_step_backward(xp, dh, dc, q[t], po[t], fc[t], dz[t], tmp)
            if self._live[t]:
                xp.matmul(dz[t].reshape(streams, gates), w_h, out=dh)   # reaches h'
                dh *= conts[t]                                           # reaches h_{t-1}
            else:
                dh[...] = 0
        dz3 = dz.reshape(steps, streams, gates)
        first = self._first_live()
        if self.param_needs_grad(self._i_wh) and first < steps:
            hc = pool.get('hc', shape3, self.dtype, xp)
            gemm_accumulate(dz3[first:].reshape(-1, gates).T, hc[first:].reshape(-1, hidden),
                            output_array(self.blobs[self._i_wh], diff=True))
        self._input_backward(xp, propagate_down, bottom, dz3, x2, xs, steps, streams,
                             0, 1, self._i_ws)
        self._write_state_diffs(propagate_down, bottom, [dh, dc])


@register('RNN')
class RNNLayer(_RecurrentLayer):
    """Simple (Elman) recurrent net over T steps (Caffe 1.0's RNN layer).

    Per step t, with H = num_output:
        h_t = tanh(W_xh x_t + b_h + W_xh_static x_static + W_hh (cont_t * h_{t-1}))
        o_t = tanh(W_ho h_t + b_o)
    Bottoms: x (T x N x ...), cont (T x N), [x_static (N x ...)], [h_0 (1 x N x H)].
    Tops: o (T x N x H), [h_T (1 x N x H)].
    Params: W_xh (H x D), b_h (H), [W_xh_static (H x D_static)], W_hh (H x H), W_ho (H x H),
    b_o (H).
    """
    max_bottom = 4
    max_top = 2
    num_states = 1

    def make_params(self, param):
        hidden = self.hidden
        self.blobs = [self.make_param_blob((hidden, self.input_dim), param.weight_filler),
                      self.make_param_blob((hidden,), param.bias_filler)]
        if self.static_input:
            self.blobs.append(self.make_param_blob((hidden, self.static_dim),
                                                   param.weight_filler))
        first = len(self.blobs)
        self.blobs += [self.make_param_blob((hidden, hidden), param.weight_filler),   # W_hh
                       self.make_param_blob((hidden, hidden), param.weight_filler),   # W_ho
                       self.make_param_blob((hidden,), param.bias_filler)]            # b_o
        self._i_ws = 2 if self.static_input else None
        self._i_whh, self._i_who, self._i_bo = first, first + 1, first + 2

    def forward(self, bottom, top):
        xp, steps, streams, x2, cont, xs, (h_prev,) = self._inputs(bottom)
        hidden = self.hidden
        w_s = self.blobs[self._i_ws].xdata if self.static_input else None
        hs = self._input_projection(xp, x2, xs, steps, streams, self.blobs[0].xdata,
                                    self.blobs[1].xdata, w_s)     # becomes h_1..h_T in place
        w_hh = self.blobs[self._i_whh].xdata
        hc = self._pool.get('hc', (steps, streams, hidden), self.dtype, xp)
        rec = self._pool.get('rec', (streams, hidden), self.dtype, xp)
        w_hh_t = self._recurrent_weights(xp, w_hh)
        conts = self._broadcast_cont(xp, cont, hidden)
        for t in range(steps):
            xp.multiply(h_prev, conts[t], out=hc[t])
            if self._live[t]:
                xp.matmul(hc[t], w_hh_t, out=rec)
                xp.add(hs[t], rec, out=hs[t])
            xp.tanh(hs[t], out=hs[t])
            h_prev = hs[t]
        o = xp.matmul(hs.reshape(-1, hidden), self.blobs[self._i_who].xdata.T)
        o += self.blobs[self._i_bo].xdata
        xp.tanh(o, out=o)
        self._o = o.reshape(steps, streams, hidden)
        top[0].xdata = self._o
        h_last = h_prev.copy()
        if self.expose_hidden:
            top[1].xdata = h_last.reshape(1, streams, hidden)
        else:
            self._state = [h_last]

    def backward(self, top, propagate_down, bottom):
        xp, steps, streams, x2, cont, xs, _ = self._inputs(bottom, with_states=False)
        hidden = self.hidden
        pool, shape3 = self._pool, (steps, streams, hidden)
        hs = pool.get('z', shape3, self.dtype, xp)
        hs2 = hs.reshape(-1, hidden)
        # Output layer, all steps at once: o = tanh(W_ho h + b_o).
        dpre = top[0].xdiff.reshape(-1, hidden) * (1 - self._o.reshape(-1, hidden) ** 2)
        if self.param_needs_grad(self._i_who):
            gemm_accumulate(dpre.T, hs2, output_array(self.blobs[self._i_who], diff=True))
        if self.param_needs_grad(self._i_bo):
            _accumulate(self.blobs[self._i_bo], dpre.sum(axis=0))
        dhs = xp.matmul(dpre, self.blobs[self._i_who].xdata).reshape(shape3)  # reaches h_t from o_t
        dtanh = pool.get('dtanh', shape3, self.dtype, xp)
        xp.multiply(hs, hs, out=dtanh)
        xp.subtract(1, dtanh, out=dtanh)                  # tanh' = 1 - h_t^2
        dz = pool.get('dz', shape3, self.dtype, xp)
        w_hh = self.blobs[self._i_whh].xdata
        (dh,) = self._state_top_diffs(xp, top, streams)
        conts = self._broadcast_cont(xp, cont, hidden)
        for t in range(steps - 1, -1, -1):
            dh += dhs[t]
            xp.multiply(dh, dtanh[t], out=dz[t])
            if self._live[t]:
                xp.matmul(dz[t], w_hh, out=dh)
                dh *= conts[t]
            else:
                dh[...] = 0
        first = self._first_live()
        if self.param_needs_grad(self._i_whh) and first < steps:
            hc = pool.get('hc', shape3, self.dtype, xp)
            gemm_accumulate(dz[first:].reshape(-1, hidden).T, hc[first:].reshape(-1, hidden),
                            output_array(self.blobs[self._i_whh], diff=True))
        self._input_backward(xp, propagate_down, bottom, dz, x2, xs, steps, streams,
                             0, 1, self._i_ws)
        self._write_state_diffs(propagate_down, bottom, [dh])


# -- LSTMUnit ----------------------------------------------------------------------------------

@register('LSTMUnit')
class LSTMUnitLayer(Layer):
    """One LSTM cell step (Caffe's LSTMUnit, the cell of its unrolled LSTM).

    Bottoms: c_prev (1 x N x H), x (1 x N x 4H: pre-activations of the gates i, f, o, g),
    cont (1 x N). Tops: c (1 x N x H), h (1 x N x H).
        i, f, o = sigmoid(x_i, x_f, x_o),  g = tanh(x_g)
        c = cont * f * c_prev + i * g,  h = o * tanh(c)
    Backward reaches c_prev and x, never cont. No parameters.
    """
    exact_num_bottom = 3
    exact_num_top = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        c_prev, x, cont = bottom
        if len(c_prev.shape) != 3 or c_prev.shape[0] != 1:
            raise LayerError(f'c_prev (bottom[0]) must be 1 x N x H, got shape {c_prev.shape}')
        _, streams, hidden = c_prev.shape
        if tuple(x.shape) != (1, streams, 4 * hidden):
            raise LayerError(f'x (bottom[1]) must be 1 x N x 4H = 1 x {streams} x {4 * hidden}, '
                             f'got shape {x.shape}')
        if tuple(cont.shape) != (1, streams):
            raise LayerError(f'cont (bottom[2]) must be 1 x N = 1 x {streams}, '
                             f'got shape {cont.shape}')
        for t in top:
            t.reshape(c_prev.shape)

    def forward(self, bottom, top):
        c_prev = bottom[0].xdata.astype(self.dtype, copy=False)[0]
        xp = get_array_module(c_prev)
        streams, hidden = c_prev.shape
        cont = bottom[2].xdata.astype(self.dtype, copy=False).reshape(1, streams)
        acts = bottom[1].xdata.reshape(streams, 4 * hidden).astype(self.dtype, copy=True)
        cp, c, tc, h, tmp = (xp.empty((streams, hidden), dtype=self.dtype) for _ in range(5))
        _lstm_step_forward(xp, acts, _gate_scale(hidden, self.dtype, xp), c_prev, cont.T, cp, c,
                           tc, h, tmp)
        self._saved = (acts, cp, tc, cont)
        top[0].xdata = c.reshape(1, streams, hidden)
        top[1].xdata = h.reshape(1, streams, hidden)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise LayerError('cannot backpropagate to the sequence indicators (cont)')
        if not (propagate_down[0] or propagate_down[1]):
            return
        acts, cp, tc, cont = self._saved
        xp = get_array_module(acts)
        streams, hidden = cp.shape
        q = xp.empty((1, streams, 4, hidden), dtype=self.dtype)
        po, fc = (xp.empty((1, streams, hidden), dtype=self.dtype) for _ in range(2))
        _lstm_backward_factors(xp, acts.reshape(1, streams, 4, hidden), cp[None], tc[None],
                               cont[:, :, None], q, po, fc)
        dh = top[1].xdiff.reshape(streams, hidden).astype(self.dtype, copy=False)
        dc = top[0].xdiff.reshape(streams, hidden).astype(self.dtype, copy=True)
        dz = xp.empty((streams, 4, hidden), dtype=self.dtype)
        _lstm_step_backward(xp, dh, dc, q[0], po[0], fc[0], dz,
                            xp.empty((streams, hidden), dtype=self.dtype))
        if propagate_down[0]:
            bottom[0].xdiff = dc.reshape(1, streams, hidden)
        if propagate_down[1]:
            bottom[1].xdiff = dz.reshape(1, streams, 4 * hidden)
