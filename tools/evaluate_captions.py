#!/usr/bin/env python3
"""Score a COCO results file against a COCO captions file: BLEU-1..4, CIDEr-D.

Results file: JSON list [{"image_id": int, "caption": str}, ...], one entry per
image (as coco-caption requires). Captions file: COCO captions JSON
{"images": [...], "annotations": [{"id", "image_id", "caption"}, ...]}.
Only the images named in the results file are scored (as coco-caption's
COCOEvalCap does); each of them must have at least one reference caption.
Metric definitions: see tools/bleu.py.

    python tools/evaluate_captions.py --results res.json --captions captions_val.json
"""

import argparse
import json
import sys

try:
    from tools.bleu import corpus_bleu, cider_d
except ImportError:  # run as a script: tools/ itself is on sys.path
    from bleu import corpus_bleu, cider_d


class InputError(Exception):
    """Bad input file; message names the file and the problem."""


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError("%s: file not found" % path)
    except json.JSONDecodeError as e:
        raise InputError("%s: not valid JSON (%s)" % (path, e))


def load_references(path):
    """COCO captions file -> {image_id: [captions]}."""
    data = _load_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        raise InputError("%s: expected a COCO captions object with an 'annotations' list" % path)
    refs = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise InputError("%s: annotations[%d] needs 'image_id' and a string 'caption'" % (path, i))
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    return refs


def load_results(path):
    """COCO results file -> {image_id: caption}; duplicates are an error."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise InputError("%s: expected a JSON list of {'image_id', 'caption'}" % path)
    res = {}
    for i, r in enumerate(data):
        if not isinstance(r, dict) or "image_id" not in r or not isinstance(r.get("caption"), str):
            raise InputError("%s: entry %d needs 'image_id' and a string 'caption'" % (path, i))
        if r["image_id"] in res:
            raise InputError("%s: image_id %r appears more than once" % (path, r["image_id"]))
        res[r["image_id"]] = r["caption"]
    if not res:
        raise InputError("%s: no results" % path)
    return res


def evaluate(results, references, results_path="results", captions_path="captions"):
    """{id: caption}, {id: [refs]} -> ordered dict of metric name -> score."""
    missing = [k for k in results if k not in references]
    if missing:
        raise InputError("%s: %d image_id(s) have no reference captions in %s, e.g. %r"
                         % (results_path, len(missing), captions_path, missing[0]))
    bleu, _ = corpus_bleu(results, references)
    cider, _ = cider_d(results, references)
    out = {"BLEU-%d" % (i + 1): b for i, b in enumerate(bleu)}
    out["CIDEr-D"] = cider
    return out


def format_table(scores, num_images):
    lines = ["%-8s %s" % ("metric", "score"), "-" * 16]
    lines += ["%-8s %.4f" % (k, v) for k, v in scores.items()]
    lines.append("(%d images)" % num_images)
    return "\n".join(lines)


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
    except InputError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print(format_table(scores, len(results)))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(scores, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
