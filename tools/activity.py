#!/usr/bin/env python3
"""LRCN activity recognition (paper Table 1): train, evaluate with clip averaging, fuse.

    python tools/make_activity_videos.py --out data/activity        # once (seeded)
    python tools/activity.py train --model lstm --modality rgb       # -> snapshots/...
    (models: singleframe, lstm = LRCN-fc6, lstm_fc7 = LRCN-fc7)
    python tools/activity.py eval  --model lstm --modality rgb       # -> data/activity/results/*.npz
    python tools/activity.py table                                   # Table 1 from the .npz
    python tools/activity.py all                                     # the 6 runs + the table
    python tools/activity.py train --model lstm_fc7 --modality rgb --max-iter 1000   # budget

Models, clip averaging and fusion: caffelite/lrcn/activity.py.
"""

import argparse
import os
import sys

import numpy as np

from caffelite.errors import CaffeliteError
from caffelite.lrcn.activity import (MODALITIES, MODELS, RESULTS, accuracy, evaluate,
                                     format_table, table, train)


def main(argv=None):
    p = argparse.ArgumentParser(description="LRCN activity recognition: train / eval / table")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "eval", "all"):
        s = sub.add_parser(name, help="train + eval the 6 model/modality runs, then print the "
                                      "table" if name == "all" else None)
        if name != "all":
            s.add_argument("--model", choices=MODELS, required=True)
            s.add_argument("--modality", choices=MODALITIES, required=True)
        if name == "eval":
            s.add_argument("--weights", help="default: the solver's final snapshot")
        s.add_argument("--max-iter", type=int,
                       help="reduced budget: max_iter N, the step schedule scaled with it")
    sub.add_parser("table")
    args = p.parse_args(argv)
    try:
        runs = [(args.model, args.modality)] if args.command in ("train", "eval") else \
            [(m, d) for m in MODELS for d in MODALITIES] if args.command == "all" else []
        for model, modality in runs:
            weights = getattr(args, "weights", None)
            if args.command in ("train", "all"):
                weights = train(model, modality, args.max_iter)
            if args.command in ("eval", "all"):
                scores, labels = evaluate(model, modality, weights, args.max_iter)
                os.makedirs(RESULTS, exist_ok=True)
                np.savez(os.path.join(RESULTS, "%s_%s.npz" % (model, modality)),
                         scores=scores, labels=labels)
                print("%s %s: video accuracy %.1f%% (%d videos)"
                      % (model, modality, 100 * accuracy(scores, labels), len(labels)))
        if args.command in ("table", "all"):
            print(format_table(table()))
    except (CaffeliteError, OSError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
