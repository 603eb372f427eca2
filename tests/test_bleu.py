"""BLEU / CIDEr-D against hand-computed values (coco-caption definitions)."""

import json
import math

import pytest

from caffelite.lrcn.metrics import corpus_bleu, cider_d, tokenize
from tools import evaluate_captions

TINY, SMALL = 1e-15, 1e-9


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("A Red circle, above the SQUARE.") == ["a", "red", "circle", "above", "the", "square"]


def test_perfect_match_is_one():
    scores, per = corpus_bleu({1: "a red circle above a blue square"},
                              {1: ["a red circle above a blue square", "something else"]})
    for s in scores:
        assert s == pytest.approx(1.0, abs=1e-9)
    assert per[1] == pytest.approx(scores)


def test_partial_overlap_by_hand():
    # candidate: the cat sat on the mat  (6 words)
    # ref1: the cat is on the mat ; ref2: a cat sat on a mat  (both 6 words)
    # 1-grams: the(2, ref1 has 2) cat sat on mat -> 6/6
    # 2-grams: the cat | cat sat | sat on | on the | the mat -> all in ref1 or ref2 -> 5/5
    # 3-grams: the cat sat(no) cat sat on(ref2) sat on the(no) on the mat(ref1) -> 2/4
    # 4-grams: the cat sat on, cat sat on the, sat on the mat -> 0/3
    # closest ref length 6 = candidate length -> BP = 1
    scores, _ = corpus_bleu({0: "The cat sat on the mat."},
                            {0: ["the cat is on the mat", "a cat sat on a mat"]})
    p = [(6 + TINY) / (6 + SMALL), (5 + TINY) / (5 + SMALL), (2 + TINY) / (4 + SMALL), TINY / (3 + SMALL)]
    assert scores[0] == pytest.approx(1.0, rel=1e-9)
    assert scores[1] == pytest.approx(1.0, rel=1e-9)
    assert scores[2] == pytest.approx(0.5 ** (1 / 3), rel=1e-9)  # 0.7937
    assert scores[3] == pytest.approx((p[0] * p[1] * p[2] * p[3]) ** 0.25, rel=1e-9)
    assert scores[3] < 2e-4  # coco-caption's smoothing: near zero, not zero


def test_clipping_of_repeated_words():
    # candidate "the the the the" vs ref "the cat": unigram 'the' clipped to 1 -> 1/4
    # ref len 2 < cand len 4 -> no brevity penalty
    scores, _ = corpus_bleu({0: "the the the the"}, {0: ["the cat"]})
    assert scores[0] == pytest.approx(0.25, rel=1e-9)


def test_brevity_penalty_uses_closest_reference_length():
    # candidate has 5 words; refs have 3 and 6 words -> closest is 6 (|6-5|=1 < |3-5|=2)
    # all unigrams of the candidate appear in the 6-word ref -> p1 = 1
    # BP = exp(1 - 6/5) = exp(-0.2)   ("shortest" would give BP = 1, "average" exp(1-4.5/5))
    cand = "a b c d e"
    refs = ["x y z", "a b c d e f"]
    scores, _ = corpus_bleu({0: cand}, {0: refs})
    assert scores[0] == pytest.approx(math.exp(-0.2), rel=1e-9)


def test_brevity_tie_goes_to_shorter_reference():
    # candidate 4 words, refs 3 and 5 words: tie -> reflen 3 -> no penalty
    scores, _ = corpus_bleu({0: "a b c d"}, {0: ["a b c", "a b c d e"]})
    assert scores[0] == pytest.approx(1.0, rel=1e-9)


def test_corpus_bleu_sums_statistics_not_averages():
    # img1: "a b" vs ref "a b" -> correct1 2/2; img2: "c d e f" vs ref "c x y z" -> 1/4
    # corpus BLEU-1 = 3/6 = 0.5 (mean of per-image values would be 0.625); BP: c=6, r=6
    scores, per = corpus_bleu({1: "a b", 2: "c d e f"}, {1: ["a b"], 2: ["c x y z"]})
    assert scores[0] == pytest.approx(0.5, rel=1e-9)
    assert per[1][0] == pytest.approx(1.0)
    assert per[2][0] == pytest.approx(0.25)


