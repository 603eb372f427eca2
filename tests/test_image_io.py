"""pycaffe's caffe.io image side (caffelite.data) and its BlobProto/Datum helpers."""
import numpy as np
import pytest
from PIL import Image

from caffelite import io as cio
from caffelite.errors import CaffeliteError
from caffelite.data.images import load_image, resize_image
from caffelite.data.pycaffe_transformer import Transformer, oversample
from caffelite.proto import caffelite_pb2 as pb


# -- Transformer ------------------------------------------------------------------------------
def image(h=4, w=5, k=3, seed=0):
    return np.random.default_rng(seed).random((h, w, k)).astype(np.float32)


def imagenet_transformer(shape=(2, 3, 4, 5), mean=np.array([10.0, 20.0, 30.0])):
    t = Transformer({'data': shape})
    t.set_transpose('data', (2, 0, 1))
    t.set_channel_swap('data', (2, 1, 0))
    t.set_raw_scale('data', 255.0)
    t.set_mean('data', mean)
    t.set_input_scale('data', 0.5)
    return t


def test_preprocess_values_by_hand():
    img = image()
    out = imagenet_transformer().preprocess('data', img)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    # out[c] = (img[:, :, swap[c]] * raw_scale - mean[c]) * input_scale, swap = (2, 1, 0)
    expected = np.stack([(img[:, :, 2] * 255.0 - 10.0) * 0.5,
                         (img[:, :, 1] * 255.0 - 20.0) * 0.5,
                         (img[:, :, 0] * 255.0 - 30.0) * 0.5])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_preprocess_order_mean_before_input_scale_after_raw_scale():
    """A one-pixel, one-channel case where every step is visible: ((x * 4) - 1) * 3."""
    t = Transformer({'x': (1, 1, 1, 1)})
    t.set_raw_scale('x', 4.0)
    t.set_mean('x', np.array([1.0]))
    t.set_input_scale('x', 3.0)
    assert t.preprocess('x', np.full((1, 1, 1), 2.0))[0, 0, 0] == pytest.approx((2 * 4 - 1) * 3)
    assert t.deprocess('x', np.full((1, 1, 1), 21.0)) == pytest.approx(2.0)   # squeezed


def test_preprocess_elementwise_mean_and_no_mutation():
    img = image()
    keep = img.copy()
    mean = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
    t = imagenet_transformer(mean=mean)
    out = t.preprocess('data', img)
    expected = (img.transpose(2, 0, 1)[::-1] * 255.0 - mean) * 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(img, keep)          # the caller's image is untouched


def test_round_trip():
    img = image()
    t = imagenet_transformer()
    caffe_in = t.preprocess('data', img)
    np.testing.assert_allclose(t.deprocess('data', caffe_in), img, atol=1e-5)
    # a batch of one (net.blobs['data'].data[:1]) deprocesses too; one channel comes back
    # H x W, as pycaffe's squeeze gives it (pycaffe fails where a transpose is set, as here)
    np.testing.assert_allclose(t.deprocess('data', caffe_in[None]), img, atol=1e-5)
    gray = Transformer({'g': (1, 1, 4, 5)})
    gray.set_transpose('g', (2, 0, 1))
    gray.set_raw_scale('g', 255)
    g = image(k=1)
    back = gray.deprocess('g', gray.preprocess('g', g)[None])
    assert back.shape == (4, 5)
    np.testing.assert_allclose(back, g[..., 0], atol=1e-5)
    plain = Transformer({'g': (1, 1, 4, 5)})                 # LeNet's input: no settings
    assert plain.deprocess('g', np.ones((1, 1, 4, 5))).shape == (4, 5)


def test_preprocess_resizes_to_the_input_size():
    img = image(h=7, w=9)
    t = imagenet_transformer()
    expected = t.preprocess('data', resize_image(img, (4, 5)))
    np.testing.assert_allclose(t.preprocess('data', img), expected, rtol=1e-6)
    batch = t.preprocess_batch('data', [img, image(seed=3)])
    np.testing.assert_allclose(batch[0], expected, rtol=1e-6)
    np.testing.assert_allclose(batch[1], t.preprocess('data', image(seed=3)), rtol=1e-6)


