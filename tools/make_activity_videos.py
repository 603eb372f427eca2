#!/usr/bin/env python3
"""Generate seeded toy activity videos (frames + optical-flow images), UCF-101-like layout.

    python tools/make_activity_videos.py --out data/activity [--num-train 30] [--seed 0]

The ten classes, the rendering and the flow encoding: caffelite/lrcn/activity_videos.py.
"""

import argparse
import sys

from caffelite.lrcn.activity_videos import CLASSES, generate


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate seeded toy activity videos (frames + "
                                            "optical-flow images) in a UCF-101-like layout.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=30, help="train videos per class (default 30)")
    p.add_argument("--num-test", type=int, default=10, help="test videos per class (default 10)")
    p.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    p.add_argument("--size", type=int, default=32, help="frame side in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flow-scale", type=float, default=32.0,
                   help="flow encoding: value = 128 + scale * pixels/frame (default 32)")
    p.add_argument("--no-flow", action="store_true", help="skip the flow images")
    args = p.parse_args(argv)
    try:
        lists = generate(args.out, args.num_train, args.num_test, args.frames, args.size,
                         args.seed, args.flow_scale, not args.no_flow)
    except (ValueError, OSError) as e:
        print("error: %s: %s" % (args.out, e), file=sys.stderr)
        return 2
    print("%d classes, %d train / %d test videos in %s"
          % (len(CLASSES), len(lists["train"]), len(lists["test"]), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
