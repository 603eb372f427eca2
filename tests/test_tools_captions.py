"""coco_to_hdf5 (LRCN caption HDF5 layout) and the shapes caption generator."""

import hashlib
import json
import os

import h5py
import numpy as np

from caffelite.lrcn import coco_hdf5, shapes_captions, vocabulary
from tools import coco_to_hdf5


def _write_coco(tmp_path, images, anns, make_files=True):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    for im in images:
        if make_files:
            (img_dir / im["file_name"]).write_bytes(b"x")
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return str(path), str(img_dir)


IMAGES = [{"id": 10, "file_name": "a.png", "width": 4, "height": 4},
          {"id": 20, "file_name": "b.png", "width": 4, "height": 4}]
ANNS = [{"id": 1, "image_id": 10, "caption": "A red circle."},
        {"id": 2, "image_id": 20, "caption": "a blue circle"},
        {"id": 3, "image_id": 10, "caption": "a red, red square"},
        {"id": 4, "image_id": 20, "caption": " ".join(["dog"] * 25)}]


def test_split_sentence_matches_lrcn():
    assert vocabulary.split_sentence("A red circle.") == ["a", "red", "circle"]
    # punctuation other than a final '.' stays as tokens (LRCN's \W+ split)
    assert vocabulary.split_sentence("a red, red square!") == ["a", "red", ",", "red", "square", "!"]
    assert vocabulary.split_sentence("man's hat") == ["man", "'", "s", "hat"]


def test_vocabulary_order_and_min_count():
    sents = [["a", "b", "a"], ["c", "b", "a"], ["d"]]
    # counts a3 b2 c1 d1 -> sort (-count, word)
    assert vocabulary.build_vocabulary(sents, min_count=1) == ["<unk>", "a", "b", "c", "d"]
    assert vocabulary.build_vocabulary(sents, min_count=2) == ["<unk>", "a", "b"]


def test_caption_streams_exact():
    idx = {"<unk>": 0, "a": 1, "red": 2, "circle": 3}
    s = coco_hdf5.caption_to_streams(["a", "red", "circle", "zebra"], idx, max_words=8)
    # ids = vocab line + 1; unknown 'zebra' -> <unk> line 0 -> id 1; 0 is <EOS>
    assert s["input_sentence"] == [0, 2, 3, 4, 1, -1, -1, -1]
    assert s["target_sentence"] == [2, 3, 4, 1, 0, -1, -1, -1]
    assert s["cont_sentence"] == [0, 1, 1, 1, 1, 0, 0, 0]
    assert s["stage_indicators"] == [1, 1, 1, 1, 1, 0, 0, 0]


def test_caption_truncation_at_max_words():
    idx = {"<unk>": 0, "w": 1}
    s = coco_hdf5.caption_to_streams(["w"] * 25, idx, max_words=20)
    assert s["input_sentence"] == [0] + [2] * 19
    assert s["target_sentence"] == [2] * 20  # no <EOS>: cut off as in LRCN
    assert s["cont_sentence"] == [0] + [1] * 19
    # exactly 19 words: fits with EOS and no padding
    s = coco_hdf5.caption_to_streams(["w"] * 19, idx, max_words=20)
    assert s["target_sentence"] == [2] * 19 + [0]
    assert s["input_sentence"] == [0] + [2] * 19


