"""Captioning with a trained LRCN model: two deploy nets sharing the trained weights by layer
name (as LRCN's captioner).

  * the image net (``prototxt/lrcn_deploy_image.prototxt``): images (N x 3 x H x W, BGR,
    (pixel - mean) * scale as the training ImageData) -> image feature blob (N x D);
  * the word net (``prototxt/lrcn_deploy_word.prototxt``): one step, T = 1, of B streams.
    Its LSTM layers use ``expose_hidden``: every LSTM layer's last two bottoms are its initial
    state (h_0, c_0: 1 x B x H, fed as net inputs) and its last two tops the final state
    (h_T, c_T). The caller carries the state from step to step and, for beam search,
    reorders it by each surviving hypothesis' parent; nothing is recomputed.

Decoding is caffelite.lrcn.search (greedy / sample / beam); word ids are those of
caffelite.lrcn.vocabulary.decoder_words. The command line is tools/caption.py.
"""

from collections import Counter

import numpy as np

from .. import TEST, Net
from ..data.images import read_image as load_image
from .coco_json import load_json, references
from .search import beam_search, greedy_search, sample_search
from .vocabulary import decoder_words


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
        out = self.net.feed(**inputs).forward(blobs=[self.logits] + self.state_out)
        new = state[:ns] + [out[name][0].copy() for name in self.state_out]
        return out[self.logits].reshape(b, -1).astype(np.float64), new


class Captioner:
    """Image net + word net sharing one weights file; see the module docstring. ``stages``
    picks the variant of prototxt/lrcn.prototxt the weights come from (e.g. ["unfactored"])."""

    def __init__(self, weights, image_net="prototxt/lrcn_deploy_image.prototxt",
                 word_net="prototxt/lrcn_deploy_word.prototxt",
                 vocab="data/shapes_captions/h5_train/vocabulary.txt", mean=128.0,
                 scale=0.0078125, feature_blob="fc_image", stages=()):
        self.image_net = Net(image_net, TEST, weights=weights, stages=list(stages))
        self.word_net = Net(word_net, TEST, weights=weights, stages=list(stages))
        self.stepper = NetStepper(self.word_net)
        self.vocab = decoder_words(vocab)
        self.mean, self.scale, self.feature_blob = mean, scale, feature_blob

    def load_images(self, paths):
        _, c, h, w = self.image_net.blobs["data"].shape
        imgs = np.stack([load_image(p, c == 3, h, w) for p in paths]).astype(np.float32)
        return (imgs - self.mean) * self.scale

    def features(self, images):
        out = self.image_net.feed(data=images).forward(blobs=[self.feature_blob])
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
    """Model-free reference points: [(caption, 0.0)] * num; ``kind`` "most-frequent" (the most
    frequent training caption) or "random-train" (the first caption of a random training
    image, numpy Generator seeded by ``seed``)."""
    data = load_json(train_captions)
    if kind == "most-frequent":
        best = Counter(a["caption"] for a in data["annotations"]).most_common(1)[0][0]
        return [(best, 0.0)] * num
    rng = np.random.default_rng(seed)
    by_image = references(data, train_captions)
    keys = sorted(by_image)
    return [(by_image[keys[i]][0], 0.0) for i in rng.integers(0, len(keys), num)]
