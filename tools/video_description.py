#!/usr/bin/env python3
"""LRCN video description (paper Table 5) on the toy CRF data of make_video_description.py.

    python tools/make_video_description.py --out data/video_description      # once (seeded)
    python tools/video_description.py all        # prepare + train (a), (b), (c) + BLEU-4

The three models, the data layout and the decoding: caffelite/lrcn/video_description.py.
"""

import argparse
import sys

from caffelite.errors import CaffeliteError
from caffelite.lrcn.training import final_weights
from caffelite.lrcn.video_description import (MODELS, bleu4, generate, prepare, solver_path,
                                              train)


def main(argv=None):
    p = argparse.ArgumentParser(description="LRCN video description (Table 5): "
                                            "prepare / train / eval")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare")
    for name in ("train", "eval"):
        s = sub.add_parser(name)
        s.add_argument("--model", choices=sorted(MODELS), required=True)
        if name == "eval":
            s.add_argument("--weights", help="default: the solver's final snapshot")
    sub.add_parser("all", help="prepare, train and evaluate (a), (b), (c)")
    args = p.parse_args(argv)
    try:
        if args.command in ("prepare", "all"):
            print("vocabulary: %d words" % len(prepare()))
        models = [args.model] if args.command in ("train", "eval") else \
            sorted(MODELS) if args.command == "all" else []
        rows = []
        for m in models:
            weights = getattr(args, "weights", None)
            if args.command in ("train", "all"):
                weights = train(m)
            if args.command in ("eval", "all"):
                if weights is None:
                    weights = final_weights(solver_path(m))
                g = bleu4(generate(m, weights))
                b = bleu4(generate(m, weights, method="beam"))
                rows.append((m, g, b))
                print("(%s) %s on %s: BLEU-4 greedy %.4f, beam 3 %.4f"
                      % (m, MODELS[m][0], MODELS[m][1], g, b))
        if rows:
            print("| Model | BLEU-4 greedy | BLEU-4 beam 3 |\n|---|---|---|")
            for m, g, b in rows:
                print("| (%s) %s, %s | %.1f | %.1f |" % (m, MODELS[m][0], MODELS[m][1],
                                                       100 * g, 100 * b))
    except (CaffeliteError, OSError, ValueError, KeyError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
