"""transform_param (DataTransformer), image decoding/resizing, mean .binaryproto files."""
import numpy as np
import pytest
from PIL import Image

from caffelite.data.images import read_image as load_image, resize_bilinear
from caffelite.data.transformer import DataTransformer
from caffelite.errors import LayerError
from caffelite.io import read_mean_binaryproto, write_mean_binaryproto
from caffelite.proto import caffelite_pb2 as pb


def transformer(phase=pb.TRAIN, mean_file=None, **fields):
    p = pb.TransformationParameter(**fields)
    if mean_file is not None:
        p.mean_file = str(mean_file)
    return DataTransformer(p, phase)


def batch(n=3, c=3, h=5, w=6):
    return np.arange(n * c * h * w, dtype=np.uint8).reshape(n, c, h, w)


def reference(x, h_off, w_off, mirror, crop, mean, scale):
    """Caffe's per-pixel loop: out[c, h, w'] = (x[c, h_off+h, w_off+w] - mean[...]) * scale,
    with w' = W'-1-w when mirrored (deliberately loop-based, independent of the code)."""
    n, c, h, w = x.shape
    oh, ow = (crop, crop) if crop else (h, w)
    out = np.zeros((n, c, oh, ow))
    for i in range(n):
        for ch in range(c):
            for r in range(oh):
                for col in range(ow):
                    src = (ch, h_off[i] + r, w_off[i] + col)
                    dst_col = ow - 1 - col if mirror[i] else col
                    m = mean[src] if mean.ndim == 3 else mean[ch]
                    out[i, ch, r, dst_col] = (float(x[i][src]) - m) * scale
    return out


def test_identity_is_a_float_copy():
    x = batch()
    out = transformer().transform(x, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_scale_and_mean_values():
    x = batch()
    out = transformer(scale=0.5, mean_value=[10.0]).transform(x)
    np.testing.assert_allclose(out, (x - 10.0) * 0.5)
    out = transformer(mean_value=[1.0, 2.0, 3.0], scale=2.0).transform(x)
    np.testing.assert_allclose(out, (x - np.array([1.0, 2.0, 3.0])[:, None, None]) * 2.0)


def test_random_crop_and_mirror_match_caffe_loop_under_seed():
    x = batch(n=4, h=7, w=9)
    t = transformer(crop_size=4, mirror=True, mean_value=[5.0, 6.0, 7.0], scale=0.25)
    out = t.transform(x, np.random.default_rng(11))
    h_off, w_off, mirror = t.draw(4, 7, 9, np.random.default_rng(11))
    assert set(h_off) <= set(range(4)) and set(w_off) <= set(range(6))
    expected = reference(x, h_off, w_off, mirror, 4, np.array([5.0, 6.0, 7.0]), 0.25)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # the same seed gives the same crops; the draws cover more than one position
    np.testing.assert_array_equal(out, t.transform(x, np.random.default_rng(11)))
    draws = t.draw(200, 7, 9, np.random.default_rng(3))
    assert len(set(draws[0])) == 4 and len(set(draws[1])) == 6 and 0 < draws[2].mean() < 1


def test_center_crop_at_test_and_explicit_offsets():
    x = batch(n=2, h=7, w=10)
    t = transformer(pb.TEST, crop_size=4)
    out = t.transform(x, np.random.default_rng(0))
    np.testing.assert_array_equal(out, x[:, :, 1:5, 3:7])
    # explicit offsets and mirror: second item flipped left-right
    out = t.transform(x, offsets=(np.array([0, 3]), np.array([6, 2]), np.array([False, True])))
    np.testing.assert_array_equal(out[0], x[0, :, 0:4, 6:10])
    np.testing.assert_array_equal(out[1], x[1, :, 3:7, 2:6][:, :, ::-1])


def test_mirror_without_crop():
    x = batch(n=2)
    out = transformer(mirror=True).transform(
        x, offsets=(np.zeros(2, int), np.zeros(2, int), np.array([True, False])))
    np.testing.assert_array_equal(out[0], x[0, :, :, ::-1])
    np.testing.assert_array_equal(out[1], x[1])


def test_mean_file_is_taken_at_the_crop_offset(tmp_path):
    x = batch(n=3, h=6, w=8)
    mean = np.random.default_rng(2).uniform(0, 50, size=(3, 6, 8)).astype(np.float32)
    write_mean_binaryproto(tmp_path / 'mean.binaryproto', mean)
    t = transformer(mean_file=tmp_path / 'mean.binaryproto', crop_size=3, mirror=True,
                    scale=0.5)
    out = t.transform(x, np.random.default_rng(5))
    h_off, w_off, mirror = t.draw(3, 6, 8, np.random.default_rng(5))
    np.testing.assert_allclose(out, reference(x, h_off, w_off, mirror, 3, mean, 0.5),
                               rtol=1e-5, atol=1e-5)
    # no crop: the whole mean image
    out = transformer(mean_file=tmp_path / 'mean.binaryproto').transform(x)
    np.testing.assert_allclose(out, x - mean[None], rtol=1e-6)


def test_clip_batches_share_one_crop_per_item_and_time_major():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(2, 4, 3, 6, 7), dtype=np.uint8)   # (N, T, C, H, W)
    t = transformer(crop_size=3, mirror=True, mean_value=[1.0, 2.0, 3.0])
    item_major = t.transform(x, np.random.default_rng(9))
    offsets = t.draw(2, 6, 7, np.random.default_rng(9))
    for n in range(2):
        one = (offsets[0][[n] * 4], offsets[1][[n] * 4], offsets[2][[n] * 4])
        np.testing.assert_array_equal(item_major[n], t.transform(x[n], offsets=one))
    time_major = t.transform(x, np.random.default_rng(9), time_major=True)
    np.testing.assert_array_equal(time_major, item_major.swapaxes(0, 1))