def test_transformer_settings_are_checked():
    t = Transformer({'data': (1, 3, 4, 5)})
    with pytest.raises(CaffeliteError, match='not one of the net inputs'):
        t.preprocess('label', image())
    with pytest.raises(CaffeliteError, match='same number of dimensions'):
        t.set_transpose('data', (1, 0))
    with pytest.raises(CaffeliteError, match='input channels'):
        t.set_channel_swap('data', (1, 0))
    with pytest.raises(ValueError, match='channels incompatible'):
        t.set_mean('data', np.zeros(4))
    with pytest.raises(ValueError, match='incompatible with input shape'):
        t.set_mean('data', np.zeros((3, 5, 5)))


# -- resize_image -----------------------------------------------------------------------------
def test_resize_bilinear_upsample_by_hand():
    """2 -> 4 samples with centres aligned: x = (i + 1/2)/2 - 1/2 = -1/4, 1/4, 3/4, 5/4;
    the samples beyond the border count as the image minimum (mode 'constant')."""
    img = np.array([[0.0, 1.0], [2.0, 3.0]])[:, :, None]
    m = np.array([[0.75, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 0.75]])
    expected = m @ img[:, :, 0] @ m.T
    out = resize_image(img, (4, 4))
    assert out.shape == (4, 4, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=1e-6)
    # an offset image: the border blends towards its own minimum (5), not towards 0
    np.testing.assert_allclose(resize_image(img + 5, (4, 4))[:, :, 0], expected + 5, rtol=1e-6)


def test_resize_nearest_and_constant():
    img = np.arange(16.0).reshape(4, 4, 1)
    # 4 -> 2: x = (i + 1/2) 2 - 1/2 = 0.5, 2.5 -> rows/cols 1 and 3 (round half up)
    np.testing.assert_array_equal(resize_image(img, (2, 2), interp_order=0)[:, :, 0],
                                  img[[1, 3]][:, [1, 3], 0])
    flat = np.full((3, 3, 3), 7.0)
    out = resize_image(flat, (5, 2))
    assert out.shape == (5, 2, 3) and (out == 7.0).all()


def test_resize_other_channel_counts_align_corners():
    """K not in {1, 3}: scipy.ndimage.zoom's mapping x = i (n_in - 1)/(n_out - 1)."""
    img = np.random.default_rng(1).random((3, 4, 2))
    out = resize_image(img, (5, 4))
    rows = np.linspace(0, 2, 5)
    for k in range(2):
        for j in range(4):
            np.testing.assert_allclose(out[:, j, k], np.interp(rows, np.arange(3), img[:, j, k]),
                                       rtol=1e-6)


@pytest.mark.parametrize('shape,new', [((7, 9, 3), (12, 5)), ((10, 10, 1), (4, 7)),
                                       ((6, 4, 2), (9, 3)), ((6, 4, 5), (3, 8))])
@pytest.mark.parametrize('order', [0, 1, 3])
def test_resize_matches_scipy(shape, new, order):
    """pycaffe resizes with skimage (== ndimage.zoom, grid mode, grid-constant, for K in
    {1, 3}) or ndimage.zoom (other K)."""
    ndimage = pytest.importorskip('scipy.ndimage')
    img = np.random.default_rng(2).random(shape) * 200 - 20
    out = resize_image(img, new, interp_order=order)
    factors = (new[0] / shape[0], new[1] / shape[1], 1)
    if shape[-1] in (1, 3):
        low, high = img.min(), img.max()
        unit = ndimage.zoom((img - low) / (high - low), factors, order=order,
                            mode='grid-constant', grid_mode=True)
        expected = np.clip(unit, 0, 1) * (high - low) + low
    else:
        expected = ndimage.zoom(img, factors, order=order)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


# -- oversample -------------------------------------------------------------------------------
def test_oversample_crop_positions_and_mirrors():
    h, w, ch, cw = 7, 9, 4, 5
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    first = np.stack([ys * 100 + xs, ys, xs], axis=2).astype(np.float32)
    second = first + 10000
    crops = oversample([first, second], (ch, cw))
    assert crops.shape == (20, ch, cw, 3) and crops.dtype == np.float32
    # corners TL, TR, BL, BR, then the centre at floor(7/2 - 2) = 1, floor(9/2 - 2.5) = 2
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (1, 2)]
    for n, img in enumerate([first, second]):
        for k, (y, x) in enumerate(corners):
            np.testing.assert_array_equal(crops[10 * n + k], img[y:y + ch, x:x + cw])
            np.testing.assert_array_equal(crops[10 * n + 5 + k], img[y:y + ch, x:x + cw][:, ::-1])


