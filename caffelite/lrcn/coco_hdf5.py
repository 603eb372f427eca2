"""COCO captions JSON + image folder -> LRCN's HDF5 caption-training layout.

Reproduces the behaviour of LRCN's ``examples/coco_caption/coco_to_hdf5_data.py``
(with its ``hdf5_sequence_generator.py``) in the "aligned" mode used for training.

Tokenization and vocabulary: caffelite/lrcn/vocabulary.py (LRCN's split_sentence; line 0
    of vocabulary.txt is "<unk>", then the training words with count >= min_count, default
    5). Words not in the vocabulary map to <unk> (id 1). ``vocab`` reuses an existing file
    (e.g. the train vocabulary for val); it must contain "<unk>".

Streams, one per caption, with max_words = T = 20, w_i = word ids (>= 1), n words
    input_sentence  = [0, w1, ..., wn, -1, ..., -1]     0 = <EOS> used as BOS
    target_sentence = [w1, ..., wn, 0, -1, ..., -1]     -1 = ignore label
    cont_sentence   = [0, 1, ..., 1, 0, ..., 0]         (n ones)
    stage_indicators= [1] * (n + 1) + [0] * pad
    hashed_image_path = [h] * T,  h = int(sha1(image_path).hexdigest(), 16) % 100000
    each padded to T (pad = T - (n + 1)) and truncated to its first T entries,
    so a caption of >= 20 words has no <EOS> target (LRCN does the same).
    Note: LRCN pads input_sentence with -1 as well (``--input-pad`` changes it).

Buffering and alignment
    (image, caption) pairs are listed image by image in the JSON "images" order,
    captions in "annotations" order. Images whose file is missing are skipped
    with a warning. If the number of pairs P is not a multiple of the buffer
    size N, randomly chosen pairs are appended until it is; then the pairs are
    shuffled (Python ``random.Random(seed)``, seed 3 as LRCN). Pair k goes to
    stream column k % N at time rows (k // N) * T ... + T - 1. The full sequence
    array is therefore (P/N * T, N), time-major, cut into chunk files of
    ``--chunk-length`` rows (LRCN: 100000) named batch_0.h5, batch_1.h5, ...

    Each chunk file holds (all float64 of shape (rows, N) unless noted):
        cont_sentence, input_sentence, target_sentence,
        stage_indicators, hashed_image_path,
        cont         -- LRCN's generic stream-start indicator (0 at t % T == 0, else 1)
        buffer_size  -- int64, shape (1,), value N

    Line k of ``image_list.with_dummy_labels.txt`` ("<path> <h>", h the hash
    above, which a Caffe ImageData layer reads as a dummy label) and of
    ``image_list.txt`` ("<path>") is the image of pair k, so reading images in
    batches of N lines lines up with reading HDF5 rows in batches of T.
    ``hdf5_chunk_list.txt`` lists the chunk files. Paths are absolute.

The command line is tools/coco_to_hdf5.py.
"""

import hashlib
import os
import random
import sys

import h5py
import numpy as np

from ..errors import CaffeliteError
from .coco_json import load_json, references
from .vocabulary import UNK, build_vocabulary, read_vocabulary, split_sentence

MAX_HASH = 100000

STREAM_NAMES = ("cont_sentence", "hashed_image_path", "input_sentence",
                "stage_indicators", "target_sentence")


def caption_to_streams(tokens, word_index, max_words=20, input_pad=-1):
    """Token list -> dict of the five per-caption streams (lists of length max_words).

    word_index maps vocabulary word -> line number; stream ids are line + 1.
    """
    unk = word_index[UNK]
    ids = [word_index.get(w, unk) + 1 for w in tokens]
    n = len(ids)
    pad = max(0, max_words - (n + 1))
    out = {
        "stage_indicators": [1] * (n + 1) + [0] * pad,
        "cont_sentence": [0] + [1] * n + [0] * pad,
        "input_sentence": [0] + ids + [input_pad] * pad,
        "target_sentence": ids + [0] + [-1] * pad,
    }
    return {k: v[:max_words] for k, v in out.items()}


def image_hash(path):
    """LRCN's dummy label: int(sha1(path)) % 100000."""
    return int(hashlib.sha1(path.encode("utf-8")).hexdigest(), 16) % MAX_HASH


