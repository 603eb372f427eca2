"""The LRCN captioning data the shipped prototxts read (``prepare``; the command line is
tools/prepare_lrcn_data.py, which writes data/shapes_captions/ and skips it if present).

Steps (each a pure function of the seeds, so every clone gets the same bytes):
  1. ``caffelite.lrcn.shapes_captions``: the colored-shapes images + COCO captions JSON
     (``images/``, ``captions_train.json``, ``captions_val.json``, ``objects_*.json``).
  2. ``caffelite.lrcn.coco_hdf5`` on each split, with LRCN's aligned layout, T = 20 words,
     buffer size N = ``--buffer-size`` (the number of parallel streams = the ImageData
     batch size of ``prototxt/lrcn.prototxt``), input padding 0 (our Embed rejects -1;
     padded steps have cont 0 and target -1, so the pad value never reaches the loss):
        h5_train/ (vocabulary built from train, min count 5)
        h5_val/   (train vocabulary reused)
     each with hdf5_chunk_list.txt, image_list.with_dummy_labels.txt, vocabulary.txt.

Line k of image_list.with_dummy_labels.txt pairs with stream column k % N of HDF5 rows
(k // N) * T .. + T - 1, so an ImageData layer with batch_size N and an HDF5Data layer with
batch_size T (neither shuffling) stay aligned batch after batch, across epochs.

The list files hold absolute paths; if the folder was moved (listed files missing) or the
settings changed, the data is rebuilt. ``force`` rebuilds unconditionally.
"""

import json
import os

from . import coco_hdf5, shapes_captions

DEFAULTS = dict(num_train=5000, num_val=500, size=64, seed=0, buffer_size=50, max_words=20,
                min_count=5, hdf5_seed=3)
STAMP = "prepare_lrcn_data.json"


def _lists_ok(out):
    """True when every list file exists and names files that exist."""
    for split in ("train", "val"):
        d = os.path.join(out, "h5_" + split)
        for name in ("hdf5_chunk_list.txt", "image_list.with_dummy_labels.txt"):
            path = os.path.join(d, name)
            if not os.path.isfile(path):
                return False
            with open(path) as f:
                lines = [l.split()[0] for l in f if l.strip()]
            if not lines or not os.path.isfile(lines[0]) or not os.path.isfile(lines[-1]):
                return False
    return True


def prepare(out, force=False, verbose=True, **settings):
    """Build (or keep) the dataset under ``out``; returns a summary dict."""
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in settings.items() if v is not None})
    stamp_path = os.path.join(out, STAMP)
    if not force and os.path.isfile(stamp_path) and _lists_ok(out):
        with open(stamp_path) as f:
            stamp = json.load(f)
        if stamp.get("settings") == cfg:
            if verbose:
                print("%s: up to date (use --force to rebuild)" % out)
            return stamp
    log = print if verbose else (lambda *a, **k: None)
    have_images = (os.path.isfile(stamp_path) and not force
                   and json.load(open(stamp_path)).get("image_settings")
                   == {k: cfg[k] for k in ("num_train", "num_val", "size", "seed")})
    if not have_images:
        log("generating shapes captions: %d train / %d val images of %dx%d (seed %d)"
            % (cfg["num_train"], cfg["num_val"], cfg["size"], cfg["size"], cfg["seed"]))
        shapes_captions.generate(out, cfg["num_train"], cfg["num_val"], cfg["size"],
                                      cfg["seed"])
    images = os.path.join(out, "images")
    summary = {"settings": cfg,
               "image_settings": {k: cfg[k] for k in ("num_train", "num_val", "size", "seed")}}
    common = dict(buffer_size=cfg["buffer_size"], max_words=cfg["max_words"],
                  min_count=cfg["min_count"], seed=cfg["hdf5_seed"], input_pad=0)
    train_dir = os.path.join(out, "h5_train")
    summary["train"] = coco_hdf5.convert(os.path.join(out, "captions_train.json"), images,
                                            train_dir, **common)
    log("train: %(pairs)d captions (%(aligned_pairs)d aligned), vocabulary %(vocab_size)d"
        % summary["train"])
    summary["val"] = coco_hdf5.convert(os.path.join(out, "captions_val.json"), images,
                                          os.path.join(out, "h5_val"),
                                          vocab=os.path.join(train_dir, "vocabulary.txt"),
                                          **common)
    log("val: %(pairs)d captions (%(aligned_pairs)d aligned)" % summary["val"])
    with open(stamp_path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary
