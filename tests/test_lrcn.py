"""LRCN end to end: the captioning prototxts on a tiny generated dataset, the ImageData /
HDF5Data alignment, the deploy nets, the full-size variant, and clip averaging."""
import json
import os

import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
from caffelite.lrcn import shapes_dataset
from caffelite.prototxt import read_prototxt
from caffelite.proto import caffelite_pb2 as pb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROTO = os.path.join(ROOT, "prototxt")
N = 4          # streams (= images per batch) of the tiny dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes"))
    info = shapes_dataset.prepare(out, verbose=False, num_train=7, num_val=3, buffer_size=N)
    return out, info


def _lrcn_param(out, phase_data="h5_train"):
    """prototxt/lrcn.prototxt with its data layers pointed at the tiny dataset, batch N."""
    param = read_prototxt(os.path.join(PROTO, "lrcn.prototxt"), pb.NetParameter())
    for layer in param.layer:
        if layer.type == "ImageData":
            split = "h5_val" if "test-on-val" in str(layer.include) else "h5_train"
            layer.image_data_param.source = os.path.join(out, split,
                                                         "image_list.with_dummy_labels.txt")
            layer.image_data_param.batch_size = N
        elif layer.type == "HDF5Data":
            split = "h5_val" if "test-on-val" in str(layer.include) else "h5_train"
            layer.hdf5_data_param.source = os.path.join(out, split, "hdf5_chunk_list.txt")
    return param


def test_lrcn_prototxt_forward_backward(tiny):
    out, info = tiny
    assert info["train"]["vocab_size"] + 1 <= 37          # ids fit the Embed's input_dim
    caffelite.set_random_seed(1)
    net = caffelite.Net(_lrcn_param(out), caffelite.TRAIN)
    assert net.blobs["data"].shape == (N, 3, 64, 64)
    assert net.blobs["fc_image"].shape == (N, 128)
    assert net.blobs["lstm2"].shape == (20, N, 128)
    assert net.blobs["predict"].shape == (20, N, 37)
    net.clear_param_diffs()
    loss = net.forward_backward()
    # small initial weights: near-uniform predictions over the 37 ids
    assert abs(loss - np.log(37)) < 0.1
    # the gradient reaches every layer's weights, the CNN trunk through LSTM2's static input
    for name in ("conv1", "conv2", "conv3", "fc_image", "embedding", "lstm1", "lstm2",
                 "predict"):
        assert np.abs(net.params[name][0].diff).max() > 0, name
    # LSTM2's parameters: W_xc, b_c, W_xc_static (image feature), W_hc
    assert [p.data.shape for p in net.params["lstm2"]] == [(512, 128), (512,), (512, 128),
                                                            (512, 128)]
    test = caffelite.Net(_lrcn_param(out), caffelite.TEST, stages=["test-on-val"])
    res = test.forward()
    assert 0.0 <= float(res["accuracy"]) <= 1.0 and np.isfinite(res["cross_entropy_loss"])


