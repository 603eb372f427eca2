"""Activity-video generator, flow images, and the video-description generator."""

import json
import os

import h5py
import numpy as np
import pytest
from PIL import Image

from caffelite.lrcn import activity_videos as mav
from caffelite.lrcn import video_description_data as mvd
from tools import make_activity_videos


def _texture(size=48, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.random((size, size))
    for _ in range(3):
        t = mav._blur(t)
    return (t - t.min()) / (t.max() - t.min())


def test_ten_classes_in_time_reversal_pairs():
    assert len(mav.CLASSES) >= 10
    for a, b in mav.PAIRS:
        va = mav.render_video(a, np.random.default_rng([3, 4]))
        vb = mav.render_video(b, np.random.default_rng([3, 4]))
        # reversing one member's video gives exactly the other member's video
        assert np.array_equal(va[::-1], vb)
        assert not np.array_equal(va, vb)
        # so the set of single frames is identical: a frame carries no pair-class information
        assert sorted(f.tobytes() for f in va) == sorted(f.tobytes() for f in vb)


@pytest.mark.parametrize("shift", [(1, 0), (0, -1), (2, 1)])
def test_flow_of_known_translation(shift):
    a = _texture()
    b = np.roll(a, shift=(shift[1], shift[0]), axis=(0, 1))  # content moves by (dx, dy)
    u, v = mav.dense_flow(a, b)
    c = (slice(8, -8), slice(8, -8))
    assert np.median(u[c]) == pytest.approx(shift[0], abs=0.1)
    assert np.median(v[c]) == pytest.approx(shift[1], abs=0.1)
    img = mav.flow_to_image(u, v, scale=32)
    assert img.dtype == np.uint8 and img.shape == a.shape + (3,)
    assert np.median(img[c][..., 0]) == pytest.approx(128 + 32 * shift[0], abs=4)
    assert np.median(img[c][..., 1]) == pytest.approx(128 + 32 * shift[1], abs=4)
    assert np.median(img[c][..., 2]) == pytest.approx(32 * np.hypot(*shift), abs=4)


def test_flow_encoding_centered_at_128():
    a = _texture()
    u, v = mav.dense_flow(a, a)
    img = mav.flow_to_image(u, v)
    assert (img[..., 0] == 128).all() and (img[..., 1] == 128).all() and (img[..., 2] == 0).all()
    uu, vv = mav.image_to_flow(mav.flow_to_image(np.full((2, 2), 0.5), np.full((2, 2), -1.25), 32), 32)
    assert np.allclose(uu, 0.5) and np.allclose(vv, -1.25)


def test_videos_move_the_way_their_class_says():
    ys, xs = np.mgrid[0:32, 0:32] - 15.5
    for s in range(3):
        flows = {}
        for cls in ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw"):
            g = mav.to_gray(mav.render_video(cls, np.random.default_rng([s, 9])))
            flows[cls] = mav.dense_flow(g[:-1], g[1:])
        assert flows["move_right"][0].mean() > 0.05 > -0.05 > flows["move_left"][0].mean()
        assert flows["move_down"][1].mean() > 0.05 > -0.05 > flows["move_up"][1].mean()
        # clockwise on screen (y down): cross(r, flow) = x*v - y*u > 0
        cross = {c: (xs * flows[c][1] - ys * flows[c][0]).mean() for c in ("rotate_cw", "rotate_ccw")}
        assert cross["rotate_cw"] > 0.1 and cross["rotate_ccw"] < -0.1
        br = mav.to_gray(mav.render_video("brighten", np.random.default_rng([s, 9]))).mean(axis=(1, 2))
        assert br[-1] > br[0] + 0.005
        grow = mav.render_video("grow", np.random.default_rng([s, 9])).astype(float)
        bg = np.median(grow[0, :2, :2])  # corners are background
        area = (np.abs(grow - bg).max(axis=-1) > 40).sum(axis=(1, 2))
        assert area[-1] > 2 * area[0]


def test_generate_layout_lists_and_determinism(tmp_path):
    lists = mav.generate(str(tmp_path / "a"), num_train=2, num_test=1, frames=6, size=16, seed=1)
    mav.generate(str(tmp_path / "b"), num_train=2, num_test=1, frames=6, size=16, seed=1)
    root = tmp_path / "a"
    assert len(lists["train"]) == 2 * len(mav.CLASSES) and len(lists["test"]) == len(mav.CLASSES)
    classes = (root / "classes.txt").read_text().splitlines()
    assert classes == ["%d %s" % (i, c) for i, c in enumerate(mav.CLASSES)]
    for split, n in (("train", 2), ("test", 1)):
        for kind, nimg in (("", 6), ("flow_", 5)):
            lines = (root / ("%s%slist.txt" % (kind, split))).read_text().splitlines()
            assert len(lines) == n * len(mav.CLASSES)
            for line in lines:
                folder, label = line.split(" ")
                cls = folder.split("/")[1]
                assert folder.startswith("flow/" if kind else "frames/")
                assert int(label) == mav.CLASSES.index(cls)
                files = sorted(os.listdir(root / folder))
                assert files == ["%04d.png" % i for i in range(1, nimg + 1)]
    f = Image.open(root / "frames" / "grow" / "grow_0000" / "0001.png")
    assert f.size == (16, 16) and f.mode == "RGB"
    fl = np.asarray(Image.open(root / "flow" / "brighten" / "brighten_0002" / "0003.png"))
    assert fl.shape == (16, 16, 3)
    for sub in ("frames/move_up/move_up_0001/0004.png", "flow/rotate_cw/rotate_cw_0002/0002.png",
                "trainlist.txt", "flow_testlist.txt"):
        assert (root / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes()


def test_activity_cli_rejects_bad_args(tmp_path, capsys):
    assert make_activity_videos.main(["--out", str(tmp_path / "x"), "--frames", "1"]) != 0
    assert "frames" in capsys.readouterr().err


def test_video_description_generator(tmp_path):
    a = mvd.generate(str(tmp_path / "a"), num_train=400, num_test=50, seed=3)
    b = mvd.generate(str(tmp_path / "b"), num_train=400, num_test=50, seed=3)
    for split in ("train", "test"):
        for k in a[split]:
            assert np.array_equal(a[split][k], b[split][k])
    assert (tmp_path / "a" / "captions_train.json").read_bytes() == \
        (tmp_path / "b" / "captions_train.json").read_bytes()
    with h5py.File(str(tmp_path / "a" / "video_description.h5"), "r") as h5:
        g = h5["train"]
        tri = g["true_triple"][:]
        assert tri.shape == (400, 3) and g["video_id"].shape == (400,)
        assert g["crf_max/concat"].shape == (400, 23) and g["crf_prob/concat"].shape == (400, 23)
        assert json.loads(h5.attrs["verbs"])[3] == "take out"
        for c, (name, vocab) in enumerate(mvd.COMPONENTS):
            mx, pr = g["crf_max/" + name][:], g["crf_prob/" + name][:]
            assert mx.shape == pr.shape == (400, len(vocab))
            assert np.allclose(mx.sum(1), 1) and set(np.unique(mx)) == {0.0, 1.0}
            assert np.allclose(pr.sum(1), 1, atol=1e-5)
            assert np.array_equal(mx.argmax(1), pr.argmax(1))
            wrong = mx.argmax(1) != tri[:, c]
            assert 0.03 < wrong.mean() < 0.5  # noisy, but mostly right
            # when the max is wrong, the true class still keeps well above-chance mass
            true_p = pr[wrong, tri[wrong, c]]
            assert true_p.mean() > 1.0 / len(vocab)
            # ... and is usually the runner-up (vs 1/(K-1) for a random wrong class)
            second = np.argsort(-pr[wrong], axis=1)[:, 1]
            assert (second == tri[wrong, c]).mean() > 0.4
    coco = json.loads((tmp_path / "a" / "captions_train.json").read_text())
    per = {}
    for ann in coco["annotations"]:
        per.setdefault(ann["image_id"], []).append(ann["caption"])
    assert set(per) == set(range(400))
    for vid, sents in per.items():
        assert 1 <= len(sents) <= 3 and len(set(sents)) == len(sents)
        s, v, o = a["train"]["true_triple"][vid]
        for sent in sents:
            padded = " %s " % sent
            assert " %s " % mvd.SUBJECTS[s] in padded and " %s " % mvd.OBJECTS[o] in padded
            assert " %s " % mvd.VERBS[v][1] in padded or " %s " % mvd.VERBS[v][2] in padded
    assert mvd.sentence((2, 3, 2), mvd.TEMPLATES[1]) == "a woman takes out an onion"