def test_convert_exact_arrays_and_alignment(tmp_path):
    caps, imgs = _write_coco(tmp_path, IMAGES, ANNS)
    out = tmp_path / "out"
    info = coco_hdf5.convert(caps, imgs, str(out), buffer_size=2, max_words=20,
                                min_count=2, shuffle=False)
    assert info["pairs"] == 4 and info["aligned_pairs"] == 4 and info["truncated"] == 1
    # counts: dog 25, a 3, red 3, circle 2, ','1 blue 1 square 1 -> min_count 2
    vocab = (out / "vocabulary.txt").read_text().split("\n")
    assert vocab == ["<unk>", "dog", "a", "red", "circle", ""]
    # ids: <EOS>0 <unk>1 dog2 a3 red4 circle5
    chunks = (out / "hdf5_chunk_list.txt").read_text().split()
    assert chunks == [str(out / "batch_0.h5")]
    with h5py.File(chunks[0], "r") as h5:
        assert set(h5.keys()) == {"cont_sentence", "input_sentence", "target_sentence",
                                  "stage_indicators", "hashed_image_path", "cont", "buffer_size"}
        inp, tgt, cont = h5["input_sentence"][:], h5["target_sentence"][:], h5["cont_sentence"][:]
        assert inp.shape == (40, 2) and inp.dtype == np.float64
        assert h5["buffer_size"][:].tolist() == [2]
        hashes = h5["hashed_image_path"][:]
    pad = lambda v, x: v + [x] * (20 - len(v))  # noqa: E731
    # pair order without shuffle: image a: caps 1, 3; image b: caps 2, 4
    # pair k -> column k % 2, rows (k // 2) * 20 ...
    expected = {
        (0, 0): ([0, 3, 4, 5], [3, 4, 5, 0], [0, 1, 1, 1]),            # a red circle
        (0, 1): ([0, 3, 4, 1, 4, 1], [3, 4, 1, 4, 1, 0], [0, 1, 1, 1, 1, 1]),  # a red , red square
        (1, 0): ([0, 3, 1, 5], [3, 1, 5, 0], [0, 1, 1, 1]),            # a blue circle
    }
    for (blk, col), (i, t, c) in expected.items():
        # pair index k = blk * 2 + col; listed in file order a(1), a(3), b(2), b(4)
        rows = slice(blk * 20, blk * 20 + 20)
        assert inp[rows, col].tolist() == pad(i, -1)
        assert tgt[rows, col].tolist() == pad(t, -1)
        assert cont[rows, col].tolist() == pad(c, 0)
    # 25 dogs -> truncated, no EOS
    assert inp[20:40, 1].tolist() == [0] + [2] * 19
    assert tgt[20:40, 1].tolist() == [2] * 20
    # image list line k <-> column k % N of block k // N
    lines = (out / "image_list.with_dummy_labels.txt").read_text().splitlines()
    paths = [l.rsplit(" ", 1)[0] for l in lines]
    labels = [int(l.rsplit(" ", 1)[1]) for l in lines]
    assert [os.path.basename(p) for p in paths] == ["a.png", "a.png", "b.png", "b.png"]
    assert all(os.path.isabs(p) for p in paths)
    for k, (p, lab) in enumerate(zip(paths, labels)):
        assert lab == int(hashlib.sha1(p.encode()).hexdigest(), 16) % 100000
        assert (hashes[(k // 2) * 20:(k // 2) * 20 + 20, k % 2] == lab).all()
    assert (out / "image_list.txt").read_text().splitlines() == paths


def test_convert_shuffle_pads_to_buffer_and_stays_aligned(tmp_path):
    caps, imgs = _write_coco(tmp_path, IMAGES, ANNS[:3])  # 3 captions, buffer 2 -> 1 duplicate
    out = tmp_path / "o"
    coco_hdf5.convert(caps, imgs, str(out), buffer_size=2, min_count=1, chunk_length=20)
    chunks = (out / "hdf5_chunk_list.txt").read_text().split()
    assert len(chunks) == 2  # 40 rows, 20 per chunk
    tgt = np.concatenate([h5py.File(c, "r")["target_sentence"][:] for c in chunks])
    vocab = ["<EOS>"] + (out / "vocabulary.txt").read_text().split()
    paths = [l.rsplit(" ", 1)[0] for l in
             (out / "image_list.with_dummy_labels.txt").read_text().splitlines()]
    assert len(paths) == 4
    truth = {"a.png": {"a red circle", "a red , red square"}, "b.png": {"a blue circle"}}
    decoded = []
    for k, p in enumerate(paths):
        col = tgt[(k // 2) * 20:(k // 2) * 20 + 20, k % 2]
        words = [vocab[int(i)] for i in col if i > 0]
        decoded.append(" ".join(words))
        assert " ".join(words) in truth[os.path.basename(p)]
    assert len(set(decoded)) == 3  # all originals present, one duplicated
    # same seed -> identical output
    out2 = tmp_path / "o2"
    coco_hdf5.convert(caps, imgs, str(out2), buffer_size=2, min_count=1, chunk_length=20)
    assert (out2 / "image_list.txt").read_text() == (out / "image_list.txt").read_text()


def test_convert_reuses_vocab_and_maps_unknown(tmp_path):
    caps, imgs = _write_coco(tmp_path, IMAGES, ANNS[:2])
    vocab = tmp_path / "v.txt"
    vocab.write_text("<unk>\nred\na\n")
    out = tmp_path / "o"
    coco_hdf5.convert(caps, imgs, str(out), vocab=str(vocab), buffer_size=2, shuffle=False)
    assert (out / "vocabulary.txt").read_text() == "<unk>\nred\na\n"
    tgt = h5py.File(str(out / "batch_0.h5"), "r")["target_sentence"][:]
    # "a red circle": a=3 red=2 circle=<unk>=1 ; "a blue circle": 3 1 1
    assert tgt[:4, 0].tolist() == [3, 2, 1, 0]
    assert tgt[:4, 1].tolist() == [3, 1, 1, 0]


def test_convert_bad_inputs(tmp_path, capsys):
    caps, imgs = _write_coco(tmp_path, IMAGES, ANNS)
    bad_vocab = tmp_path / "bad.txt"
    bad_vocab.write_text("a\nb\n")
    rc = coco_to_hdf5.main(["--captions", caps, "--images", imgs, "--out", str(tmp_path / "o"),
                            "--vocab", str(bad_vocab)])
    assert rc != 0 and "bad.txt" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    rc = coco_to_hdf5.main(["--captions", str(tmp_path / "broken.json"), "--images", imgs,
                            "--out", str(tmp_path / "o")])
    assert rc != 0 and "broken.json" in capsys.readouterr().err
    # no image files on disk -> error naming the captions file
    caps2, imgs2 = _write_coco(tmp_path / "", [{"id": 1, "file_name": "zz.png"}],
                               [{"id": 1, "image_id": 1, "caption": "x"}], make_files=False)
    rc = coco_to_hdf5.main(["--captions", caps2, "--images", imgs2, "--out", str(tmp_path / "o")])
    assert rc != 0 and "no (image, caption) pairs" in capsys.readouterr().err


def test_shapes_generator_deterministic_and_well_formed(tmp_path):
    a = shapes_captions.generate(str(tmp_path / "a"), num_train=12, num_val=4, seed=5)
    b = shapes_captions.generate(str(tmp_path / "b"), num_train=12, num_val=4, seed=5)
    c = shapes_captions.generate(str(tmp_path / "c"), num_train=12, num_val=4, seed=6)
    assert a == b and a != c
    for split in ("train", "val"):
        assert (tmp_path / "a" / ("captions_%s.json" % split)).read_bytes() == \
            (tmp_path / "b" / ("captions_%s.json" % split)).read_bytes()
    for f in sorted(os.listdir(tmp_path / "a" / "images")):
        assert (tmp_path / "a" / "images" / f).read_bytes() == (tmp_path / "b" / "images" / f).read_bytes()
    ids = [im["id"] for s in a.values() for im in s["images"]]
    assert len(ids) == len(set(ids)) == 16
    for coco in a.values():
        per = {}
        for ann in coco["annotations"]:
            per.setdefault(ann["image_id"], []).append(ann["caption"])
        assert set(per) == {im["id"] for im in coco["images"]}
        for capsl in per.values():
            assert 3 <= len(capsl) <= 5 and len(set(capsl)) == len(capsl)


def test_shapes_captions_describe_the_image(tmp_path):
    from PIL import Image
    shapes_captions.generate(str(tmp_path), num_train=60, num_val=0, seed=1)
    coco = json.loads((tmp_path / "captions_train.json").read_text())
    objs = json.loads((tmp_path / "objects_train.json").read_text())
    words = set()
    for ann in coco["annotations"]:
        toks = ann["caption"].split()
        words.update(toks)
        o = objs[str(ann["image_id"])]
        colors = {x["color"] for x in o}
        assert {t for t in toks if t in shapes_captions.COLORS} <= colors
        if len(o) == 2 and " above " in ann["caption"]:
            a, b = o
            first = ann["caption"].split(" above ")[0].split()[-2:]  # "<color> <shape>"
            upper = a if a["y"] < b["y"] else b
            assert first == [upper["color"], upper["shape"]] or \
                (a["color"], a["shape"]) == (b["color"], b["shape"])
    assert len(words) < 40
    # the pixel at a shape's center has that shape's color
    for im in coco["images"][:20]:
        arr = np.asarray(Image.open(tmp_path / "images" / im["file_name"]))
        assert arr.shape == (64, 64, 3)
        for o in objs[str(im["id"])]:
            assert tuple(arr[int(o["y"]), int(o["x"])]) == shapes_captions.COLORS[o["color"]]


def test_shapes_then_hdf5_end_to_end(tmp_path):
    shapes_captions.generate(str(tmp_path / "d"), num_train=30, num_val=5, seed=2)
    d = tmp_path / "d"
    coco_hdf5.convert(str(d / "captions_train.json"), str(d / "images"), str(tmp_path / "tr"),
                         buffer_size=10, min_count=1)
    coco_hdf5.convert(str(d / "captions_val.json"), str(d / "images"), str(tmp_path / "va"),
                         vocab=str(tmp_path / "tr" / "vocabulary.txt"), buffer_size=10)
    n_lines = len((tmp_path / "va" / "image_list.txt").read_text().splitlines())
    with h5py.File(str(tmp_path / "va" / "batch_0.h5"), "r") as h5:
        assert h5["input_sentence"].shape == (n_lines // 10 * 20, 10)
        assert n_lines % 10 == 0
