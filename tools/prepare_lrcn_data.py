#!/usr/bin/env python3
"""One command that makes the LRCN captioning data the shipped prototxts read.

    python tools/prepare_lrcn_data.py            # -> data/shapes_captions/ (skips if present)

The steps, the settings and the alignment: caffelite/lrcn/shapes_dataset.py.
"""

import argparse
import sys

from caffelite.errors import CaffeliteError
from caffelite.lrcn.shapes_dataset import prepare


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate data/shapes_captions (images, COCO JSON, "
                                            "LRCN HDF5 streams) if missing.")
    p.add_argument("--out", default="data/shapes_captions")
    p.add_argument("--num-train", type=int)
    p.add_argument("--num-val", type=int)
    p.add_argument("--buffer-size", type=int, help="streams N (= ImageData batch_size)")
    p.add_argument("--seed", type=int)
    p.add_argument("--force", action="store_true", help="rebuild even if present")
    args = p.parse_args(argv)
    try:
        prepare(args.out, args.force, num_train=args.num_train, num_val=args.num_val,
                buffer_size=args.buffer_size, seed=args.seed)
    except (CaffeliteError, ValueError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
