#!/usr/bin/env python3
"""Generate captions with a trained LRCN model: greedy, temperature sampling, beam search.

    python tools/caption.py --weights snapshots/lrcn_iter_N.caffemodel \\
        --captions data/shapes_captions/captions_val.json \\
        --images data/shapes_captions/images --method beam --beam-size 3 --out res.json
    python tools/evaluate_captions.py --results res.json \\
        --captions data/shapes_captions/captions_val.json
    python tools/caption.py --baseline random-train \
        --captions data/shapes_captions/captions_val.json     # model-free reference point

Two deploy nets share the trained weights by layer name (as LRCN's captioner):
  * the image net (``prototxt/lrcn_deploy_image.prototxt``): images (N x 3 x H x W, BGR,
    (pixel - mean) * scale as the training ImageData) -> image feature blob (N x D);
  * the word net (``prototxt/lrcn_deploy_word.prototxt``): one step, T = 1, of B streams.
    Its LSTM layers use ``expose_hidden``: every LSTM layer's last two bottoms are its initial
    state (h_0, c_0: 1 x B x H, fed as net inputs) and its last two tops the final state
    (h_T, c_T). The caller carries the state from step to step and, for beam search,
    reorders it by each surviving hypothesis' parent; nothing is recomputed.

Decoding (word ids: 0 = <EOS>, also fed as the start word; ids k >= 1 are line k - 1 of
vocabulary.txt). A caption is w_1 .. w_n followed by <EOS> (n < L), or L words without one
(cut at ``--max-length`` L). Its score is log p(caption | image) = sum_t log softmax(z_t)[w_t].
  greedy: w_t = argmax_w z_t[w].
  sample: w_t ~ softmax(z_t / temperature) (numpy Generator seeded by ``--seed``).
  beam:   at step t, every live hypothesis is extended by every word; the beam_size best
          extensions (by score, over all live hypotheses of the image) are kept; those ending
          in <EOS> are finished and leave the beam. Search stops when no hypothesis is live
          or the best finished score is >= the best live score (scores only decrease, so no
          live one can win); the best finished caption is returned. Beam size 1 is greedy;
          a beam that holds every prefix is exhaustive search.
All three run batched over images (B = images x beam_size rows per step).
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

EOS = 0


def log_softmax(z, axis=-1):
    """Numerically stable log softmax in float64."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


# ----------------------------------------------------------------------------- search
# ``step(words, t, state) -> (logits (B x V), new_state)``: one decoding step for B rows;
# words (B,) int are the previous words, t the step index (0: first word), state a list of
# arrays with the row axis first. Row order of new_state follows the input rows.

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


# ----------------------------------------------------------------------------- nets

class NetStepper:
    """Wraps a T = 1 word net with expose_hidden LSTMs as a ``step`` function.

    State: [static inputs (B x ...) in ``static_inputs`` order, then for each exposed
    recurrent layer its initial-state inputs (B x H each)]. The LSTMs' h_0/c_0 bottoms must
    be Input blobs of the net; their h_T/c_T tops feed the next step.
    """

    def __init__(self, net, static_inputs=("image_features",), word_input="input_sentence",
                 cont_input="cont_sentence", logits="predict", first_cont=0.0):
        self.net = net
        self.first_cont = first_cont      # 1: keep a given initial state (encoder-decoder)
        self.static_inputs = [s for s in static_inputs if s in net.blobs]
        self.word_input, self.cont_input, self.logits = word_input, cont_input, logits
        self.state_in, self.state_out = [], []
        for name, layer in zip(net._layer_names, net.layers):
            if layer.type in ("LSTM", "RNN") and layer.layer_param.recurrent_param.expose_hidden:
                n = 2 if layer.type == "LSTM" else 1
                self.state_in += list(net.bottom_names[name][-n:])
                self.state_out += list(net.top_names[name][1:1 + n])
        for s in self.state_in:
            if s not in net.inputs:
                raise ValueError("state blob %s must be an Input of the word net" % s)

    def initial_state(self, static):
        """static: list of arrays (B x ...) for ``static_inputs`` -> initial state list."""
        b = static[0].shape[0]
        dtype = self.net.dtype
        zeros = [np.zeros((b,) + tuple(self.net.blobs[s].shape[2:]), dtype)
                 for s in self.state_in]
        return [np.asarray(a, dtype) for a in static] + zeros

    def __call__(self, words, t, state):
        b = len(words)
        ns = len(self.static_inputs)
        dtype = self.net.dtype
        inputs = {self.word_input: np.asarray(words, dtype).reshape(1, b),
                  self.cont_input: np.full((1, b), self.first_cont if t == 0 else 1.0, dtype)}
        for name, a in zip(self.static_inputs, state[:ns]):
            inputs[name] = a
        for name, a in zip(self.state_in, state[ns:]):
            inputs[name] = a.reshape((1,) + a.shape)
        out = self.net.forward(blobs=[self.logits] + self.state_out, **inputs)
        new = state[:ns] + [out[name][0].copy() for name in self.state_out]
        return out[self.logits].reshape(b, -1).astype(np.float64), new


