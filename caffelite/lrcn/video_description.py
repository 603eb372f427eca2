"""LRCN video description (paper Table 5) on the toy CRF data of make_video_description.py.

The command line is tools/video_description.py (prepare / train / eval / all).

Three models, all sentence generators conditioned on the (subject, verb, object) output of
a visual recognizer ("CRF"), as in the paper's Sec. 6 / Table 5:
  (a) LSTM encoder-decoder, CRF max: an encoder LSTM reads the three one-hot components as
      a 3-step sequence (step 1: the subject block of the 23-d one-hot vector, others zero;
      step 2: verb; step 3: object); its final state (h_T, c_T, via expose_hidden) is the
      decoder LSTM's initial state (prototxt/video_description_encdec.prototxt).
  (b) decoder, CRF max: at every step the decoder LSTM's input is [word embedding, one-hot
      CRF max vector] (prototxt/video_description_decoder.prototxt, stage "crf_max").
  (c) decoder, CRF probabilities: the same with the CRF probability vectors (stage
      "crf_prob").
Each is trained by its solver (prototxt/video_description_{a,b,c}_solver.prototxt); test
sentences are generated greedily or with beam search (caffelite.lrcn.search, LSTM
state carried by expose_hidden) and scored with BLEU-4 (caffelite.lrcn.metrics, coco-caption's
definition) against the test references.

Data layout (``prepare``; data/video_description/h5_{train,test}/): LRCN's aligned stream
layout with T = 10 and N = 50 streams: (video, sentence) pair k -> column k % N, rows
(k // N) * T .. + T - 1; datasets input_sentence / target_sentence / cont_sentence (T-row
blocks as caffelite.lrcn.coco_hdf5, input pad 0), dec_cont (cont_sentence with a 1 at the
first step, so the decoder of (a) keeps the encoder's state), crf_max / crf_prob (rows x N x
23, the pair's vector repeated on the T rows), enc_input (rows x N x 23: rows 0..2 of each
block hold the subject / verb / object blocks of crf_max, the rest 0) and enc_cont (0, 1, 1,
then 0). Vocabulary: all training words (<unk> line 0; ids as caffelite.lrcn.vocabulary).
"""

import json
import os
import random

import h5py
import numpy as np

from .. import TEST, Net
from . import training
from .captioner import NetStepper
from .coco_hdf5 import caption_to_streams
from .coco_json import load_references
from .metrics import corpus_bleu
from .search import beam_search, greedy_search
from .vocabulary import build_vocabulary, decoder_words, split_sentence

DATA = "data/video_description"
T, N, BLOCKS = 10, 50, (5, 8, 10)
MODELS = {"a": ("encdec", "crf_max"), "b": ("decoder", "crf_max"), "c": ("decoder", "crf_prob")}


def _load_split(data, split):
    """-> (video ids, {"crf_max", "crf_prob": M x 23 float64}, COCO captions dict)."""
    with h5py.File(os.path.join(data, "video_description.h5"), "r") as f:
        g = f[split]
        vids = g["video_id"][:]
        feats = {k: g[k]["concat"][:].astype(np.float64) for k in ("crf_max", "crf_prob")}
    with open(os.path.join(data, "captions_%s.json" % split)) as f:
        coco = json.load(f)
    return vids, feats, coco


def encoder_sequence(onehot):
    """(M x 23) CRF max vectors -> (3 x M x 23): step s keeps only component s's block."""
    seq = np.zeros((3,) + onehot.shape)
    start = 0
    for s, k in enumerate(BLOCKS):
        seq[s, :, start:start + k] = onehot[:, start:start + k]
        start += k
    return seq


