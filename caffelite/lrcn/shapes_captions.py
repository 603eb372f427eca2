"""Generate a small, seeded image-captioning dataset of colored shapes.

Each RGB image (size x size PNG, default 64x64, light gray background) holds
1-3 non-overlapping shapes. A shape has a color (red/green/blue/yellow), a kind
(circle/square/triangle), a size (small/large: bounding radius 0.09*size or
0.16*size) and a center. Each image gets 3-5 distinct reference captions
chosen from templates that mention what the objects are and where they are:

    1 shape : "a large red circle", "a red circle on the left",
              "there is a small red circle at the top", ...
    2 shapes: "a red circle above a blue square" (vertical relation when
              |dy| >= |dx|, else "to the left of"/"to the right of"),
              "a blue square below a red circle", "two circles" when kinds match
    3 shapes: "three shapes", "a red circle to the left of a blue square and a
              green triangle" (ordered left to right), ...

Regions: x < size/3 -> "left", x > 2*size/3 -> "right", else "middle";
y likewise "top"/"bottom"/"middle". The vocabulary has < 40 words.

Outputs under ``out``:
    images/train_000000.png ..., images/val_000000.png ...
    captions_train.json, captions_val.json  (COCO captions format:
        {"images": [{"id", "file_name", "width", "height"}],
         "annotations": [{"id", "image_id", "caption"}]})
    objects_train.json, objects_val.json    ({image_id: [{"color","shape","size","x","y","r"}]})
Everything is a pure function of --seed (numpy default_rng); image ids are
unique across splits (val ids continue after train).
"""

import json
import os

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.09, "large": 0.16}
BACKGROUND = (235, 235, 235)


def _plural(shape):
    return shape + "s"


def sample_objects(rng, size, max_tries=200):
    """-> list of 1-3 object dicts with non-overlapping bounding circles."""
    n = int(rng.integers(1, 4))
    while True:
        objs = []
        for _ in range(n):
            for _ in range(max_tries):
                s = "small" if rng.random() < 0.5 else "large"
                r = SIZES[s] * size
                x = float(rng.uniform(r + 1, size - r - 1))
                y = float(rng.uniform(r + 1, size - r - 1))
                if all((x - o["x"]) ** 2 + (y - o["y"]) ** 2 > (r + o["r"] + 2) ** 2 for o in objs):
                    break
            else:
                break
            objs.append({"color": str(rng.choice(list(COLORS))), "shape": str(rng.choice(SHAPES)),
                         "size": s, "x": round(x, 2), "y": round(y, 2), "r": round(r, 2)})
        if len(objs) == n:
            return objs


def draw(objs, size):
    """Objects -> PIL RGB image."""
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    for o in objs:
        x, y, r, col = o["x"], o["y"], o["r"], COLORS[o["color"]]
        if o["shape"] == "circle":
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
        elif o["shape"] == "square":
            h = r * 0.8
            d.rectangle([x - h, y - h, x + h, y + h], fill=col)
        else:
            d.polygon([(x, y - r), (x - r * 0.87, y + r * 0.5), (x + r * 0.87, y + r * 0.5)], fill=col)
    return img


def region(o, size):
    """-> (horizontal, vertical) region words."""
    def bucket(v, lo, hi):
        return lo if v < size / 3 else hi if v > 2 * size / 3 else "middle"
    return bucket(o["x"], "left", "right"), bucket(o["y"], "top", "bottom")


def _where(o, size):
    h, v = region(o, size)
    out = []
    if h != "middle":
        out.append("on the " + h)
    if v != "middle":
        out.append("at the " + v)
    if h == "middle" and v == "middle":
        out.append("in the middle")
    return out


def relation(a, b):
    """Relation of a to b: 'above'/'below'/'to the left of'/'to the right of'."""
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    if abs(dy) >= abs(dx):
        return "above" if dy > 0 else "below"
    return "to the left of" if dx > 0 else "to the right of"