class Captioner:
    """Image net + word net sharing one weights file; see the module docstring."""

    def __init__(self, weights, image_net="prototxt/lrcn_deploy_image.prototxt",
                 word_net="prototxt/lrcn_deploy_word.prototxt",
                 vocab="data/shapes_captions/h5_train/vocabulary.txt", mean=128.0,
                 scale=0.0078125, feature_blob="fc_image"):
        import caffelite
        self.image_net = caffelite.Net(image_net, caffelite.TEST, weights=weights)
        self.word_net = caffelite.Net(word_net, caffelite.TEST, weights=weights)
        self.stepper = NetStepper(self.word_net)
        with open(vocab) as f:
            self.vocab = ["<EOS>"] + [l.strip() for l in f if l.strip()]
        self.mean, self.scale, self.feature_blob = mean, scale, feature_blob

    def load_images(self, paths):
        from caffelite.data.images import read_image as load_image
        _, c, h, w = self.image_net.blobs["data"].shape
        imgs = np.stack([load_image(p, c == 3, h, w) for p in paths]).astype(np.float32)
        return (imgs - self.mean) * self.scale

    def features(self, images):
        out = self.image_net.forward(blobs=[self.feature_blob], data=images)
        return out[self.feature_blob].copy()

    def decode(self, features, method="greedy", beam_size=3, temperature=1.0, rng=None,
               max_length=19):
        state = self.stepper.initial_state([features])
        if method == "greedy":
            return greedy_search(self.stepper, state, max_length)
        if method == "sample":
            return sample_search(self.stepper, state, max_length, temperature, rng)
        if method == "beam":
            return beam_search(self.stepper, state, max_length, beam_size)
        raise ValueError("unknown method %r" % method)

    def sentence(self, ids):
        return " ".join(self.vocab[i] for i in ids)

    def caption_files(self, paths, batch_size=50, **decode_args):
        """-> list of (caption string, log probability), in ``paths`` order."""
        rng = np.random.default_rng(decode_args.pop("seed", 0))
        out = []
        for i in range(0, len(paths), batch_size):
            feats = self.features(self.load_images(paths[i:i + batch_size]))
            ids, scores = self.decode(feats, rng=rng, **decode_args)
            out += [(self.sentence(s), float(sc)) for s, sc in zip(ids, scores)]
        return out


def baseline_captions(kind, train_captions, num, seed=0):
    """Model-free reference points: [(caption, 0.0)] * num."""
    from collections import Counter
    with open(train_captions) as f:
        anns = json.load(f)["annotations"]
    if kind == "most-frequent":
        best = Counter(a["caption"] for a in anns).most_common(1)[0][0]
        return [(best, 0.0)] * num
    rng = np.random.default_rng(seed)
    by_image = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a["caption"])
    keys = sorted(by_image)
    return [(by_image[keys[i]][0], 0.0) for i in rng.integers(0, len(keys), num)]


def main(argv=None):
    p = argparse.ArgumentParser(description="Caption images with a trained LRCN model "
                                            "(greedy / sample / beam); writes COCO results JSON.")
    p.add_argument("--weights", help=".caffemodel (e.g. a training snapshot)")
    p.add_argument("--baseline", choices=("most-frequent", "random-train"),
                   help="no model: every image gets the most frequent training caption, or "
                        "the caption of a random training image (seeded); needs --train-captions")
    p.add_argument("--train-captions", default="data/shapes_captions/captions_train.json")
    p.add_argument("--captions", help="COCO captions JSON whose images to caption")
    p.add_argument("--images", default="data/shapes_captions/images",
                   help="folder of the JSON's file_name entries")
    p.add_argument("--files", nargs="*", help="caption these image files instead (ids 0, 1, ..)")
    p.add_argument("--image-net", default="prototxt/lrcn_deploy_image.prototxt")
    p.add_argument("--word-net", default="prototxt/lrcn_deploy_word.prototxt")
    p.add_argument("--vocab", default="data/shapes_captions/h5_train/vocabulary.txt")
    p.add_argument("--mean", type=float, default=128.0)
    p.add_argument("--scale", type=float, default=0.0078125)
    p.add_argument("--method", choices=("greedy", "sample", "beam"), default="greedy")
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=19, help="max words before <EOS>")
    p.add_argument("--batch-size", type=int, default=50, help="images per batch")
    p.add_argument("--limit", type=int, help="caption only the first N images")
    p.add_argument("--out", help="COCO results JSON to write")
    p.add_argument("--print", type=int, default=5, help="print the first N captions")
    args = p.parse_args(argv)
    if args.files:
        ids, paths = list(range(len(args.files))), list(args.files)
    elif args.captions:
        with open(args.captions) as f:
            images = json.load(f)["images"]
        ids = [im["id"] for im in images]
        paths = [os.path.join(args.images, im["file_name"]) for im in images]
    else:
        p.error("give --captions (COCO JSON) or --files")
    if args.limit:
        ids, paths = ids[:args.limit], paths[:args.limit]
    from caffelite.errors import CaffeliteError
    if not (args.weights or args.baseline):
        p.error("give --weights (or --baseline)")
    try:
        if args.baseline:
            res = baseline_captions(args.baseline, args.train_captions, len(paths), args.seed)
        else:
            cap = Captioner(args.weights, args.image_net, args.word_net, args.vocab, args.mean,
                            args.scale)
            res = cap.caption_files(paths, args.batch_size, method=args.method,
                                    beam_size=args.beam_size, temperature=args.temperature,
                                    seed=args.seed, max_length=args.max_length)
    except (CaffeliteError, OSError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    for i in range(min(args.print, len(res))):
        print("%s: %s  (log p %.3f)" % (os.path.basename(paths[i]), res[i][0], res[i][1]))
    results = [{"image_id": i, "caption": c} for i, (c, _) in zip(ids, res)]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)
        print("wrote %d captions to %s" % (len(results), args.out))
    if args.captions and not args.files:
        from tools.evaluate_captions import evaluate, load_references
        scores = evaluate({r["image_id"]: r["caption"] for r in results},
                          load_references(args.captions))
        print("  ".join("%s %.4f" % kv for kv in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
