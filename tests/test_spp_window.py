"""WindowData (window file, fg/bg sampling, warp/square crops, context_pad, mean) and more SPP
cases (output size over pyramid heights, gradients where the pyramid needs padding)."""
import numpy as np
import pytest
from PIL import Image

from caffelite.data.images import resize_bilinear
from caffelite.errors import LayerError
from caffelite.gradient_check import check_layer_gradient
from caffelite.io import write_mean_binaryproto
from caffelite.layers.spp_window import read_window_file, window_geometry
from layer_testing import blob, data_layer, forward_once, make as make_layer, tops

pytestmark = pytest.mark.usefixtures('array_backend')

RNG = np.random.default_rng(5)
IMG0 = RNG.integers(0, 256, size=(3, 16, 20), dtype=np.uint8)   # BGR, C x H x W
IMG1 = RNG.integers(0, 256, size=(3, 12, 12), dtype=np.uint8)

WINDOWS = '''# 0
img0.png
3
16
20
3
1 0.9 2 3 9 10
0 0.1 0 0 7 7
2 0.45 1 1 5 5
# 1
img1.png
3 12 12
1
3 0.7 4 4 11 11
'''


def save_bgr(path, bgr):
    Image.fromarray(np.ascontiguousarray(bgr[::-1].transpose(1, 2, 0)), 'RGB').save(path)


@pytest.fixture
def window_file(tmp_path):
    save_bgr(tmp_path / 'img0.png', IMG0)
    save_bgr(tmp_path / 'img1.png', IMG1)
    path = tmp_path / 'windows.txt'
    path.write_text(WINDOWS)
    return path


def make(text, seed=3):
    """A float64 data layer set up on its tops (layer_testing.data_layer); (layer, top)."""
    return data_layer(text, dtype=np.float64, seed=seed, prefetch_depth=0)


def window_layer(source, params='', transform='crop_size: 8'):
    return (f'type: "WindowData" top: "data" top: "label" '
            f'window_data_param {{ source: "{source}" batch_size: 4 fg_threshold: 0.5 '
            f'bg_threshold: 0.3 {params} }} transform_param {{ {transform} }}')


def forward(layer, top):
    layer.forward([], top)
    return top[0].data.copy(), top[1].data.copy()


def test_window_file_splits_fg_and_bg(window_file):
    images, fg, bg = read_window_file(str(window_file), 0.5, 0.3)
    assert [(path, size) for _, path, size in images] == [('img0.png', (3, 16, 20)),
                                                          ('img1.png', (3, 12, 12))]
    np.testing.assert_array_equal(fg, [[0, 1, 2, 3, 9, 10], [1, 3, 4, 4, 11, 11]])
    np.testing.assert_array_equal(bg, [[0, 0, 0, 0, 7, 7]])    # overlap 0.45 is dropped


def test_window_file_errors(tmp_path):
    bad = tmp_path / 'bad.txt'
    bad.write_text('# 0\nimg.png 3 4 4 1\n0 0.9 0 0 1 1\n')
    with pytest.raises(LayerError, match=r'line 3: foreground window .* class 0'):
        read_window_file(str(bad), 0.5, 0.5)
    bad.write_text('# 1\nimg.png 3 4 4 0\n')
    with pytest.raises(LayerError, match=r'line 1: image index 1, expected 0'):
        read_window_file(str(bad), 0.5, 0.5)
    bad.write_text('% 0\n')
    with pytest.raises(LayerError, match=r'line 1: expected "# image_index", got "%"'):
        read_window_file(str(bad), 0.5, 0.5)
    bad.write_text('# 0\nimg.png 3 4\n')
    with pytest.raises(LayerError, match='ends early: expected width'):
        read_window_file(str(bad), 0.5, 0.5)


def test_window_geometry_matches_caffes_arithmetic():
    box = (2, 3, 9, 10)
    assert window_geometry(box, (16, 20), 8, 0, False, False) == (box, (8, 8), (0, 0))
    # context_pad 2: the 8 x 8 box grows by 8 / 4 around its centre (6, 7) to x -2..14,
    # y -1..15 (17 x 17), clipped to x 0..14, y 0..15, warped by 8 / 17.
    assert window_geometry(box, (16, 20), 8, 2, False, False) == \
        ((0, 0, 14, 15), (8, 7), (0, 1))
    assert window_geometry(box, (16, 20), 8, 2, False, True) == \
        ((0, 0, 14, 15), (8, 7), (0, 0))        # the padding is mirrored
    # square: an 8 x 4 box becomes 8 x 8 around its centre (6, 5): x 2..10, y 1..9
    assert window_geometry((2, 3, 9, 6), (16, 20), 8, 0, True, False) == \
        ((2, 1, 10, 9), (8, 8), (0, 0))
    with pytest.raises(LayerError, match='does not lie inside'):
        window_geometry((2, 3, 25, 6), (16, 20), 8, 0, False, False)


def test_warp_batches_bg_then_fg_with_labels_mean_and_scale(window_file):
    layer, top = make(window_layer(window_file, 'fg_fraction: 0.5 scale: 0.5',
                                   'crop_size: 8 mean_value: 10 mean_value: 20 '
                                   'mean_value: 30'))
    assert top[0].shape == (4, 3, 8, 8) and top[1].shape == (4,)
    mean = np.array([10, 20, 30], np.float64)[:, None, None]
    crops = {0: IMG0[:, 0:8, 0:8], 1: IMG0[:, 3:11, 2:10], 3: IMG1[:, 4:12, 4:12]}
    seen = set()
    for _ in range(6):
        data, labels = forward(layer, top)
        assert list(labels[:2]) == [0, 0] and all(lab in (1, 3) for lab in labels[2:])
        for item, label in enumerate(labels):
            np.testing.assert_allclose(data[item], (crops[int(label)] - mean) * 0.5)
            seen.add(int(label))
    assert seen == {0, 1, 3}


