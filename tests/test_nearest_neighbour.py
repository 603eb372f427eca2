"""Nearest-neighbour caption baselines (LRCN Table 3): cosine 1NN with its tie rule, and BLEU
averaged over the neighbour's captions (one candidate per (query, neighbour caption) pair)."""

import numpy as np
import pytest

from caffelite.lrcn.metrics import corpus_bleu
from caffelite.lrcn.nearest_neighbour import cosine_nearest, neighbour_bleu


def test_cosine_nearest_ignores_length_and_breaks_ties_by_lowest_index():
    base = np.array([[1.0, 0.0], [0.0, 5.0], [0.0, 1.0], [1.0, 1.0]])
    queries = np.array([[10.0, 0.1],      # nearest in angle: row 0, not the longer rows
                        [0.0, 0.2],       # rows 1 and 2 tie (same direction): lowest, 1
                        [3.0, 3.1],       # row 3
                        [0.0, 0.0]])      # zero vector: every similarity 0 -> row 0
    assert cosine_nearest(queries, base, batch_size=3).tolist() == [0, 1, 3, 0]


def test_neighbour_bleu_scores_every_neighbour_caption():
    query_refs = {10: ["a red circle"], 11: ["a blue square above a circle"]}
    base_refs = {1: ["a red circle", "a circle"], 2: ["a blue square", "two shapes", "a square"]}
    bleu, pairs = neighbour_bleu([0, 1], [10, 11], query_refs, [1, 2], base_refs)
    assert pairs == 5
    cands = {(10, 0): "a red circle", (10, 1): "a circle", (11, 0): "a blue square",
             (11, 1): "two shapes", (11, 2): "a square"}
    refs = {k: query_refs[k[0]] for k in cands}
    assert bleu == pytest.approx(corpus_bleu(cands, refs)[0])
    # a neighbour whose captions are the query's references scores 1 on every n-gram order
    same = ["a red circle above a blue square"]
    perfect, _ = neighbour_bleu([0], [10], {10: same}, [1], {1: same})
    assert perfect == pytest.approx([1.0] * 4, abs=1e-6)