def prepare(data=DATA, seed=3):
    """Write h5_train/, h5_test/ (see module docstring); returns the vocabulary list."""
    _, _, coco = _load_split(data, "train")
    vocab = build_vocabulary([split_sentence(a["caption"]) for a in coco["annotations"]], 1)
    index = {w: i for i, w in enumerate(vocab)}
    for split in ("train", "test"):
        vids, feats, coco = _load_split(data, split)
        row_of = {int(v): i for i, v in enumerate(vids)}
        pairs = [(row_of[a["image_id"]], a["caption"]) for a in coco["annotations"]]
        rng = random.Random(seed)
        while len(pairs) % N:
            pairs.append(pairs[rng.randint(0, len(pairs) - 1)])
        rng.shuffle(pairs)
        rows = len(pairs) // N * T
        arr = {k: np.zeros((rows, N)) for k in ("input_sentence", "target_sentence",
                                                  "cont_sentence", "dec_cont", "enc_cont")}
        for k in ("crf_max", "crf_prob", "enc_input"):
            arr[k] = np.zeros((rows, N, 23))
        enc = encoder_sequence(feats["crf_max"])
        for k, (r, cap) in enumerate(pairs):
            r0, col = (k // N) * T, k % N
            st = caption_to_streams(split_sentence(cap), index, T, input_pad=0)
            for name in ("input_sentence", "target_sentence", "cont_sentence"):
                arr[name][r0:r0 + T, col] = st[name]
            arr["dec_cont"][r0:r0 + T, col] = st["cont_sentence"]
            arr["dec_cont"][r0, col] = 1
            arr["crf_max"][r0:r0 + T, col] = feats["crf_max"][r]
            arr["crf_prob"][r0:r0 + T, col] = feats["crf_prob"][r]
            arr["enc_input"][r0:r0 + 3, col] = enc[:, r]
            arr["enc_cont"][r0 + 1:r0 + 3, col] = 1
        out = os.path.abspath(os.path.join(data, "h5_" + split))
        os.makedirs(out, exist_ok=True)
        with h5py.File(os.path.join(out, "batch_0.h5"), "w") as f:
            for name, a in arr.items():
                f.create_dataset(name, data=a)
        with open(os.path.join(out, "hdf5_chunk_list.txt"), "w") as f:
            f.write(os.path.join(out, "batch_0.h5") + "\n")
    with open(os.path.join(data, "h5_train", "vocabulary.txt"), "w") as f:
        f.writelines(w + "\n" for w in vocab)
    return vocab


def train(model):
    """Run model (a), (b) or (c)'s solver; -> path of the final weights."""
    return training.train(solver_path(model))


def solver_path(model):
    """Model "a", "b" or "c" -> its solver prototxt."""
    return "prototxt/video_description_%s_solver.prototxt" % model


def generate(model, weights, data=DATA, method="greedy", beam_size=3):
    """Sentences for the test videos -> {video_id: sentence}."""
    kind, feature = MODELS[model]
    vids, feats, _ = _load_split(data, "test")
    vocab = decoder_words(os.path.join(data, "h5_train", "vocabulary.txt"))
    if kind == "decoder":
        net = Net("prototxt/video_description_decoder_deploy.prototxt", TEST, weights=weights)
        stepper = NetStepper(net, static_inputs=("crf",))
        state = stepper.initial_state([feats[feature]])
    else:
        path = "prototxt/video_description_encdec_deploy.prototxt"
        enc = Net(path, TEST, stages=["encode"], weights=weights)
        seq = encoder_sequence(feats["crf_max"])
        cont = np.ones(seq.shape[:2])
        cont[0] = 0
        zeros = np.zeros((1, seq.shape[1], enc.blobs["enc_h0"].shape[2]))
        out = enc.feed(enc_input=seq, enc_cont=cont, enc_h0=zeros, enc_c0=zeros).forward()
        net = Net(path, TEST, stages=["step"], weights=weights)
        stepper = NetStepper(net, static_inputs=(), first_cont=1.0)
        state = [out["enc_hT"][0].copy(), out["enc_cT"][0].copy()]
    if method == "beam":
        ids, _ = beam_search(stepper, state, T - 1, beam_size)
    else:
        ids, _ = greedy_search(stepper, state, T - 1)
    return {int(v): " ".join(vocab[i] for i in s) for v, s in zip(vids, ids)}


def bleu4(sentences, data=DATA):
    """{video_id: sentence} -> corpus BLEU-4 against captions_test.json."""
    return corpus_bleu(sentences, load_references(os.path.join(data, "captions_test.json")))[0][3]
