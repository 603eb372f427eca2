#!/usr/bin/env python3
"""Generate captions with a trained LRCN model: greedy, temperature sampling, beam search.

    python tools/caption.py --weights snapshots/lrcn_iter_N.caffemodel \\
        --captions data/shapes_captions/captions_val.json \\
        --images data/shapes_captions/images --method beam --beam-size 3 --out res.json
    python tools/evaluate_captions.py --results res.json \\
        --captions data/shapes_captions/captions_val.json
    python tools/caption.py --baseline random-train \
        --captions data/shapes_captions/captions_val.json     # model-free reference point

The two deploy nets and the decoding rules: caffelite/lrcn/captioner.py and
caffelite/lrcn/search.py. With --captions (and no --files) the captions are also scored
(BLEU-1..4, CIDEr-D) against the JSON's references.
"""

import argparse
import json
import os
import sys

from caffelite.errors import CaffeliteError
from caffelite.lrcn.captioner import Captioner, baseline_captions
from caffelite.lrcn.coco_json import load_references
from caffelite.lrcn.metrics import evaluate


def main(argv=None):
    p = argparse.ArgumentParser(description="Caption images with a trained LRCN model "
                                            "(greedy / sample / beam); writes COCO results JSON.")
    p.add_argument("--weights", help=".caffemodel (e.g. a training snapshot)")
    p.add_argument("--baseline", choices=("most-frequent", "random-train"),
                   help="no model: every image gets the most frequent training caption, or "
                        "the caption of a random training image (seeded); needs --train-captions")
    p.add_argument("--train-captions", default="data/shapes_captions/captions_train.json")
    p.add_argument("--captions", help="COCO captions JSON whose images to caption")
    p.add_argument("--images", default="data/shapes_captions/images",
                   help="folder of the JSON's file_name entries")
    p.add_argument("--files", nargs="*", help="caption these image files instead (ids 0, 1, ..)")
    p.add_argument("--image-net", default="prototxt/lrcn_deploy_image.prototxt")
    p.add_argument("--word-net", default="prototxt/lrcn_deploy_word.prototxt")
    p.add_argument("--stage", action="append", default=[],
                   help="net stage of the weights' variant (prototxt/lrcn.prototxt), repeatable")
    p.add_argument("--vocab", default="data/shapes_captions/h5_train/vocabulary.txt")
    p.add_argument("--mean", type=float, default=128.0)
    p.add_argument("--scale", type=float, default=0.0078125)
    p.add_argument("--method", choices=("greedy", "sample", "beam"), default="greedy")
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=19, help="max words before <EOS>")
    p.add_argument("--batch-size", type=int, default=50, help="images per batch")
    p.add_argument("--limit", type=int, help="caption only the first N images")
    p.add_argument("--out", help="COCO results JSON to write")
    p.add_argument("--print", type=int, default=5, help="print the first N captions")
    args = p.parse_args(argv)
    if args.files:
        ids, paths = list(range(len(args.files))), list(args.files)
    elif args.captions:
        with open(args.captions) as f:
            images = json.load(f)["images"]
        ids = [im["id"] for im in images]
        paths = [os.path.join(args.images, im["file_name"]) for im in images]
    else:
        p.error("give --captions (COCO JSON) or --files")
    if args.limit:
        ids, paths = ids[:args.limit], paths[:args.limit]
    if not (args.weights or args.baseline):
        p.error("give --weights (or --baseline)")
    try:
        if args.baseline:
            res = baseline_captions(args.baseline, args.train_captions, len(paths), args.seed)
        else:
            cap = Captioner(args.weights, args.image_net, args.word_net, args.vocab, args.mean,
                            args.scale, stages=args.stage)
            res = cap.caption_files(paths, args.batch_size, method=args.method,
                                    beam_size=args.beam_size, temperature=args.temperature,
                                    seed=args.seed, max_length=args.max_length)
    except (CaffeliteError, OSError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    for i in range(min(args.print, len(res))):
        print("%s: %s  (log p %.3f)" % (os.path.basename(paths[i]), res[i][0], res[i][1]))
    results = [{"image_id": i, "caption": c} for i, (c, _) in zip(ids, res)]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)
        print("wrote %d captions to %s" % (len(results), args.out))
    if args.captions and not args.files:
        scores = evaluate({r["image_id"]: r["caption"] for r in results},
                          load_references(args.captions))
        print("  ".join("%s %.4f" % kv for kv in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
