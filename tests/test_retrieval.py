"""Retrieval (LRCN Table 2): ranks, R@K and Medr on hand-computed cases, ties included, and the
batched caption scoring against a step-by-step teacher-forced decode."""

import numpy as np
import pytest

import caffelite as caffe
from caffelite.lrcn.captioner import NetStepper
from caffelite.lrcn.retrieval import (caption_streams, first_correct_ranks,
                                      pair_log_likelihoods, rank_summary, retrieval_metrics)
from caffelite.lrcn.search import log_softmax


def test_first_correct_ranks_ties_are_pessimistic():
    scores = [[0.5, 0.9, 0.5, 0.1],      # correct 0.5; 0.9 above, 0.5 ties -> rank 3
              [0.2, 0.2, 0.7, 0.7],      # two correct, tied with each other -> rank 1
              [1.0, 1.0, 1.0, 1.0]]      # constant scores -> the worst rank, 4
    correct = [[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0]]
    assert first_correct_ranks(scores, correct).tolist() == [3, 1, 4]


def test_rank_summary_recall_and_median():
    out = rank_summary([3, 1, 4])
    assert out == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "Medr": 3.0})
    assert rank_summary([1, 2, 7, 30], ks=(1, 5))["Medr"] == 4.5     # even count: mean of middle
    assert rank_summary([1, 2, 7, 30], ks=(1, 5))["R@5"] == 50.0


def test_retrieval_metrics_both_directions():
    s = [[-1, -5, -2, -3],
         [-4, -2, -1, -6],
         [-2, -3, -9, -2]]
    caption_image = [0, 0, 1, 2]
    m = retrieval_metrics(s, caption_image, ks=(1, 2))
    # caption -> image, per column: ranks 1, 3, 1, 1
    assert m["caption->image"] == pytest.approx({"R@1": 75.0, "R@2": 75.0, "Medr": 1.0})
    # image -> caption, per row: ranks 1, 1, 2 (image 2's caption ties caption 0)
    assert m["image->caption"] == pytest.approx({"R@1": 200 / 3, "R@2": 100.0, "Medr": 1.0})
    # centred: column means -7/3, -10/3, -4, -11/3 subtracted; image 0's row becomes
    # [4/3, -5/3, 2, 2/3] (caption 2, not its own 0 or 1, is top: rank 2), image 1's
    # [-5/3, 4/3, 3, -7/3] (rank 1), image 2's [1/3, 1/3, -5, 5/3] (rank 1)
    assert m["image->caption centred"] == pytest.approx({"R@1": 200 / 3, "R@2": 100.0,
                                                         "Medr": 1.0})


def test_rank_errors_are_clear():
    with pytest.raises(ValueError, match="at least one correct"):
        first_correct_ranks([[1.0, 2.0]], [[0, 0]])
    with pytest.raises(ValueError, match="same Q x N shape"):
        first_correct_ranks([[1.0, 2.0]], [[1]])
    with pytest.raises(ValueError, match="score columns"):
        retrieval_metrics(np.zeros((2, 3)), [0, 1])


def test_caption_streams_match_the_training_layout():
    words, cont, target = caption_streams(["A circle.", "a square"], ["<unk>", "a", "circle"],
                                          max_words=5)
    assert words[:, 0].tolist() == [0, 2, 3, 0, 0]          # <EOS> as start, input pad 0
    assert target[:, 0].tolist() == [2, 3, 0, -1, -1]
    assert cont[:, 0].tolist() == [0, 1, 1, 0, 0]
    assert target[:, 1].tolist() == [2, 1, 0, -1, -1]       # "square" is <unk> (id 1)


@pytest.mark.parametrize("stages", [[], ["unfactored"], ["unfactored", "1-layer"]])
def test_batched_scores_equal_teacher_forced_steps(stages):
    net = caffe.Net("prototxt/lrcn_deploy_word.prototxt", caffe.TEST, stages=stages)
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.normal(0, 0.3, b.data.shape)
    stepper = NetStepper(net)
    vocab = ["<unk>"] + ["w%d" % i for i in range(35)]
    streams = caption_streams(["w0 w1 w2", "w3", "w4 w0 w4 w0 w1"], vocab, max_words=8)
    feats = rng.normal(0, 1, (2, 128))
    got = pair_log_likelihoods(stepper, feats, streams)
    words, _, target = streams
    want = np.zeros((2, 3))
    for b in range(2):
        for c in range(3):
            state = stepper.initial_state([feats[b:b + 1]])
            for t in range(words.shape[0]):
                if target[t, c] < 0:
                    break
                logits, state = stepper(words[t:t + 1, c].astype(int), t, state)
                want[b, c] += log_softmax(logits)[0, int(target[t, c])]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
