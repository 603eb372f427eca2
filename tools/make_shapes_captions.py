#!/usr/bin/env python3
"""Generate the seeded colored-shapes image-captioning dataset (COCO-format JSON + PNG images).

    python tools/make_shapes_captions.py --out data/shapes_captions [--num-train 2000] [--seed 0]

What is drawn and which captions are written: caffelite/lrcn/shapes_captions.py.
"""

import argparse
import sys

from caffelite.lrcn.shapes_captions import generate


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate the seeded colored-shapes captioning dataset "
                                            "(COCO-format JSON + PNG images).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-val", type=int, default=200)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        res = generate(args.out, args.num_train, args.num_val, args.size, args.seed)
    except (ValueError, OSError) as e:
        print("error: %s: %s" % (args.out, e), file=sys.stderr)
        return 2
    for split, coco in res.items():
        print("%s: %d images, %d captions" % (split, len(coco["images"]), len(coco["annotations"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