def test_image_k_pairs_with_stream_column_k(tiny):
    """Every ImageData batch lines up with the HDF5 stream batch: the image's dummy label is
    the hash of its path (LRCN's hashed_image_path), and the words of column k are one of
    the reference captions of image k -- through several batches and the epoch wrap."""
    out, info = tiny
    param = _lrcn_param(out)
    keep = [l for l in param.layer if "phase: TEST" not in str(l.include)][:2]
    for l in keep:
        if l.type == "HDF5Data":
            l.top.append("hashed_image_path")
    del param.layer[:]
    param.layer.extend(keep)
    net = caffelite.Net(param, caffelite.TRAIN)
    coco = json.load(open(os.path.join(out, "captions_train.json")))
    by_file = {im["file_name"]: im["id"] for im in coco["images"]}
    refs = {}
    for a in coco["annotations"]:
        refs.setdefault(a["image_id"], set()).add(a["caption"])
    vocab = ["<EOS>"] + open(os.path.join(out, "h5_train", "vocabulary.txt")).read().split()
    lines = open(os.path.join(out, "h5_train", "image_list.txt")).read().split()
    batches = info["train"]["aligned_pairs"] // N
    from caffelite.data.images import read_image as load_image
    for b in range(batches + 2):                       # past the wrap-around
        net.forward()
        label = net.blobs["label"].data
        hashes = net.blobs["hashed_image_path"].data
        target = net.blobs["target_sentence"].data
        cont = net.blobs["cont_sentence"].data
        np.testing.assert_array_equal(np.broadcast_to(label, hashes.shape), hashes)
        for k in range(N):
            path = lines[(b % batches) * N + k]
            image = (load_image(path).astype(np.float32) - 128) * 0.0078125
            np.testing.assert_allclose(net.blobs["data"].data[k], image, atol=1e-6)
            words = []
            for t in range(20):
                if target[t, k] == 0:
                    break
                words.append(vocab[int(target[t, k])])
            known = [{" ".join(w if w in vocab else "<unk>" for w in c.split()) for c in
                      refs[by_file[os.path.basename(path)]]}]
            assert " ".join(words) in known[0]
            assert cont[0, k] == 0 and np.all(cont[1:len(words) + 1, k] == 1)


def _copy_params(src, dst):
    for name, blobs in dst.params.items():
        for a, b in zip(src.params[name], blobs):
            b.data[...] = a.data