def test_float64_output_and_float_input():
    x = batch().astype(np.float64) + 0.25
    out = transformer(scale=3.0).transform(x, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, x * 3.0)


@pytest.mark.parametrize('fields, message', [
    (dict(force_color=True, force_gray=True), 'force_color and force_gray'),
])
def test_bad_params(fields, message):
    with pytest.raises(LayerError, match=message):
        transformer(**fields)


def test_bad_shapes(tmp_path):
    with pytest.raises(LayerError, match='crop_size 9 is larger'):
        transformer(crop_size=9).transform(batch())
    with pytest.raises(LayerError, match='1 mean_value or one per channel'):
        transformer(mean_value=[1.0, 2.0]).transform(batch())
    write_mean_binaryproto(tmp_path / 'm.binaryproto', np.zeros((3, 4, 4)))
    with pytest.raises(LayerError, match='mean_file shape'):
        transformer(mean_file=tmp_path / 'm.binaryproto').transform(batch())
    with pytest.raises(LayerError, match='mean_file or mean_value'):
        transformer(mean_file=tmp_path / 'm.binaryproto', mean_value=[1.0])
    with pytest.raises(LayerError, match='does not exist'):
        transformer(mean_file=tmp_path / 'missing.binaryproto')


def test_mean_binaryproto_round_trip_in_caffe_layout(tmp_path):
    mean = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    path = tmp_path / 'mean.binaryproto'
    write_mean_binaryproto(path, mean)
    proto = pb.BlobProto()
    proto.ParseFromString(path.read_bytes())
    assert (proto.num, proto.channels, proto.height, proto.width) == (1, 3, 4, 5)
    np.testing.assert_array_equal(read_mean_binaryproto(path), mean)
    # a mean stored with the N-D shape field and double data also reads
    other = pb.BlobProto()
    other.shape.dim.extend([1, 3, 4, 5])
    other.double_data.extend(mean.astype(np.float64).ravel())
    (tmp_path / 'nd.binaryproto').write_bytes(other.SerializeToString())
    np.testing.assert_allclose(read_mean_binaryproto(tmp_path / 'nd.binaryproto'), mean)


# -- decoding ---------------------------------------------------------------------------------