def candidate_captions(objs, size):
    """All template captions that are true of the objects (>= 5, no duplicates)."""
    def np_(o, with_size=False):
        return "a %s%s %s" % (o["size"] + " " if with_size else "", o["color"], o["shape"])
    caps = []
    if len(objs) == 1:
        o = objs[0]
        caps += [np_(o), np_(o, True), "there is a %s %s" % (o["color"], o["shape"]),
                 "a picture of %s" % np_(o, True)]
        for w in _where(o, size):
            caps += ["%s %s" % (np_(o), w), "there is %s %s" % (np_(o, True), w)]
    elif len(objs) == 2:
        a, b = objs
        rel, inv = relation(a, b), relation(b, a)
        caps += ["%s %s %s" % (np_(a), rel, np_(b)), "%s %s %s" % (np_(b), inv, np_(a)),
                 "there is %s %s %s" % (np_(a, True), rel, np_(b, True)),
                 "%s and %s" % (np_(a, True), np_(b, True)),
                 "a picture of %s and %s" % (np_(a), np_(b))]
        if a["shape"] == b["shape"]:
            caps.append("two %s" % _plural(a["shape"]))
            if a["color"] == b["color"]:
                caps.append("two %s %s" % (a["color"], _plural(a["shape"])))
        else:
            caps.append("two shapes")
    else:
        left_to_right = sorted(objs, key=lambda o: o["x"])
        top_to_bottom = sorted(objs, key=lambda o: o["y"])
        l, m, r = left_to_right
        t = top_to_bottom[0]
        caps += ["three shapes",
                 "%s to the left of %s and %s" % (np_(l), np_(m), np_(r)),
                 "%s to the right of %s and %s" % (np_(r), np_(l), np_(m)),
                 "there are three shapes with %s at the top" % np_(t),
                 "%s and %s and %s" % (np_(l, True), np_(m, True), np_(r, True)),
                 "three shapes with %s on the left" % np_(l)]
        kinds = {o["shape"] for o in objs}
        if len(kinds) == 1:
            caps.append("three %s" % _plural(objs[0]["shape"]))
    seen, out = set(), []
    for c in caps:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def make_split(rng, split, num, size, images_dir, first_image_id, first_ann_id):
    """Draw, save and caption `num` images -> (coco dict, objects dict)."""
    images, anns, objects = [], [], {}
    ann_id = first_ann_id
    for i in range(num):
        image_id = first_image_id + i
        objs = sample_objects(rng, size)
        fname = "%s_%06d.png" % (split, i)
        draw(objs, size).save(os.path.join(images_dir, fname))
        caps = candidate_captions(objs, size)
        k = int(rng.integers(3, 6))
        chosen = rng.choice(len(caps), size=min(k, len(caps)), replace=False)
        for j in sorted(int(c) for c in chosen):
            anns.append({"id": ann_id, "image_id": image_id, "caption": caps[j]})
            ann_id += 1
        images.append({"id": image_id, "file_name": fname, "width": size, "height": size})
        objects[str(image_id)] = objs
    return {"images": images, "annotations": anns}, objects


def generate(out, num_train=2000, num_val=200, size=64, seed=0):
    """Write the dataset (see module docstring). Returns {split: coco dict}."""
    if num_train < 1 or num_val < 0:
        raise ValueError("--num-train must be >= 1 and --num-val >= 0")
    if size < 24:
        raise ValueError("--size must be >= 24 pixels (got %d)" % size)
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(out, "images")
    os.makedirs(images_dir, exist_ok=True)
    result = {}
    next_img, next_ann = 0, 0
    for split, num in (("train", num_train), ("val", num_val)):
        coco, objects = make_split(rng, split, num, size, images_dir, next_img, next_ann)
        next_img += num
        next_ann += len(coco["annotations"])
        with open(os.path.join(out, "captions_%s.json" % split), "w") as f:
            json.dump(coco, f, indent=0)
        with open(os.path.join(out, "objects_%s.json" % split), "w") as f:
            json.dump(objects, f, indent=0)
        result[split] = coco
    return result
