"""caffelite.lrcn.search: greedy / sampling / beam search on a tiny random LSTM word net.

The net has the deploy layout of prototxt/lrcn_deploy_word.prototxt (Embed -> LSTM with a
static input and expose_hidden -> InnerProduct axis 2), a vocabulary of 4 ids (0 = <EOS>)
and captions of at most 3 words, so every caption can be enumerated and scored.
"""
import itertools

import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
from caffelite.lrcn.captioner import NetStepper
from caffelite.lrcn.search import EOS, beam_search, greedy_search, log_softmax, sample_search
from caffelite.proto import caffelite_pb2 as pb

V, E, H, D, L = 4, 3, 5, 2, 3          # vocabulary, embedding, hidden, static input, max words

WORD_NET = """
name: "tiny_word"
layer {{ name: "input" type: "Input" top: "input_sentence" top: "cont_sentence"
  top: "image_features" {state_tops}
  input_param {{ shape {{ dim: {T} dim: 1 }} shape {{ dim: {T} dim: 1 }} shape {{ dim: 1 dim: {D} }}
    {state_shapes} }} }}
layer {{ name: "embedding" type: "Embed" bottom: "input_sentence" top: "emb"
  embed_param {{ input_dim: {V} num_output: {E} bias_term: false
    weight_filler {{ type: "gaussian" std: 1.5 }} }} }}
layer {{ name: "lstm" type: "LSTM" bottom: "emb" bottom: "cont_sentence" bottom: "image_features"
  {state_bottoms} top: "lstm" {state_out}
  recurrent_param {{ num_output: {H} {expose}
    weight_filler {{ type: "gaussian" std: 1.0 }} bias_filler {{ type: "gaussian" std: 0.5 }} }} }}
layer {{ name: "predict" type: "InnerProduct" bottom: "lstm" top: "predict"
  inner_product_param {{ num_output: {V} axis: 2
    weight_filler {{ type: "gaussian" std: 1.5 }} bias_filler {{ type: "gaussian" std: 0.5 }} }} }}
"""


def _net(T=1, expose=True):
    fields = dict(T=T, D=D, V=V, E=E, H=H, state_tops="", state_shapes="", state_bottoms="",
                  state_out="", expose="")
    if expose:
        fields.update(state_tops='top: "h0" top: "c0"',
                      state_shapes=("shape { dim: 1 dim: 1 dim: %d } " % H) * 2,
                      state_bottoms='bottom: "h0" bottom: "c0"',
                      state_out='top: "hT" top: "cT"', expose="expose_hidden: true")
    param = text_format.Parse(WORD_NET.format(**fields), pb.NetParameter())
    return caffelite.Net(param, caffelite.TEST, dtype=np.float64)


@pytest.fixture(scope="module")
def model():
    caffelite.set_random_seed(7)
    net = _net()
    feats = np.random.default_rng(3).normal(size=(5, D)) * 2.0
    return NetStepper(net), feats


def _state(stepper, feats):
    return stepper.initial_state([feats])


def _score(stepper, feat, seq):
    """log p of ``seq`` (word ids, then <EOS> unless it has L words) by stepping one row."""
    state = _state(stepper, feat[None])
    words, total = [EOS], 0.0
    targets = list(seq) + ([EOS] if len(seq) < L else [])
    for t, w in enumerate(targets):
        logits, state = stepper(np.array(words[-1:]), t, state)
        total += log_softmax(logits)[0, w]
        words.append(w)
    return total


def _all_captions():
    for n in range(L + 1):
        yield from itertools.product(range(1, V), repeat=n)


