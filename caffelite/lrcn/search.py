"""Caption decoding: greedy, temperature sampling and beam search, batched over images.

Word ids: 0 = <EOS>, also fed as the start word. A caption is w_1 .. w_n followed by <EOS>
(n < L), or L words without one (cut at ``max_length`` L). Its score is
log p(caption | image) = sum_t log softmax(z_t)[w_t].
  greedy: w_t = argmax_w z_t[w].
  sample: w_t ~ softmax(z_t / temperature) (numpy Generator ``rng``).
  beam:   at step t, every live hypothesis is extended by every word; the beam_size best
          extensions (by score, over all live hypotheses of the image) are kept; those ending
          in <EOS> are finished and leave the beam. Search stops when no hypothesis is live
          or the best finished score is >= the best live score (scores only decrease, so no
          live one can win); the best finished caption is returned. Beam size 1 is greedy;
          a beam that holds every prefix is exhaustive search.
All three run batched (B = images x beam_size rows per step).

``step(words, t, state) -> (logits (B x V), new_state)``: one decoding step for B rows;
words (B,) int are the previous words, t the step index (0: first word), state a list of
arrays with the row axis first. Row order of new_state follows the input rows.
(caffelite.lrcn.captioner.NetStepper makes one from a T = 1 word net.)
"""

import numpy as np

EOS = 0


def log_softmax(z, axis=-1):
    """Numerically stable log softmax in float64."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _take(state, rows):
    return [s[rows] for s in state]


def _decode_one_word_at_a_time(step, state, max_length, choose):
    """Run ``step`` from <EOS> until every row emits <EOS> or ``max_length`` words;
    ``choose(logits)`` picks each row's next word. -> (word id lists without the final <EOS>,
    log p of each caption under the model)."""
    b = state[0].shape[0]
    words = np.full(b, EOS, dtype=np.int64)
    alive = np.ones(b, dtype=bool)
    scores = np.zeros(b)
    out = [[] for _ in range(b)]
    for t in range(max_length):
        logits, state = step(words, t, state)
        words = choose(logits)
        scores[alive] += log_softmax(logits)[np.arange(b), words][alive]
        for i in np.flatnonzero(alive & (words != EOS)):
            out[i].append(int(words[i]))
        alive &= words != EOS
        if not alive.any():
            break
    return out, scores


def greedy_search(step, state, max_length):
    """The most likely word at every step; -> (word id lists, log p)."""
    return _decode_one_word_at_a_time(step, state, max_length,
                                      lambda logits: log_softmax(logits).argmax(axis=1))


def sample_search(step, state, max_length, temperature=1.0, rng=None):
    """Ancestral sampling from softmax(logits / temperature); -> (word id lists, log p)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy for the argmax)")
    rng = np.random.default_rng(rng)

    def choose(logits):
        p = np.exp(log_softmax(np.asarray(logits, np.float64) / temperature))
        cdf = np.cumsum(p, axis=1)
        u = rng.random(p.shape[0])[:, None] * cdf[:, -1:]
        return np.minimum((cdf <= u).sum(axis=1), p.shape[1] - 1)

    return _decode_one_word_at_a_time(step, state, max_length, choose)


def beam_search(step, state, max_length, beam_size):
    """Batched beam search (see module docstring) -> (word id lists, scores), one per row of
    ``state``."""
    if beam_size < 1:
        raise ValueError("beam size must be >= 1")
    b, k = state[0].shape[0], beam_size
    state = _take(state, np.repeat(np.arange(b), k))          # row i * k + j: image i, beam j
    score = np.full((b, k), -np.inf)
    score[:, 0] = 0.0                                         # one empty hypothesis per image
    seqs = np.zeros((b, k, 0), dtype=np.int64)
    words = np.full(b * k, EOS, dtype=np.int64)
    best = [(-np.inf, []) for _ in range(b)]
    for t in range(max_length):
        logits, state = step(words, t, state)
        logp = log_softmax(logits)
        v = logp.shape[1]
        cand = (score[:, :, None] + logp.reshape(b, k, v)).reshape(b, k * v)
        # the k best extensions per image, best first (stable order for ties)
        top = np.argsort(-cand, axis=1, kind="stable")[:, :k]
        new_score = np.take_along_axis(cand, top, axis=1)
        parent, word = top // v, top % v
        seqs = np.concatenate([np.take_along_axis(seqs, parent[:, :, None], axis=1),
                               word[:, :, None]], axis=2)
        finished = np.isfinite(new_score) & ((word == EOS) | (t == max_length - 1))
        for i, j in zip(*np.nonzero(finished)):
            if new_score[i, j] > best[i][0]:
                seq = seqs[i, j]
                best[i] = (float(new_score[i, j]), [int(w) for w in (seq[:-1] if word[i, j] == EOS
                                                                      else seq)])
        new_score[finished] = -np.inf
        best_score = np.array([s for s, _ in best])
        done = new_score.max(axis=1) <= best_score            # also when nothing is live
        new_score[done] = -np.inf
        if done.all():
            break
        score = new_score
        state = _take(state, (np.arange(b)[:, None] * k + parent).ravel())
        words = word.ravel()
    return [s for _, s in best], np.array([sc for sc, _ in best])