def test_oversample_rejects_large_crop():
    with pytest.raises(ValueError, match='does not fit'):
        oversample([image()], (5, 5))


# -- load_image -------------------------------------------------------------------------------
def test_load_image_colour_gray_alpha(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    img = load_image(tmp_path / 'rgb.png')
    assert img.shape == (5, 7, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, rgb / 255.0, rtol=1e-6)
    gray = load_image(tmp_path / 'rgb.png', color=False)
    assert gray.shape == (5, 7, 1)
    np.testing.assert_allclose(gray[:, :, 0], (rgb / 255.0) @ [0.2125, 0.7154, 0.0721],
                               rtol=1e-5)

    lum = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    Image.fromarray(lum).save(tmp_path / 'l.png')
    as_colour = load_image(tmp_path / 'l.png')
    assert as_colour.shape == (4, 6, 3)
    for c in range(3):
        np.testing.assert_allclose(as_colour[:, :, c], lum / 255.0, rtol=1e-6)
    np.testing.assert_allclose(load_image(tmp_path / 'l.png', color=False)[:, :, 0], lum / 255.0,
                               rtol=1e-6)

    rgba = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / 'a.png')
    np.testing.assert_allclose(load_image(tmp_path / 'a.png'), rgba[:, :, :3] / 255.0, rtol=1e-6)

    deep = rng.integers(0, 65536, (3, 4), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / 'd.png')
    np.testing.assert_allclose(load_image(tmp_path / 'd.png', color=False)[:, :, 0],
                               deep / 65535.0, rtol=1e-6)


def test_load_image_errors(tmp_path):
    with pytest.raises(CaffeliteError, match='does not exist'):
        load_image(tmp_path / 'missing.jpg')
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    with pytest.raises(CaffeliteError, match='cannot decode image'):
        load_image(tmp_path / 'bad.jpg')


# -- caffe.io re-exports and BlobProto / Datum ------------------------------------------------
def test_io_reexports_image_functions():
    assert cio.load_image is load_image and cio.Transformer is Transformer
    assert cio.resize_image is resize_image and cio.oversample is oversample


def test_blobproto_round_trips():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
    proto = cio.array_to_blobproto(a, diff=-a)
    assert list(proto.shape.dim) == [2, 3, 4]
    np.testing.assert_allclose(cio.blobproto_to_array(proto), a, rtol=1e-6)
    np.testing.assert_allclose(cio.blobproto_to_array(proto, return_diff=True), -a, rtol=1e-6)
    legacy = pb.BlobProto(num=1, channels=2, height=1, width=3, data=[1, 2, 3, 4, 5, 6])
    assert cio.blobproto_to_array(legacy).shape == (1, 2, 1, 3)
    arrays = cio.blobprotovector_str_to_arraylist(
        cio.arraylist_to_blobprotovector_str([a, a[0, 0]]))
    assert [x.shape for x in arrays] == [(2, 3, 4), (4,)]
    np.testing.assert_allclose(arrays[1], a[0, 0], rtol=1e-6)


def test_datum_round_trips():
    raw = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    datum = cio.array_to_datum(raw, label=7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (2, 3, 4, 7)
    assert datum.data == raw.tobytes() and not datum.float_data
    back = cio.datum_to_array(datum)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, raw)
    floats = raw.astype(np.float32) / 3
    datum = cio.array_to_datum(floats)
    assert not datum.data and not datum.HasField('label')
    np.testing.assert_allclose(cio.datum_to_array(datum), floats, rtol=1e-6)
    with pytest.raises(ValueError, match='Incorrect array shape'):
        cio.array_to_datum(raw[0])
    with pytest.raises(CaffeliteError, match='encoded'):
        cio.datum_to_array(pb.Datum(channels=1, height=1, width=1, data=b'x', encoded=True))
