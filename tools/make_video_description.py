#!/usr/bin/env python3
"""Generate the seeded toy video-description data (CRF max / CRF prob triples + sentences).

    python tools/make_video_description.py --out data/video_description [--seed 0]

The simulated recognizer, the sentence templates and the files:
caffelite/lrcn/video_description_data.py.
"""

import argparse
import sys

from caffelite.lrcn.video_description_data import COMPONENTS, generate


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate the seeded toy video-description data "
                                            "(CRF max / CRF prob triples + sentences).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=500)
    p.add_argument("--num-test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta", type=float, default=2.5, help="logit boost of the true class (default 2.5)")
    p.add_argument("--sigma", type=float, default=1.0, help="logit noise std (default 1.0)")
    args = p.parse_args(argv)
    try:
        res = generate(args.out, args.num_train, args.num_test, args.seed, args.beta, args.sigma)
    except (ValueError, OSError) as e:
        print("error: %s: %s" % (args.out, e), file=sys.stderr)
        return 2
    for split, arrays in res.items():
        acc = [(arrays["crf_max/" + n].argmax(1) == arrays["true_triple"][:, c]).mean()
               for c, (n, _) in enumerate(COMPONENTS)]
        print("%s: %d videos; CRF max accuracy subject %.2f verb %.2f object %.2f"
              % (split, len(arrays["video_id"]), *acc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
