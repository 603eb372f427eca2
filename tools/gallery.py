#!/usr/bin/env python3
"""Pictures of LRCN results (matplotlib: pip install -e '.[plot]').

    # val images with a reference and the model's greedy and beam captions
    python tools/gallery.py captions --weights snapshots/lrcn_iter_5000.caffemodel \\
        --out docs/gallery_captions.png
    # activity recognition: confusion matrices of single frame vs LRCN (tools/activity.py eval)
    python tools/gallery.py confusion --modality rgb --out docs/confusion_rgb.png

Drawing: caffelite/lrcn/gallery.py.
"""

import argparse
import json
import os
import sys

import numpy as np

from caffelite.errors import CaffeliteError
from caffelite.lrcn.activity import MODEL_NAMES, RESULTS, accuracy, confusion_matrix
from caffelite.lrcn.captioner import Captioner
from caffelite.lrcn.coco_json import load_references
from caffelite.lrcn.gallery import caption_gallery, confusion_figure


def captions(args):
    with open(args.captions) as f:
        images = json.load(f)["images"][args.first:args.first + args.num]
    paths = [os.path.join(args.images, im["file_name"]) for im in images]
    refs = load_references(args.captions)
    cap = Captioner(args.weights, stages=args.stage)
    generated = {
        "greedy": [c for c, _ in cap.caption_files(paths, method="greedy")],
        "beam %d" % args.beam_size: [c for c, _ in cap.caption_files(
            paths, method="beam", beam_size=args.beam_size)]}
    caption_gallery(paths, [refs[im["id"]] for im in images], generated, args.out,
                    args.columns)


def confusion(args):
    with open(args.classes) as f:
        names = [l.split()[-1] for l in f if l.strip()]        # "<label> <name>" lines
    mats = []
    for model in args.models:
        z = np.load(os.path.join(args.results, "%s_%s.npz" % (model, args.modality)))
        mats.append(("%s, %s: %.0f%%" % (MODEL_NAMES[model], args.modality,
                                          100 * accuracy(z["scores"], z["labels"])),
                     confusion_matrix(z["scores"], z["labels"], len(names))))
    confusion_figure(mats, names, args.out)


def main(argv=None):
    p = argparse.ArgumentParser(description="caption gallery / activity confusion matrices")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("captions")
    c.add_argument("--weights", required=True)
    c.add_argument("--stage", action="append", default=[])
    c.add_argument("--captions", default="data/shapes_captions/captions_val.json")
    c.add_argument("--images", default="data/shapes_captions/images")
    c.add_argument("--first", type=int, default=0, help="first val image")
    c.add_argument("--num", type=int, default=8)
    c.add_argument("--columns", type=int, default=4)
    c.add_argument("--beam-size", type=int, default=3)
    c.add_argument("--out", required=True)
    m = sub.add_parser("confusion")
    m.add_argument("--results", default=RESULTS, help="tools/activity.py eval's .npz folder")
    m.add_argument("--classes", default="data/activity/classes.txt")
    m.add_argument("--modality", default="rgb", choices=("rgb", "flow"))
    m.add_argument("--models", nargs="+", default=["singleframe", "lstm"],
                   choices=sorted(MODEL_NAMES))
    m.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        (captions if args.command == "captions" else confusion)(args)
    except (CaffeliteError, OSError, KeyError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
