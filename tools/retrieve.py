#!/usr/bin/env python3
"""Image <-> caption retrieval with a trained LRCN captioner (LRCN Table 2): every (image,
caption) pair of the pool scored by log p(caption | image); R@1, R@5, R@10 and Medr of the
first correct item, caption -> image and image -> caption.

    python tools/retrieve.py --weights snapshots/lrcn_iter_5000.caffemodel --name "LRCN"
    python tools/retrieve.py --weights snapshots/lrcn_unfactored_iter_1500.caffemodel \\
        --stage unfactored --stage 2-layer

The pool: the first --num-images images of --captions (0: all) and all their captions.
Scoring, ranks and the tie rule (pessimistic): caffelite/lrcn/retrieval.py.
"""

import argparse
import json
import os
import sys
import time

from caffelite.errors import CaffeliteError
from caffelite.lrcn.captioner import Captioner
from caffelite.lrcn.retrieval import KS, retrieval_metrics, score_matrix


def pool(captions_path, folder, num_images):
    """-> (image paths, captions, caption -> image row) of the first num_images images."""
    with open(captions_path) as f:
        data = json.load(f)
    images = data["images"][:num_images] if num_images else data["images"]
    row = {im["id"]: k for k, im in enumerate(images)}
    anns = [a for a in data["annotations"] if a["image_id"] in row]
    return ([os.path.join(folder, im["file_name"]) for im in images],
            [a["caption"] for a in anns], [row[a["image_id"]] for a in anns])


def main(argv=None):
    p = argparse.ArgumentParser(description="LRCN image <-> caption retrieval (R@K, Medr)")
    p.add_argument("--weights", required=True)
    p.add_argument("--stage", action="append", default=[], help="net stage of the weights")
    p.add_argument("--name", help="row label (default: the weights file)")
    p.add_argument("--captions", default="data/shapes_captions/captions_val.json")
    p.add_argument("--images", default="data/shapes_captions/images")
    p.add_argument("--num-images", type=int, default=100, help="pool size (0: every image)")
    p.add_argument("--image-batch", type=int, default=4, help="images per word-net pass")
    p.add_argument("--out", help="write the metrics as JSON")
    args = p.parse_args(argv)
    try:
        paths, captions, caption_image = pool(args.captions, args.images, args.num_images)
        start = time.time()
        cap = Captioner(args.weights, stages=args.stage)
        scores = score_matrix(cap, paths, captions, args.image_batch)
        metrics = retrieval_metrics(scores, caption_image)
    except (CaffeliteError, OSError, KeyError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("%d images x %d captions scored in %.0f s" % (len(paths), len(captions),
                                                      time.time() - start))
    cols = ["R@%d" % k for k in KS] + ["Medr"]
    print("| model | direction | " + " | ".join(cols) + " |")
    for direction, summary in metrics.items():
        print("| %s | %s | " % (args.name or args.weights, direction)
              + " | ".join("%g" % round(summary[c], 1) for c in cols) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"name": args.name or args.weights, "images": len(paths),
                       "captions": len(captions), **metrics}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
