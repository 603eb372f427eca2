"""Nearest-neighbour caption baselines (LRCN paper, Table 3: "1NN fc7", "1NN fc8").

For each query (val) image, the training image whose CNN feature is nearest by cosine
similarity, cos(q, t) = q.t / (|q| |t|) (ties: the lowest training index), lends its
captions. The features are those of the captioning model's own image trunk: its penultimate
layer (``pool3``, flattened, 1024-d; the place of fc7) and its last (``fc_image``, 128-d; the
place of fc8). BLEU is averaged over the neighbour's captions: every (query image, neighbour
caption) pair is one candidate scored against the query's references, and corpus BLEU-1..4
is taken over all of those pairs.
"""

import numpy as np

from .metrics import corpus_bleu


def image_features(captioner, paths, blobs, batch_size=100):
    """-> {blob: N x D float64} of the image net's ``blobs`` (flattened per image)."""
    out = {b: [] for b in blobs}
    for i in range(0, len(paths), batch_size):
        images = captioner.load_images(paths[i:i + batch_size])
        got = captioner.image_net.feed(data=images).forward(blobs=list(blobs))
        for b in blobs:
            out[b].append(np.asarray(got[b], np.float64).reshape(len(got[b]), -1))
    return {b: np.concatenate(v) for b, v in out.items()}


def cosine_nearest(queries, base, batch_size=1000):
    """Q x D, N x D -> Q indices into ``base`` of the most cosine-similar row (argmax: ties
    go to the lowest index; an all-zero row has similarity 0 to everything)."""
    def unit(a):
        a = np.asarray(a, np.float64)
        n = np.linalg.norm(a, axis=1, keepdims=True)
        return a / np.where(n > 0, n, 1.0)
    q, b = unit(queries), unit(base)
    return np.concatenate([(q[i:i + batch_size] @ b.T).argmax(axis=1)
                           for i in range(0, len(q), batch_size)])


def neighbour_bleu(neighbours, query_ids, query_refs, base_ids, base_refs):
    """neighbours: Q indices into base_ids; refs: {image id: [captions]} -> (BLEU-1..4 list,
    number of scored pairs), each neighbour caption one candidate (module docstring)."""
    candidates, references = {}, {}
    for q, nb in zip(query_ids, neighbours):
        for k, caption in enumerate(base_refs[base_ids[nb]]):
            candidates[(q, k)] = caption
            references[(q, k)] = query_refs[q]
    bleu, _ = corpus_bleu(candidates, references)
    return bleu, len(candidates)
