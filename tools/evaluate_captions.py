#!/usr/bin/env python3
"""Score a COCO results file against a COCO captions file: BLEU-1..4, CIDEr-D.

Results file: JSON list [{"image_id": int, "caption": str}, ...], one entry per
image (as coco-caption requires). Captions file: COCO captions JSON
{"images": [...], "annotations": [{"id", "image_id", "caption"}, ...]}.
Only the images named in the results file are scored (as coco-caption's
COCOEvalCap does); each of them must have at least one reference caption.
Metric definitions: see caffelite/lrcn/metrics.py.

    python tools/evaluate_captions.py --results res.json --captions captions_val.json
"""

import argparse
import json
import sys

from caffelite.errors import CaffeliteError
from caffelite.lrcn.coco_json import load_references, load_results
from caffelite.lrcn.metrics import evaluate, format_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="COCO results JSON [{image_id, caption}]")
    p.add_argument("--captions", required=True, help="COCO captions JSON with reference annotations")
    p.add_argument("--json-out", help="also write the scores to this JSON file")
    args = p.parse_args(argv)
    try:
        results = load_results(args.results)
        refs = load_references(args.captions)
        scores = evaluate(results, refs, args.results, args.captions)
    except CaffeliteError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print(format_table(scores, len(results)))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(scores, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