def test_mirror_flips_some_windows(window_file):
    layer, top = make(window_layer(window_file, 'fg_fraction: 0', 'crop_size: 8 mirror: true'))
    crop = IMG0[:, 0:8, 0:8].astype(np.float64)
    flips = []
    for _ in range(4):
        data, labels = forward(layer, top)
        for item in data:
            flipped = np.array_equal(item, crop[:, :, ::-1])
            assert flipped or np.array_equal(item, crop)
            flips.append(flipped)
    assert any(flips) and not all(flips)


def test_context_pad_warps_the_clipped_region_and_pads_with_zeros(tmp_path, window_file):
    single = tmp_path / 'one.txt'
    single.write_text('# 0\nimg0.png 3 16 20 1\n1 0.9 2 3 9 10\n')
    layer, top = make(window_layer(single, 'fg_fraction: 1 context_pad: 2'))
    data, labels = forward(layer, top)
    np.testing.assert_array_equal(labels, 1)
    region = IMG0[:, 0:16, 0:15].transpose(1, 2, 0)               # from window_geometry
    warped = resize_bilinear(np.ascontiguousarray(region), 8, 7).transpose(2, 0, 1)
    for item in data:
        np.testing.assert_array_equal(item[:, :, 0], 0)          # pad_w = 1
        np.testing.assert_array_equal(item[:, :, 1:], warped)
    square, top = make(window_layer(single, 'fg_fraction: 1 crop_mode: "square"'))
    assert forward(square, top)[0].shape == (4, 3, 8, 8)


def test_mean_file_centre_crop_is_subtracted(tmp_path, window_file):
    mean = RNG.uniform(0, 255, size=(3, 10, 10)).astype(np.float32)
    write_mean_binaryproto(str(tmp_path / 'mean.binaryproto'), mean)
    layer, top = make(window_layer(window_file, 'fg_fraction: 0',
                                   f'crop_size: 8 mean_file: "{tmp_path}/mean.binaryproto"'))
    data, _ = forward(layer, top)
    expected = IMG0[:, 0:8, 0:8] - mean[:, 1:9, 1:9].astype(np.float64)   # offset (10 - 8) / 2
    for item in data:
        np.testing.assert_allclose(item, expected, rtol=1e-12)


def test_window_data_parameter_errors(tmp_path, window_file):
    with pytest.raises(LayerError, match='crop_size > 0'):
        make(window_layer(window_file, transform=''))
    with pytest.raises(LayerError, match='crop_mode must be "warp" or "square"'):
        make(window_layer(window_file, 'crop_mode: "stretch"'))
    only_fg = tmp_path / 'fg.txt'
    only_fg.write_text('# 0\nimg0.png 3 16 20 1\n1 0.9 2 3 9 10\n')
    with pytest.raises(LayerError, match='no background windows'):
        make(window_layer(only_fg, 'fg_fraction: 0.5'))
    gray = tmp_path / 'gray.txt'
    gray.write_text('# 0\nimg0.png 1 16 20 1\n1 0.9 2 3 9 10\n')
    with pytest.raises(LayerError, match='listed with 1 channels'):
        make(window_layer(gray, 'fg_fraction: 1'))
    missing = tmp_path / 'missing.txt'
    missing.write_text('# 0\nnope.png 3 16 20 1\n1 0.9 2 3 9 10\n')
    with pytest.raises(LayerError, match='missing.txt line 2: image nope.png does not exist'):
        make(window_layer(missing, 'fg_fraction: 1'))


# -- SPP --------------------------------------------------------------------------------------

def spp(height, method='MAX'):
    text = f'type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}'
    return make_layer(text)


def run(layer, x):
    bottom = [blob(x)]
    return bottom, forward_once(layer, bottom, tops())


@pytest.mark.parametrize('height', [2, 3, 4])
def test_spp_output_size_is_the_sum_over_levels(height):
    x = RNG.normal(size=(2, 3, 16, 15))
    _, top = run(spp(height), x)
    assert top[0].shape == (2, sum(3 * 4 ** level for level in range(height)))


@pytest.mark.parametrize('method', ['MAX', 'AVE'])
def test_spp_gradient_with_padded_levels(method):
    # 9 x 7 at level 2 (4 x 4 bins): kernel 3 x 2 with pad 2 x 1
    x = RNG.permutation(2 * 2 * 9 * 7).reshape(2, 2, 9, 7).astype(np.float64) / 7
    layer = spp(3, method)
    bottom, top = run(layer, x)
    assert top[0].shape == (2, 2 * 21)
    if method == 'AVE':   # the coarsest level is the plain mean
        np.testing.assert_allclose(top[0].data[:, :2], x.mean(axis=(2, 3)), rtol=1e-12)
    else:
        np.testing.assert_array_equal(top[0].data[:, :2], x.max(axis=(2, 3)))
    check_layer_gradient(layer, bottom, top, max_checks=80, setup=False)


def test_spp_input_too_small_for_the_pyramid():
    with pytest.raises(LayerError, match='too small'):
        run(spp(3), RNG.normal(size=(1, 1, 3, 3)))
