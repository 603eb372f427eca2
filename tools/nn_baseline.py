#!/usr/bin/env python3
"""Nearest-neighbour caption baselines (LRCN Table 3, "1NN fc7" / "1NN fc8"): each val image
takes the captions of the training image nearest (cosine) in the trained model's
penultimate (pool3) or last (fc_image) image-feature layer; BLEU-1..4 averaged over them.

    python tools/nn_baseline.py --weights snapshots/lrcn_iter_5000.caffemodel

Rules: caffelite/lrcn/nearest_neighbour.py.
"""

import argparse
import json
import os
import sys

from caffelite.errors import CaffeliteError
from caffelite.lrcn.captioner import Captioner
from caffelite.lrcn.coco_json import load_references
from caffelite.lrcn.nearest_neighbour import cosine_nearest, image_features, neighbour_bleu

LAYERS = (("pool3", "penultimate, fc7's place"), ("fc_image", "last, fc8's place"))


def _images(captions, folder):
    with open(captions) as f:
        images = json.load(f)["images"]
    return [im["id"] for im in images], [os.path.join(folder, im["file_name"]) for im in images]


def main(argv=None):
    p = argparse.ArgumentParser(description="1-nearest-neighbour caption baselines (BLEU)")
    p.add_argument("--weights", required=True, help="trained LRCN .caffemodel (its CNN)")
    p.add_argument("--train-captions", default="data/shapes_captions/captions_train.json")
    p.add_argument("--captions", default="data/shapes_captions/captions_val.json")
    p.add_argument("--images", default="data/shapes_captions/images")
    p.add_argument("--stage", action="append", default=[], help="net stage of the weights")
    args = p.parse_args(argv)
    try:
        cap = Captioner(args.weights, stages=args.stage)
        train_ids, train_paths = _images(args.train_captions, args.images)
        val_ids, val_paths = _images(args.captions, args.images)
        blobs = [name for name, _ in LAYERS]
        train_f = image_features(cap, train_paths, blobs)
        val_f = image_features(cap, val_paths, blobs)
        train_refs, val_refs = load_references(args.train_captions), load_references(args.captions)
    except (CaffeliteError, OSError, KeyError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("| baseline (%d val images, cosine 1NN over %d train images) | BLEU-1 | BLEU-2 | "
          "BLEU-3 | BLEU-4 |\n|---|---|---|---|---|" % (len(val_ids), len(train_ids)))
    for name, where in LAYERS:
        nn = cosine_nearest(val_f[name], train_f[name])
        bleu, pairs = neighbour_bleu(nn, val_ids, val_refs, train_ids, train_refs)
        print("| 1NN %s (%s, %d-d; %d pairs) | " % (name, where, val_f[name].shape[1], pairs)
              + " | ".join("%.1f" % (100 * b) for b in bleu) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