def test_cider_identical_beats_unrelated():
    refs = {1: ["a red circle above a blue square", "a red circle over a blue square"],
            2: ["a green triangle on the left", "a small green triangle"],
            3: ["two yellow squares", "a yellow square and a yellow square"]}
    good = {1: "a red circle above a blue square", 2: "a green triangle on the left",
            3: "two yellow squares"}
    bad = {1: "two yellow squares", 2: "a red circle above a blue square", 3: "a green triangle"}
    g, gper = cider_d(good, refs)
    b, bper = cider_d(bad, refs)
    assert g > b
    for k in refs:
        assert gper[k] > bper[k]


def test_cider_hand_computed():
    # Two images -> N = 2, log N = log 2. Every n-gram occurs in the refs of one image only,
    # so every tf-idf weight is w = tf * (log 2 - log 1).
    # img 2: cand "d e" == ref "d e": n=1 sim 1, n=2 sim 1, n=3,4: no n-grams -> 0
    #        -> 10 * (1 + 1 + 0 + 0) / 4 / 1 ref = 5.0
    # img 1: cand "a b", ref "a b c":
    #   n=1: dot 2w^2 / (sqrt2 w * sqrt3 w) = 2/sqrt6
    #   n=2: dot w^2 / (w * sqrt2 w) = 1/sqrt2
    #   n=3,4: candidate empty -> 0
    #   lengths (coco-caption counts bigrams): 1 vs 2 -> penalty exp(-1/72)
    #   -> 10 * exp(-1/72) * (2/sqrt6 + 1/sqrt2) / 4
    corpus, per = cider_d({1: "a b", 2: "d e"}, {1: ["a b c"], 2: ["d e"]})
    exp1 = 10 * math.exp(-1 / 72) * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4
    assert per[2] == pytest.approx(5.0, rel=1e-12)
    assert per[1] == pytest.approx(exp1, rel=1e-12)
    assert corpus == pytest.approx((exp1 + 5.0) / 2, rel=1e-12)


def test_cider_ngrams_in_every_image_carry_no_weight():
    # 'a' occurs in the refs of both images -> idf weight log2 - log2 = 0.
    # cand "a x" vs ref "a b": unigram dot = 0*0 (a) -> 0; bigrams differ -> 0 => score 0
    corpus, per = cider_d({1: "a x", 2: "a c"}, {1: ["a b"], 2: ["a c"]})
    assert per[1] == pytest.approx(0.0, abs=1e-12)
    assert per[2] == pytest.approx(5.0, rel=1e-12)


def test_evaluate_captions_cli(tmp_path, capsys):
    caps = {"images": [{"id": 1, "file_name": "x.png", "width": 4, "height": 4}],
            "annotations": [{"id": 1, "image_id": 1, "caption": "a red circle"}]}
    (tmp_path / "c.json").write_text(json.dumps(caps))
    (tmp_path / "r.json").write_text(json.dumps([{"image_id": 1, "caption": "A red circle."}]))
    rc = evaluate_captions.main(["--results", str(tmp_path / "r.json"),
                                 "--captions", str(tmp_path / "c.json"),
                                 "--json-out", str(tmp_path / "s.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "BLEU-4" in out and "CIDEr-D" in out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["BLEU-1"] == pytest.approx(1.0)
    # results for an unknown image -> clear error, non-zero exit
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 7, "caption": "x"}]))
    rc = evaluate_captions.main(["--results", str(tmp_path / "bad.json"),
                                 "--captions", str(tmp_path / "c.json")])
    assert rc != 0
    assert "bad.json" in capsys.readouterr().err
