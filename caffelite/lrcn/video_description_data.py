"""Seeded toy version of LRCN's video-description (TACoS-style) setting.

Each video has a true (subject, verb, object) triple from small vocabularies
(5 subjects, 8 verbs, 10 objects). A simulated visual recognizer (the paper's
CRF) gives, per component with K classes:

    crf_prob : softmax(beta * onehot(true) + sigma * z),  z ~ N(0, I_K)
               a noisy distribution; the true class keeps mass even when it
               is not the argmax
    crf_max  : onehot(argmax(crf_prob))  -- the "CRF max" input: usually the
               true class, a wrong one-hot for some fraction of videos

(defaults beta = 2.5, sigma = 1.0). Each video gets 1-3 distinct sentences
generated from the TRUE triple with templates such as
"the man cuts the cucumber", "a chef is washing a carrot",
"the woman takes out an onion".

Outputs under ``out``:
    video_description.h5, one group per split ("train", "test"):
        video_id              int64   (N,)
        true_triple           int32   (N, 3)   [subject, verb, object] indices
        crf_max/subject       float32 (N, 5)    one-hot
        crf_max/verb          float32 (N, 8)
        crf_max/object        float32 (N, 10)
        crf_max/concat        float32 (N, 23)   [subject | verb | object]
        crf_prob/{subject,verb,object,concat}   same shapes, rows sum to 1
                                                 per component
      root attributes: subjects, verbs, objects (JSON lists of names)
    captions_train.json, captions_test.json   COCO captions format; the
        "images" entries are videos {"id", "file_name": "video_00000", ...}
    vocabulary.json   {"subjects": [...], "verbs": [...], "objects": [...]}
"""

import json
import os

import h5py
import numpy as np

SUBJECTS = ["person", "man", "woman", "chef", "child"]
# verb: (third person singular, -ing form); particle goes after the verb
VERBS = [("cut", "cuts", "cutting"), ("wash", "washes", "washing"),
         ("peel", "peels", "peeling"), ("take out", "takes out", "taking out"),
         ("put away", "puts away", "putting away"), ("open", "opens", "opening"),
         ("rinse", "rinses", "rinsing"), ("slice", "slices", "slicing")]
OBJECTS = ["cucumber", "carrot", "onion", "orange", "lemon", "bread", "knife",
           "plate", "bowl", "pan"]
TEMPLATES = ["the {s} {v3} the {o}", "{a_s} {v3} {a_o}", "the {s} is {ving} the {o}",
             "{a_s} is {ving} {a_o}", "the {s} {v3} {a_o}"]
COMPONENTS = (("subject", SUBJECTS), ("verb", VERBS), ("object", OBJECTS))


def _article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def sentence(triple, template):
    """(s, v, o) indices + template string -> sentence."""
    s, v, o = SUBJECTS[triple[0]], VERBS[triple[1]], OBJECTS[triple[2]]
    return template.format(s=s, v3=v[1], ving=v[2], o=o, a_s=_article(s), a_o=_article(o))


def simulate_crf(true_idx, k, rng, beta=2.5, sigma=1.0):
    """True indices (N,) -> (crf_prob (N, k), crf_max (N, k)) float32."""
    logits = beta * np.eye(k)[true_idx] + sigma * rng.standard_normal((len(true_idx), k))
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    mx = np.eye(k)[prob.argmax(axis=1)]
    return prob.astype(np.float32), mx.astype(np.float32)


def make_split(rng, n, first_id, first_ann, beta, sigma):
    """-> (dict of arrays, coco dict) for n videos."""
    triples = np.stack([rng.integers(0, len(SUBJECTS), n), rng.integers(0, len(VERBS), n),
                        rng.integers(0, len(OBJECTS), n)], axis=1).astype(np.int32)
    arrays = {"video_id": np.arange(first_id, first_id + n, dtype=np.int64), "true_triple": triples}
    probs, maxes = [], []
    for c, (name, vocab) in enumerate(COMPONENTS):
        p, m = simulate_crf(triples[:, c], len(vocab), rng, beta, sigma)
        arrays["crf_prob/" + name], arrays["crf_max/" + name] = p, m
        probs.append(p)
        maxes.append(m)
    arrays["crf_prob/concat"] = np.concatenate(probs, axis=1)
    arrays["crf_max/concat"] = np.concatenate(maxes, axis=1)
    images, anns, ann_id = [], [], first_ann
    for i in range(n):
        vid = first_id + i
        images.append({"id": vid, "file_name": "video_%05d" % vid, "width": 0, "height": 0})
        k = int(rng.integers(1, 4))
        for t in rng.choice(len(TEMPLATES), size=k, replace=False):
            anns.append({"id": ann_id, "image_id": vid, "caption": sentence(triples[i], TEMPLATES[int(t)])})
            ann_id += 1
    return arrays, {"images": images, "annotations": anns}


def generate(out, num_train=500, num_test=100, seed=0, beta=2.5, sigma=1.0):
    """Write the files described in the module docstring; returns {split: arrays}."""
    if num_train < 1 or num_test < 0 or sigma < 0:
        raise ValueError("need --num-train >= 1, --num-test >= 0, --sigma >= 0")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    result, next_id, next_ann = {}, 0, 0
    with h5py.File(os.path.join(out, "video_description.h5"), "w") as h5:
        h5.attrs["subjects"] = json.dumps(SUBJECTS)
        h5.attrs["verbs"] = json.dumps([v[0] for v in VERBS])
        h5.attrs["objects"] = json.dumps(OBJECTS)
        for split, n in (("train", num_train), ("test", num_test)):
            arrays, coco = make_split(rng, n, next_id, next_ann, beta, sigma)
            next_id += n
            next_ann += len(coco["annotations"])
            g = h5.create_group(split)
            for name, arr in arrays.items():
                g.create_dataset(name, data=arr)
            with open(os.path.join(out, "captions_%s.json" % split), "w") as f:
                json.dump(coco, f, indent=0)
            result[split] = arrays
    with open(os.path.join(out, "vocabulary.json"), "w") as f:
        json.dump({"subjects": SUBJECTS, "verbs": [v[0] for v in VERBS], "objects": OBJECTS}, f, indent=1)
    return result