def load_coco_pairs(captions_path, images_dir):
    """-> list of (absolute image path, caption string), JSON order; warns on missing files."""
    data = load_json(captions_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise CaffeliteError("%s: expected COCO captions JSON with 'images' and 'annotations' "
                             "lists" % captions_path)
    if not os.path.isdir(images_dir):
        raise CaffeliteError("%s: image folder not found" % images_dir)
    caps = references(data, captions_path)
    pairs, seen, missing = [], set(), 0
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise CaffeliteError("%s: images[%d] needs 'id' and a string 'file_name'" % (captions_path, i))
        if img["id"] in seen:
            raise CaffeliteError("%s: duplicate image id %r" % (captions_path, img["id"]))
        seen.add(img["id"])
        path = os.path.abspath(os.path.join(images_dir, img["file_name"]))
        if not os.path.isfile(path):
            missing += 1
            print("Warning (#%d): image not found: %s" % (missing, path), file=sys.stderr)
            continue
        if not caps.get(img["id"]):
            print("Warning: image with no captions: %s" % path, file=sys.stderr)
        for c in caps.get(img["id"], []):
            pairs.append((path, c))
    if not pairs:
        raise CaffeliteError("%s: no (image, caption) pairs with an existing image under %s"
                         % (captions_path, images_dir))
    return pairs


def align_and_shuffle(pairs, buffer_size, seed=3, shuffle=True):
    """Pad with random duplicates to a multiple of buffer_size, then shuffle (LRCN order)."""
    rng = random.Random(seed)
    pairs = list(pairs)
    remainder = len(pairs) % buffer_size
    if remainder:
        num = len(pairs)
        pairs += [pairs[rng.randint(0, num - 1)] for _ in range(buffer_size - remainder)]
    if shuffle:
        rng.shuffle(pairs)
    return pairs


def build_arrays(pairs, word_index, buffer_size, max_words=20, input_pad=-1):
    """Aligned pairs -> dict name -> float64 array (len(pairs)//N * T, N), time-major.

    Pair k lands in column k % N, rows (k // N) * T .. (k // N) * T + T - 1.
    """
    n_pairs = len(pairs)
    assert n_pairs % buffer_size == 0
    rows = n_pairs // buffer_size * max_words
    arrays = {name: np.zeros((rows, buffer_size)) for name in STREAM_NAMES}
    for k, (path, caption) in enumerate(pairs):
        streams = caption_to_streams(split_sentence(caption), word_index, max_words, input_pad)
        streams["hashed_image_path"] = [image_hash(path)] * max_words
        r0, col = (k // buffer_size) * max_words, k % buffer_size
        for name in STREAM_NAMES:
            arrays[name][r0:r0 + max_words, col] = streams[name]
    cont = np.ones((rows, buffer_size))
    cont[::max_words] = 0
    arrays["cont"] = cont
    return arrays


def convert(captions, images, out, vocab=None, buffer_size=100, max_words=20,
            min_count=5, chunk_length=100000, seed=3, shuffle=True, input_pad=-1):
    """Run the whole conversion; returns a summary dict. See module docstring."""
    if buffer_size < 1 or max_words < 2 or chunk_length < 1:
        raise CaffeliteError("buffer size, chunk length must be >= 1 and max words >= 2")
    if chunk_length % max_words:
        raise CaffeliteError("--chunk-length %d must be a multiple of --max-words %d"
                         % (chunk_length, max_words))
    pairs = load_coco_pairs(captions, images)
    if vocab is None:
        vocabulary = build_vocabulary([split_sentence(c) for _, c in pairs], min_count)
    else:
        vocabulary = read_vocabulary(vocab)
    word_index = {w: i for i, w in enumerate(vocabulary)}
    aligned = align_and_shuffle(pairs, buffer_size, seed, shuffle)
    arrays = build_arrays(aligned, word_index, buffer_size, max_words, input_pad)
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    filenames = []
    total_rows = arrays["cont"].shape[0]
    for i, start in enumerate(range(0, total_rows, chunk_length)):
        fn = os.path.join(out, "batch_%d.h5" % i)
        with h5py.File(fn, "w") as h5:
            for name, arr in arrays.items():
                h5.create_dataset(name, data=arr[start:start + chunk_length])
            h5.create_dataset("buffer_size", data=np.array([buffer_size], dtype=np.int64))
        filenames.append(fn)
    with open(os.path.join(out, "hdf5_chunk_list.txt"), "w") as f:
        f.writelines(fn + "\n" for fn in filenames)
    with open(os.path.join(out, "image_list.txt"), "w") as f:
        f.writelines(p + "\n" for p, _ in aligned)
    with open(os.path.join(out, "image_list.with_dummy_labels.txt"), "w") as f:
        f.writelines("%s %d\n" % (p, image_hash(p)) for p, _ in aligned)
    with open(os.path.join(out, "vocabulary.txt"), "w") as f:
        f.writelines(w + "\n" for w in vocabulary)
    n_trunc = sum(1 for _, c in pairs if len(split_sentence(c)) + 1 > max_words)
    return {"pairs": len(pairs), "aligned_pairs": len(aligned), "vocab_size": len(vocabulary),
            "chunks": len(filenames), "truncated": n_trunc, "rows": total_rows}
