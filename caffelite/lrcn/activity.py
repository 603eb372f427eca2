"""LRCN activity recognition (paper Table 1): train, evaluate with clip averaging, fuse.

The command line is tools/activity.py (train / eval / table / all).

Models (prototxt/activity_{singleframe,lstm,lstm_fc7}.prototxt, stage "rgb" or "flow"):
  singleframe: a CNN on one frame; at test every frame of a video is one "clip" of length 1.
  lstm (LRCN-fc6): the CNN on each frame of a 16-frame clip, an LSTM over the clip's fc6
               features; at test every clip with stride 8.
  lstm_fc7 (LRCN-fc7): the same with a second fully connected layer fc7 before the LSTM.
Averaging (``video_scores``): the net's test output "probs" is T x N x C (time, clip, class);
a clip's score is the mean over its T steps, a video's score the mean over its clips (the
VideoData layer's 4th top gives each column's video). Fusion (``fuse``): the weighted mean
(1 - w) * p_rgb + w * p_flow of the per-video probabilities, w = 1/2 or 2/3 as in the paper.
Accuracy: fraction of videos whose argmax is the label.
"""

import math
import os

import numpy as np

from .. import TEST, Net
from . import training

MODELS = ("singleframe", "lstm", "lstm_fc7")
MODEL_NAMES = {"singleframe": "Single frame", "lstm": "LRCN-fc6", "lstm_fc7": "LRCN-fc7"}
MODALITIES = ("rgb", "flow")
RESULTS = "data/activity/results"


def clip_scores(probs):
    """T x N x C per-step probabilities -> N x C per-clip scores (mean over the T steps)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise ValueError("probs must be T x N x C, got shape %r" % (probs.shape,))
    return probs.mean(axis=0)


def video_scores(scores, video_index, num_videos):
    """Mean of the clip scores (M x C) of each video (video_index: M ints in 0..V-1)
    -> V x C; a video with no clip is an error."""
    scores = np.asarray(scores, dtype=np.float64)
    video_index = np.asarray(video_index).astype(np.int64)
    if len(video_index) != len(scores):
        raise ValueError("%d clip scores but %d video indices" % (len(scores), len(video_index)))
    sums = np.zeros((num_videos, scores.shape[1]))
    np.add.at(sums, video_index, scores)
    counts = np.bincount(video_index, minlength=num_videos)
    if (counts == 0).any():
        raise ValueError("videos without clips: %s" % np.flatnonzero(counts == 0)[:10].tolist())
    return sums / counts[:, None]


def fuse(p_rgb, p_flow, flow_weight):
    """Late fusion: (1 - w) * p_rgb + w * p_flow."""
    return (1.0 - flow_weight) * np.asarray(p_rgb) + flow_weight * np.asarray(p_flow)


def accuracy(scores, labels):
    """Fraction of rows whose argmax is the label."""
    return float(np.mean(np.argmax(scores, axis=1) == np.asarray(labels)))


def confusion_matrix(scores, labels, num_classes=None):
    """M[i, j] = number of videos of class i (row: true label) predicted as j (argmax)."""
    labels = np.asarray(labels).astype(np.int64)
    pred = np.argmax(np.asarray(scores), axis=1)
    c = num_classes or int(max(labels.max(), pred.max()) + 1)
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (labels, pred), 1)
    return m


def _paths(model, modality):
    solver = "prototxt/activity_%s_%s_solver.prototxt" % (model, modality)
    return solver, "prototxt/activity_%s.prototxt" % model


def train(model, modality, max_iter=None):
    """Run the model's solver (Caffe-style log on stderr), on the budget ``max_iter`` if
    given (caffelite.lrcn.training); -> path of the final weights."""
    return training.train(_paths(model, modality)[0], max_iter)


def evaluate(model, modality, weights=None, max_iter=None):
    """Per-video probabilities on the test list -> (V x C scores, V labels); the default
    weights are those ``train`` leaves (on the budget ``max_iter``)."""
    solver_path, net_path = _paths(model, modality)
    if weights is None:
        weights = training.final_weights(solver_path, max_iter)
    net = Net(net_path, TEST, stages=[modality], weights=weights)
    data = net.layers[0]
    total = int(data.clips_per_epoch)
    n = net.blobs["video_index"].shape[0]
    all_scores, all_index = [], []
    for _ in range(math.ceil(total / n)):
        out = net.forward(blobs=["probs", "video_index"])
        all_scores.append(clip_scores(out["probs"]))
        all_index.append(out["video_index"].astype(np.int64).copy())
    scores = np.concatenate(all_scores)[:total]          # the last batch wraps around
    index = np.concatenate(all_index)[:total]
    src = net.param.layer[0].video_data_param.source
    labels = np.array([int(l.split()[-1]) for l in open(src) if l.strip()])
    return video_scores(scores, index, len(labels)), labels


def table(results=RESULTS):
    """Table 1 rows from the saved per-video scores; -> list of (name, {column: acc})."""
    def load(model, modality):
        path = os.path.join(results, "%s_%s.npz" % (model, modality))
        if not os.path.exists(path):
            return None, None
        z = np.load(path)
        return z["scores"], z["labels"]
    rows = []
    for model in MODELS:
        rgb, lab = load(model, "rgb")
        flow, lab2 = load(model, "flow")
        row = {}
        if rgb is not None:
            row["RGB"] = accuracy(rgb, lab)
        if flow is not None:
            row["Flow"] = accuracy(flow, lab2)
        if rgb is not None and flow is not None:
            if not np.array_equal(lab, lab2):
                raise ValueError("RGB and flow test lists disagree on the labels")
            row["1/2-1/2"] = accuracy(fuse(rgb, flow, 0.5), lab)
            row["1/3-2/3"] = accuracy(fuse(rgb, flow, 2.0 / 3.0), lab)
        rows.append((MODEL_NAMES[model], row))
    return rows


def format_table(rows):
    """Table 1 rows -> a Markdown table (accuracies in %, "-" where a run is missing)."""
    cols = ["RGB", "Flow", "1/2-1/2", "1/3-2/3"]
    lines = ["| Model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, row in rows:
        lines.append("| %s | " % name + " | ".join("%.1f%%" % (100 * row[c]) if c in row else "-"
                                                   for c in cols) + " |")
    return "\n".join(lines)