def test_stepper_state_matches_full_sequence_net(model):
    """Carrying h_T/c_T through expose_hidden, one word at a time, gives the logits of one
    T-step forward pass over the whole prefix (the net a trainer runs)."""
    stepper, feats = model
    full = _net(T=4, expose=False)
    for name, blobs in stepper.net.params.items():
        for a, b in zip(blobs, full.params[name]):
            b.data[...] = a.data
    seqs = np.array([[0, 2, 1, 3], [0, 3, 3, 1], [0, 1, 2, 2], [0, 1, 1, 1], [0, 2, 2, 3]]).T
    cont = np.ones((4, 5))
    cont[0] = 0
    out = full.feed(input_sentence=seqs, cont_sentence=cont,
                    image_features=feats).forward(blobs=["predict"])["predict"]
    state = _state(stepper, feats)
    for t in range(4):
        logits, state = stepper(seqs[t], t, state)
        np.testing.assert_allclose(logits, out[t], rtol=1e-10, atol=1e-12)


def test_beam_with_every_prefix_is_exhaustive_search(model):
    stepper, feats = model
    caps, scores = beam_search(stepper, _state(stepper, feats), L, beam_size=(V - 1) ** L)
    assert len(caps) == len(feats)
    for i, feat in enumerate(feats):
        scored = [(_score(stepper, feat, c), c) for c in _all_captions()]
        # the caption probabilities of a model form a distribution over all captions
        assert abs(sum(np.exp(s) for s, _ in scored) - 1.0) < 1e-9
        best_score, best = max(scored)
        assert tuple(caps[i]) == best
        assert scores[i] == pytest.approx(best_score, abs=1e-9)


def test_beam_scores_are_the_returned_captions_log_probabilities(model):
    stepper, feats = model
    exhaustive = beam_search(stepper, _state(stepper, feats), L, (V - 1) ** L)[1]
    for k in (1, 2, 3):
        caps, scores = beam_search(stepper, _state(stepper, feats), L, beam_size=k)
        for i, feat in enumerate(feats):
            assert scores[i] == pytest.approx(_score(stepper, feat, caps[i]), abs=1e-9)
            assert scores[i] <= exhaustive[i] + 1e-12


def test_greedy_equals_beam_size_one(model):
    stepper, feats = model
    g_caps, g_scores = greedy_search(stepper, _state(stepper, feats), L)
    b_caps, b_scores = beam_search(stepper, _state(stepper, feats), L, beam_size=1)
    assert g_caps == b_caps
    np.testing.assert_allclose(g_scores, b_scores, atol=1e-12)
    for i, feat in enumerate(feats):     # and greedy is the argmax word at every step
        state, word = _state(stepper, feat[None]), EOS
        expected = []
        for t in range(L):
            logits, state = stepper(np.array([word]), t, state)
            word = int(np.argmax(logits[0]))
            if word == EOS:
                break
            expected.append(word)
        assert g_caps[i] == expected


def test_sampling_is_reproducible_with_a_seed(model):
    stepper, feats = model
    many = np.repeat(feats, 40, axis=0)
    a = sample_search(stepper, _state(stepper, many), L, temperature=1.0, rng=123)
    b = sample_search(stepper, _state(stepper, many), L, temperature=1.0, rng=123)
    c = sample_search(stepper, _state(stepper, many), L, temperature=1.0, rng=124)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0] != c[0]
    for i in range(0, len(many), 37):    # scores are the model's log p of the sampled captions
        assert a[1][i] == pytest.approx(_score(stepper, many[i], a[0][i]), abs=1e-9)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_follows_the_tempered_softmax(model, temperature):
    """First words of 20000 samples: frequencies of softmax(logits / temperature)."""
    stepper, feats = model
    n = 20000
    state = _state(stepper, np.repeat(feats[:1], n, axis=0))
    logits, _ = stepper(np.full(1, EOS), 0, _state(stepper, feats[:1]))
    p = np.exp(log_softmax(logits[0] / temperature))
    caps, _ = sample_search(stepper, state, 1, temperature=temperature, rng=5)
    first = np.array([c[0] if c else EOS for c in caps])
    freq = np.bincount(first, minlength=V) / n
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-3), (freq, p)
    with pytest.raises(ValueError):
        sample_search(stepper, state, 1, temperature=0.0)
