"""Caption metrics: corpus BLEU-1..4 and CIDEr-D, with coco-caption's definitions.

``evaluate`` scores a results dict against a references dict with all five (BLEU-1..4,
CIDEr-D), as ``tools/evaluate_captions.py`` prints them.

Inputs everywhere are two dicts keyed by image id:

    candidates[id] = "one generated caption"           (exactly one per id)
    references[id] = ["ref caption 1", "ref caption 2", ...]   (>= 1 per id)

Tokenization (``tokenize``): lowercase, every non-alphanumeric character becomes
a space, split on whitespace ("A man's hat." -> ["a", "man", "s", "hat"]).
This stands in for coco-caption's PTB tokenizer (which also lowercases and
drops punctuation, but keeps clitics such as "'s" as one token).

BLEU (coco-caption ``bleu_scorer.py``, option "closest")
--------------------------------------------------------
For each image, candidate length c, n-gram counts of the candidate are clipped
by the maximum count of that n-gram in any single reference:
    correct_n = sum_g min(count_cand(g), max_r count_r(g)),
    guess_n   = max(0, c - n + 1).
The effective reference length r is the reference length closest to c (ties go
to the shorter reference). Corpus scores sum over images:
    C_n = sum correct_n,  G_n = sum guess_n,  c = sum c_i,  r = sum r_i
    BLEU-N = (prod_{n<=N} (C_n + 1e-15) / (G_n + 1e-9)) ** (1/N) * BP
    BP = exp(1 - r/c') if c' < 1 else 1, where c' = (c + 1e-15) / (r + 1e-9)
(the tiny/small constants are coco-caption's; a zero n-gram match therefore
gives a score near 0, not exactly 0).

CIDEr-D (coco-caption ``cider/cider_scorer.py``, df_mode "corpus")
----------------------------------------------------------------
Document frequency df(g) = number of images whose references contain n-gram g;
N = number of images. Each sentence becomes, per n in 1..4, a vector
    v_n(g) = tf(g) * (log N - log max(1, df(g)))
with tf the raw count. For candidate h and reference s:
    sim_n = sum_g min(v_n^h(g), v_n^s(g)) * v_n^s(g) / (|v_n^h| |v_n^s|)
            (no division when a norm is 0)
    sim_n *= exp(-(l_h - l_s)^2 / (2 * 6^2))
where l is coco-caption's length (the number of bigrams, i.e. words - 1 for a
non-empty sentence; reproduced as is). Then
    CIDEr-D(image) = 10 * mean_n( sum_s sim_n(h, s) ) / num_refs
and the corpus CIDEr-D is the mean over images.
"""

import math
import re
from collections import Counter

from ..errors import CaffeliteError

__all__ = ["tokenize", "corpus_bleu", "cider_d", "evaluate", "format_table"]

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def tokenize(sentence):
    """Lowercase, strip punctuation, split: str -> list[str]."""
    if not isinstance(sentence, str):
        raise TypeError("caption must be a string, got %r" % (sentence,))
    return _NON_ALNUM.sub(" ", sentence.lower()).split()


def _ngram_counts(words, n):
    """Counter over all k-grams (tuples), k = 1..n."""
    counts = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def _check_inputs(candidates, references):
    missing = [k for k in candidates if k not in references]
    if missing:
        raise KeyError("candidate ids without references: %r" % missing[:5])
    for k, refs in references.items():
        if k in candidates and (isinstance(refs, str) or len(refs) == 0):
            raise ValueError("references[%r] must be a non-empty list of strings" % (k,))
    if not candidates:
        raise ValueError("no candidates to score")


