#!/usr/bin/env python3
"""Score one candidate sentence against references: BLEU-1..4 (caffelite.lrcn.metrics).

    python tools/bleu.py --candidate "a red circle" --reference "a red circle on the left"
"""

import argparse
import sys

from caffelite.lrcn.metrics import corpus_bleu


def main(argv=None):
    p = argparse.ArgumentParser(description="Score one candidate sentence against references "
                                            "(BLEU-1..4; CIDEr-D needs a corpus: use "
                                            "evaluate_captions.py).")
    p.add_argument("--candidate", required=True, help="candidate sentence")
    p.add_argument("--reference", action="append", required=True,
                   help="reference sentence (repeat for several)")
    args = p.parse_args(argv)
    scores, _ = corpus_bleu({0: args.candidate}, {0: args.reference})
    for i, s in enumerate(scores):
        print("BLEU-%d %.4f" % (i + 1, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
