"""COCO caption files: the captions JSON (references) and the results JSON (candidates).

Captions file: {"images": [{"id", "file_name", ...}], "annotations": [{"id", "image_id",
"caption"}, ...]} -> references {image_id: [caption, ...]} in annotation order.
Results file: [{"image_id": int, "caption": str}, ...], one entry per image (as coco-caption
requires) -> candidates {image_id: caption}.
Every problem is a CaffeliteError whose message names the file and the entry.
"""

import json

from ..errors import CaffeliteError


def load_json(path):
    """path -> the parsed JSON; a missing file or bad JSON is a CaffeliteError."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CaffeliteError("%s: file not found" % path)
    except json.JSONDecodeError as e:
        raise CaffeliteError("%s: not valid JSON (%s)" % (path, e))


def references(data, path):
    """Parsed COCO captions object (``path`` names it in errors) -> {image_id: [captions]}."""
    refs = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise CaffeliteError("%s: annotations[%d] needs 'image_id' and a string 'caption'"
                                 % (path, i))
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    return refs


def load_references(path):
    """COCO captions file -> {image_id: [captions]}."""
    data = load_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        raise CaffeliteError("%s: expected a COCO captions object with an 'annotations' list"
                             % path)
    return references(data, path)


def load_results(path):
    """COCO results file -> {image_id: caption}; duplicates are an error."""
    data = load_json(path)
    if not isinstance(data, list):
        raise CaffeliteError("%s: expected a JSON list of {'image_id', 'caption'}" % path)
    res = {}
    for i, r in enumerate(data):
        if not isinstance(r, dict) or "image_id" not in r or not isinstance(r.get("caption"), str):
            raise CaffeliteError("%s: entry %d needs 'image_id' and a string 'caption'" % (path, i))
        if r["image_id"] in res:
            raise CaffeliteError("%s: image_id %r appears more than once" % (path, r["image_id"]))
        res[r["image_id"]] = r["caption"]
    if not res:
        raise CaffeliteError("%s: no results" % path)
    return res