def corpus_bleu(candidates, references, n=4):
    """Corpus BLEU-1..n and per-image BLEU-1..n (coco-caption, "closest").

    Returns (scores, per_image): scores is a list of n floats (BLEU-1..BLEU-n);
    per_image maps id -> list of n floats computed the same way on that image
    alone.
    """
    _check_inputs(candidates, references)
    tiny, small = 1e-15, 1e-9
    total_correct = [0] * n
    total_guess = [0] * n
    total_c = 0
    total_r = 0
    per_image = {}
    for key in sorted(candidates, key=str):
        cand = tokenize(candidates[key])
        refs = [tokenize(r) for r in references[key]]
        c = len(cand)
        max_ref = Counter()
        for ref in refs:
            for g, cnt in _ngram_counts(ref, n).items():
                if cnt > max_ref[g]:
                    max_ref[g] = cnt
        r = min((abs(len(ref) - c), len(ref)) for ref in refs)[1]
        correct = [0] * n
        for g, cnt in _ngram_counts(cand, n).items():
            correct[len(g) - 1] += min(cnt, max_ref.get(g, 0))
        guess = [max(0, c - k + 1) for k in range(1, n + 1)]
        per_image[key] = _bleu_from_stats(correct, guess, c, r, n, tiny, small)
        total_c += c
        total_r += r
        for k in range(n):
            total_correct[k] += correct[k]
            total_guess[k] += guess[k]
    scores = _bleu_from_stats(total_correct, total_guess, total_c, total_r, n, tiny, small)
    return scores, per_image


def _bleu_from_stats(correct, guess, c, r, n, tiny, small):
    out = []
    prod = 1.0
    for k in range(n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        out.append(prod ** (1.0 / (k + 1)))
    ratio = (c + tiny) / (r + small)
    if ratio < 1:
        bp = math.exp(1 - 1 / ratio)
        out = [v * bp for v in out]
    return out


def _tfidf(counts, doc_freq, log_n, n):
    """counts -> (vecs[n], norms[n], length) as coco-caption's counts2vec."""
    vecs = [dict() for _ in range(n)]
    norms = [0.0] * n
    length = 0
    for g, tf in counts.items():
        k = len(g) - 1
        w = float(tf) * (log_n - math.log(max(1.0, doc_freq.get(g, 0))))
        vecs[k][g] = w
        norms[k] += w * w
        if k == 1:
            length += tf
    return vecs, [math.sqrt(v) for v in norms], length


def cider_d(candidates, references, n=4, sigma=6.0):
    """CIDEr-D. Returns (corpus_score, per_image dict id -> score)."""
    _check_inputs(candidates, references)
    keys = sorted(candidates, key=str)
    ref_counts = {k: [_ngram_counts(tokenize(r), n) for r in references[k]] for k in keys}
    doc_freq = Counter()
    for k in keys:
        seen = set()
        for c in ref_counts[k]:
            seen.update(c)
        doc_freq.update(seen)
    log_n = math.log(float(len(keys)))
    per_image = {}
    for k in keys:
        hv, hn, hl = _tfidf(_ngram_counts(tokenize(candidates[k]), n), doc_freq, log_n, n)
        total = [0.0] * n
        for rc in ref_counts[k]:
            rv, rn, rl = _tfidf(rc, doc_freq, log_n, n)
            penalty = math.exp(-((hl - rl) ** 2) / (2 * sigma ** 2))
            for i in range(n):
                val = sum(min(w, rv[i].get(g, 0.0)) * rv[i].get(g, 0.0)
                          for g, w in hv[i].items())
                if hn[i] != 0 and rn[i] != 0:
                    val /= hn[i] * rn[i]
                total[i] += val * penalty
        per_image[k] = 10.0 * (sum(total) / n) / len(ref_counts[k])
    corpus = sum(per_image.values()) / len(per_image)
    return corpus, per_image


def evaluate(results, references, results_path="results", captions_path="captions"):
    """{id: caption}, {id: [refs]} -> ordered dict of metric name -> score (BLEU-1..4, CIDEr-D);
    the paths name the inputs in the error for results without references."""
    missing = [k for k in results if k not in references]
    if missing:
        raise CaffeliteError("%s: %d image_id(s) have no reference captions in %s, e.g. %r"
                             % (results_path, len(missing), captions_path, missing[0]))
    bleu, _ = corpus_bleu(results, references)
    cider, _ = cider_d(results, references)
    out = {"BLEU-%d" % (i + 1): b for i, b in enumerate(bleu)}
    out["CIDEr-D"] = cider
    return out


def format_table(scores, num_images):
    """Scores dict -> the two-column text table evaluate_captions.py prints."""
    lines = ["%-8s %s" % ("metric", "score"), "-" * 16]
    lines += ["%-8s %.4f" % (k, v) for k, v in scores.items()]
    lines.append("(%d images)" % num_images)
    return "\n".join(lines)