def test_load_image_is_bgr_chw(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255                       # pure red
    rgb[0, 0] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / 'red.png')
    image = load_image(str(tmp_path / 'red.png'))
    assert image.shape == (3, 4, 5) and image.dtype == np.uint8
    assert (image[2, 1:] == 255).all() and (image[:2, 1:] == 0).all()
    assert tuple(image[:, 0, 0]) == (30, 20, 10)
    gray = load_image(str(tmp_path / 'red.png'), is_color=False)
    assert gray.shape == (1, 4, 5)
    assert gray[0, 1, 1] == 76              # ITU-R 601 luma of (255, 0, 0), as OpenCV


def test_load_image_resizes_and_reports_bad_files(tmp_path):
    Image.fromarray(np.full((4, 6), 77, np.uint8)).save(tmp_path / 'g.png')
    image = load_image(str(tmp_path / 'g.png'), new_height=3, new_width=9)
    assert image.shape == (3, 3, 9) and (image == 77).all()
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    with pytest.raises(LayerError, match='cannot decode image .*bad.jpg'):
        load_image(str(tmp_path / 'bad.jpg'))
    with pytest.raises(LayerError, match='missing.png does not exist'):
        load_image(str(tmp_path / 'missing.png'))


def test_resize_bilinear_matches_opencv_inter_linear():
    row = np.array([[0, 100]], np.uint8)[:, :, None]
    # OpenCV: cv2.resize(row, (4, 1)) == [0, 25, 75, 100] (half-pixel centres, clamped)
    np.testing.assert_array_equal(resize_bilinear(row, 1, 4)[0, :, 0], [0, 25, 75, 100])
    # shrinking by 2 averages pixel pairs (two taps, no antialiasing filter)
    wide = np.array([[0, 40, 100, 200]], np.uint8)[:, :, None]
    np.testing.assert_array_equal(resize_bilinear(wide, 1, 2)[0, :, 0], [20, 150])
    # separable in 2-D, channels independent
    img = np.random.default_rng(0).integers(0, 255, size=(5, 7, 3), dtype=np.uint8)
    out = resize_bilinear(img, 9, 4)
    assert out.shape == (9, 4, 3)
    col_first = resize_bilinear(resize_bilinear(img, 5, 4), 9, 4)
    assert np.abs(out.astype(int) - col_first).max() <= 1


def test_flow_negates_the_x_flow_channel_of_mirrored_items():
    x = batch(n=2, h=4, w=5)
    t = transformer(mirror=True, flow=True, mean_value=[128.0], crop_size=3)
    offsets = (np.array([1, 0]), np.array([2, 1]), np.array([True, False]))
    out = t.transform(x, offsets=offsets)
    flipped = x[0, :, 1:4, 2:5][:, :, ::-1].astype(float)
    flipped[2] = 255 - flipped[2]
    np.testing.assert_array_equal(out[0], flipped - 128)
    np.testing.assert_array_equal(out[1], x[1, :, 0:3, 1:4] - 128.0)
    # clips (time-major): every frame of a mirrored clip is negated
    clips = np.stack([x, x], axis=1)                          # (N=2, T=2, C, H, W)
    out = t.transform(clips, offsets=offsets, time_major=True)
    np.testing.assert_array_equal(out[1, 0], flipped - 128)
    with pytest.raises(LayerError, match='flow needs 3-channel'):
        t.transform(batch(c=1), offsets=offsets)


def test_min_height_width_upscale_keeps_the_aspect_ratio(tmp_path):
    from caffelite.data.images import upscaled_size
    assert upscaled_size(240, 320, 227, 227) is None
    assert upscaled_size(100, 200, 227, 227) == (227, 454)       # height falls shorter
    assert upscaled_size(200, 100, 227, 227) == (454, 227)
    assert upscaled_size(230, 150, 227, 227) == (348, 227)      # 348.07 rounded
    assert upscaled_size(150, 229, 227, 227) == (227, 347)      # 346.55 rounded up
    Image.fromarray(np.full((10, 20, 3), 9, np.uint8)).save(tmp_path / 'small.png')
    image = load_image(str(tmp_path / 'small.png'), min_height=15, min_width=15)
    assert image.shape == (3, 15, 30) and (image == 9).all()
    # new_height/new_width win over the minimum
    assert load_image(str(tmp_path / 'small.png'), new_height=4, new_width=4,
                      min_height=15, min_width=15).shape == (3, 4, 4)