def test_deploy_nets_reproduce_the_training_net(tiny):
    """The two deploy nets (image -> feature, one expose_hidden word step) run with the
    training weights give the training net's per-step predictions."""
    out, _ = tiny
    from caffelite.lrcn.captioner import NetStepper
    caffelite.set_random_seed(2)
    train = caffelite.Net(_lrcn_param(out), caffelite.TRAIN)
    train.forward()
    image = caffelite.Net(os.path.join(PROTO, "lrcn_deploy_image.prototxt"), caffelite.TEST)
    word = caffelite.Net(os.path.join(PROTO, "lrcn_deploy_word.prototxt"), caffelite.TEST)
    _copy_params(train, image)
    _copy_params(train, word)
    feats = image.feed(data=train.blobs["data"].data).forward(blobs=["fc_image"])["fc_image"]
    np.testing.assert_allclose(feats, train.blobs["fc_image"].data, rtol=1e-4, atol=1e-5)
    stepper = NetStepper(word)
    state = stepper.initial_state([feats])
    inp, cont = train.blobs["input_sentence"].data, train.blobs["cont_sentence"].data
    for t in range(6):
        # step t of every column that has not ended (cont 1 after t = 0)
        logits, state = stepper(inp[t], t, state)
        live = (cont[t] == 1) | (t == 0)
        np.testing.assert_allclose(logits[live], train.blobs["predict"].data[t][live],
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_full_caffenet_variant_builds_and_runs():
    """prototxt/lrcn_full_caffenet.prototxt (CaffeNet 227x227, 1000-unit LSTMs, 8801 ids) with
    its data layers replaced by Input layers of N = 2 images and T = 2 steps."""
    param = read_prototxt(os.path.join(PROTO, "lrcn_full_caffenet.prototxt"), pb.NetParameter())
    layers = [l for l in param.layer if l.type not in ("ImageData", "HDF5Data", "Silence")]
    inputs = text_format.Parse("""
        name: "input" type: "Input" top: "data" top: "cont_sentence" top: "input_sentence"
        top: "target_sentence"
        input_param { shape { dim: 2 dim: 3 dim: 227 dim: 227 } shape { dim: 2 dim: 2 }
                      shape { dim: 2 dim: 2 } shape { dim: 2 dim: 2 } }""", pb.LayerParameter())
    del param.layer[:]
    param.layer.extend([inputs] + layers)
    caffelite.set_random_seed(3)
    net = caffelite.Net(param, caffelite.TEST)
    assert [p.data.shape for p in net.params["lstm2"]] == [(4000, 1000), (4000,), (4000, 1000),
                                                            (4000, 1000)]
    assert net.params["embedding"][0].data.shape == (8801, 1000)
    rng = np.random.default_rng(0)
    out = net.forward(data=rng.uniform(-50, 50, (2, 3, 227, 227)),
                      cont_sentence=np.array([[0, 0], [1, 1]]),
                      input_sentence=np.array([[0, 0], [17, 4000]]),
                      target_sentence=np.array([[17, 4000], [0, -1]]))
    assert net.blobs["fc8"].data.shape == (2, 1000)
    assert net.blobs["predict"].data.shape == (2, 2, 8801)
    assert np.isfinite(out["cross_entropy_loss"]) and out["cross_entropy_loss"] > 0
    assert 0 <= out["accuracy"] <= 1


def test_activity_clip_averaging_exact():
    from caffelite.lrcn.activity import accuracy, clip_scores, fuse, video_scores
    # 2 steps x 3 clips x 2 classes
    probs = np.array([[[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]],
                      [[0.4, 0.6], [0.8, 0.2], [0.0, 1.0]]])
    clips = clip_scores(probs)
    np.testing.assert_allclose(clips, [[0.3, 0.7], [0.7, 0.3], [0.5, 0.5]])
    # clips of batch 2 (video 1 continues across batches; video 0 has one clip)
    more = np.array([[0.1, 0.9], [0.9, 0.1]])
    scores = np.concatenate([clips, more])
    vids = np.array([0, 1, 1, 1, 2])
    v = video_scores(scores, vids, 3)
    np.testing.assert_allclose(v, [[0.3, 0.7], [(0.7 + 0.5 + 0.1) / 3, (0.3 + 0.5 + 0.9) / 3],
                                   [0.9, 0.1]])
    assert accuracy(v, [1, 1, 0]) == 1.0 and accuracy(v, [0, 0, 0]) == pytest.approx(1 / 3)
    np.testing.assert_allclose(fuse([[1.0, 0.0]], [[0.25, 0.75]], 2 / 3), [[0.5, 0.5]])
    with pytest.raises(ValueError):
        video_scores(scores, vids, 4)                  # video 3 has no clip


def test_video_description_streams(tmp_path):
    """caffelite.lrcn.video_description.prepare: the encoder sequence splits the CRF max vector into its
    subject / verb / object blocks, the decoder's cont keeps the encoder state at step 0, and
    the CRF vector is repeated on the T rows of its caption's block."""
    import h5py
    from caffelite.lrcn import video_description as vd, video_description_data
    video_description_data.generate(str(tmp_path), num_train=30, num_test=5, seed=1)
    vd.prepare(str(tmp_path))
    with h5py.File(tmp_path / "h5_train" / "batch_0.h5", "r") as f:
        a = {k: f[k][:] for k in f}
    T = vd.T
    blocks = a["crf_max"].reshape(-1, T, vd.N, 23)
    assert np.all(blocks == blocks[:, :1])                       # constant within a block
    enc = a["enc_input"].reshape(-1, T, vd.N, 23)
    np.testing.assert_array_equal(enc[:, :3].sum(axis=1), blocks[:, 0])
    assert np.all(enc[:, 3:] == 0)
    assert np.all(enc[:, :3].sum(axis=3) == 1)                   # one one-hot block per step
    np.testing.assert_array_equal(a["enc_cont"].reshape(-1, T, vd.N)[:, :3],
                                  np.broadcast_to([[0], [1], [1]], (len(enc), 3, vd.N)))
    cont = a["cont_sentence"].reshape(-1, T, vd.N)
    dec = a["dec_cont"].reshape(-1, T, vd.N)
    assert np.all(cont[:, 0] == 0) and np.all(dec[:, 0] == 1)
    np.testing.assert_array_equal(dec[:, 1:], cont[:, 1:])
    seq = vd.encoder_sequence(np.eye(23)[[0, 5, 13]])
    assert seq.shape == (3, 3, 23)
    np.testing.assert_array_equal(seq.sum(axis=0), np.eye(23)[[0, 5, 13]])
    np.testing.assert_array_equal(seq[1, 0], 0)                  # subject one-hot not at step 1
    assert seq[0, 0, 0] == 1 and seq[1, 1, 5] == 1 and seq[2, 2, 13] == 1
