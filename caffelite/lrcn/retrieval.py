"""Image <-> caption retrieval with a captioning model (LRCN paper, Table 2).

Score: s[i, c] = log p(caption c | image i) = sum_t log softmax(z_t)[w_t] over the caption's
words and its final <EOS> (the target stream of caffelite.lrcn.coco_hdf5.caption_to_streams,
T = max_words steps; a caption of >= T words is cut as in training; the steps after the
longest caption's <EOS> are not run, as they add nothing). Batched: the image trunk
runs once per image; for a batch of B images the word net (T = max_words, expose_hidden
LSTMs started from zero state) runs once, time-major, over all B x C (image, caption) pairs.

Ranks: for a query q with candidate scores s[q, :] (higher is better) and a set of correct
candidates, the rank of the first correct item is
    rank_q = 1 + #{incorrect j : s[q, j] >= max over correct k of s[q, k]}.
Ties are pessimistic: an incorrect candidate that ties the best correct one is ranked before
it (so a constant score gives the worst rank, never a lucky one); ties among correct
candidates do not matter. R@K = 100 x fraction of queries with rank <= K; Medr = the median of
the ranks (numpy median: the mean of the two middle ranks for an even count).
  caption -> image: query = a caption (column of s), candidates = the images, one correct.
  image -> caption: query = an image (row of s), candidates = the captions, its own correct.
"""

import numpy as np

from .coco_hdf5 import caption_to_streams
from .search import log_softmax
from .vocabulary import split_sentence

KS = (1, 5, 10)


def caption_streams(captions, vocabulary, max_words=20):
    """Caption strings -> (input_sentence, cont_sentence, target_sentence), each T x C float
    (T = max_words; input padded with 0, target with -1, as the training streams)."""
    index = {w: i for i, w in enumerate(vocabulary)}
    streams = [caption_to_streams(split_sentence(c), index, max_words, input_pad=0)
               for c in captions]
    return tuple(np.array([s[k] for s in streams], dtype=np.float64).T
                 for k in ("input_sentence", "cont_sentence", "target_sentence"))


def pair_log_likelihoods(stepper, features, streams):
    """B x D image features, (input, cont, target) T x C -> B x C log p(caption | image).

    ``stepper`` is a caffelite.lrcn.captioner.NetStepper over the word net; the net is run
    once over the B x C pairs (column b x C + c pairs image b with caption c)."""
    words, cont, target = streams
    b, c = features.shape[0], words.shape[1]
    net, dtype = stepper.net, stepper.net.dtype
    inputs = {stepper.word_input: np.tile(words, (1, b)).astype(dtype),
              stepper.cont_input: np.tile(cont, (1, b)).astype(dtype)}
    for name in stepper.static_inputs:
        inputs[name] = np.repeat(np.asarray(features, dtype), c, axis=0)
    for name in stepper.state_in:
        inputs[name] = np.zeros((1, b * c) + tuple(net.blobs[name].shape[2:]), dtype)
    logits = net.feed(**inputs).forward(blobs=[stepper.logits])[stepper.logits]
    logp = log_softmax(logits, axis=2)                      # T x BC x V
    tgt = np.tile(target, (1, b)).astype(np.int64)
    picked = np.take_along_axis(logp, np.maximum(tgt, 0)[:, :, None], axis=2)[:, :, 0]
    return np.where(tgt >= 0, picked, 0.0).sum(axis=0).reshape(b, c)


def score_matrix(captioner, image_paths, captions, image_batch=4, max_words=20):
    """-> I x C matrix of log p(caption | image) for a caffelite.lrcn.captioner.Captioner."""
    streams = caption_streams(captions, captioner.vocab[1:], max_words)
    steps = int(np.flatnonzero((streams[2] >= 0).any(axis=1)).max()) + 1
    streams = tuple(s[:steps] for s in streams)       # rows past every caption's end add 0
    rows = []
    for i in range(0, len(image_paths), image_batch):
        feats = captioner.features(captioner.load_images(image_paths[i:i + image_batch]))
        rows.append(pair_log_likelihoods(captioner.stepper, feats, streams))
    return np.concatenate(rows)


def first_correct_ranks(scores, correct):
    """Q x N scores (higher is better), Q x N bool correct (>= 1 per row) -> Q ranks (1-based)
    of each query's best correct candidate, ties pessimistic (module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if scores.shape != correct.shape or scores.ndim != 2:
        raise ValueError("scores %r and correct %r must be the same Q x N shape"
                         % (scores.shape, correct.shape))
    if not correct.any(axis=1).all():
        raise ValueError("every query needs at least one correct candidate")
    best = np.where(correct, scores, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((scores >= best) & ~correct).sum(axis=1)


def rank_summary(ranks, ks=KS):
    """Ranks -> {"R@K": 100 x fraction <= K for K in ks, "Medr": median rank}."""
    ranks = np.asarray(ranks)
    out = {"R@%d" % k: 100.0 * float(np.mean(ranks <= k)) for k in ks}
    out["Medr"] = float(np.median(ranks))
    return out


def retrieval_metrics(scores, caption_image, ks=KS):
    """I x C scores (s[i, c] = log p(c | i)), caption_image: C ints, the row of each caption's
    image -> {"caption->image", "image->caption", "image->caption centred": summary}
    (rank_summary; "centred": the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    caption_image = np.asarray(caption_image, dtype=np.int64)
    if scores.shape[1] != len(caption_image):
        raise ValueError("%d score columns but %d caption images"
                         % (scores.shape[1], len(caption_image)))
    correct = np.arange(scores.shape[0])[:, None] == caption_image[None, :]     # I x C
    return {"caption->image": rank_summary(first_correct_ranks(scores.T, correct.T), ks),
            "image->caption": rank_summary(first_correct_ranks(scores, correct), ks),
            "image->caption centred": rank_summary(
                first_correct_ranks(scores - scores.mean(axis=0), correct), ks)}
