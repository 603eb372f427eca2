"""VideoData: clips of frames, time-major, with clip markers and per-clip transforms."""
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from caffelite.errors import LayerError
from caffelite.layers.video_data import list_frames
from caffelite.proto import caffelite_pb2 as pb
from layer_testing import data_layer

LRCN = Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'lrcn'


def write_video(folder, video, frames, size=(6, 8), name='{:04d}.png'):
    """Frame f of video v: blue = 10 v + f; red = 10 y + x (to read crops back); green = 50."""
    folder.mkdir(parents=True)
    h, w = size
    for f in range(frames):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = (10 * np.arange(h)[:, None] + np.arange(w)[None, :]) % 256
        rgb[..., 1] = 50
        rgb[..., 2] = 10 * video + f
        Image.fromarray(rgb).save(folder / name.format(f + 1))


@pytest.fixture
def videos(tmp_path):
    """Three videos of 10, 7 and 12 frames, labels 5, 6, 7; list lines 'frames/vK label'."""
    lengths = [10, 7, 12]
    for v, n in enumerate(lengths):
        write_video(tmp_path / 'frames' / f'v{v}', v, n)
    (tmp_path / 'list.txt').write_text(''.join(f'frames/v{v} {5 + v}\n' for v in range(3)))
    return tmp_path


def make(text, phase=pb.TRAIN, source_dir=None, depth=0, seed=1701, tops=3):
    """A VideoData layer with the first ``tops`` of data, label, clip_markers, video, set up
    (layer_testing.data_layer); returns (layer, top)."""
    lp = text_format.Parse(text, pb.LayerParameter())
    lp.top.extend(['data', 'label', 'clip_markers', 'video'][:tops])
    attrs = {} if source_dir is None else {'source_dir': str(source_dir)}
    return data_layer(lp, phase, seed=seed, prefetch_depth=depth, **attrs)


def run(layer, top, n=1):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append([t.data.copy() for t in top])
    return out


def video_param(src, extra=''):
    return f'type: "VideoData" video_data_param {{ source: "{src}" {extra} }}'


def test_time_major_layout_labels_and_clip_markers_at_test(videos):
    layer, top = make(video_param(videos / 'list.txt', 'clip_length: 4 num_clips: 2'),
                      pb.TEST, tops=4)
    assert [t.shape for t in top] == [(8, 3, 6, 8), (4, 2), (4, 2), (2,)]
    (data, labels, markers, video), (data2, labels2, _, video2) = run(layer, top, 2)
    # centre clips: video 0 (10 frames) starts at 3, video 1 (7 frames) at 1
    blue = data[:, 0, 0, 0].reshape(4, 2)                 # row t*N + n
    np.testing.assert_array_equal(blue[:, 0], [3, 4, 5, 6])
    np.testing.assert_array_equal(blue[:, 1], [11, 12, 13, 14])
    np.testing.assert_array_equal(labels, [[5, 6]] * 4)
    np.testing.assert_array_equal(markers, [[0, 0], [1, 1], [1, 1], [1, 1]])
    np.testing.assert_array_equal(video, [0, 1])
    # next batch wraps around the list: video 2 (12 frames, start 4), then video 0
    np.testing.assert_array_equal(data2[:, 0, 0, 0].reshape(4, 2)[:, 0], [24, 25, 26, 27])
    np.testing.assert_array_equal(video2, [2, 0])
    np.testing.assert_array_equal(labels2[0], [7, 5])
    # BGR: channel 1 is green everywhere, channel 2 the red position code
    assert (data[:, 1] == 50).all()
    np.testing.assert_array_equal(data[0, 2], 10 * np.arange(6)[:, None] + np.arange(8))


def test_train_clips_are_consecutive_frames_with_one_crop_and_mirror_per_clip(videos):
    text = video_param(videos / 'list.txt', 'clip_length: 5 num_clips: 3 shuffle: true') + \
        ' transform_param { crop_size: 4 mirror: true mean_value: 1 mean_value: 2 ' \
        'mean_value: 3 }'
    layer, top = make(text, pb.TRAIN, tops=4)
    assert top[0].shape == (15, 3, 4, 4)
    batches = run(layer, top, 4)
    flips, corners = set(), set()
    for data, labels, markers, video in batches:
        frames = data.reshape(5, 3, 3, 4, 4)           # (T, N, C, H, W)
        blue = frames[:, :, 0, 0, 0] + 1               # undo mean_value 1
        np.testing.assert_array_equal(np.diff(blue, axis=0), np.ones((4, 3)))
        start = blue[0] - 10 * video
        lengths = np.array([10, 7, 12])[video.astype(int)]
        assert ((start >= 0) & (start <= lengths - 5)).all()
        np.testing.assert_array_equal(labels, np.tile(5 + video, (5, 1)))
        red = frames[:, :, 2] + 3
        for n in range(3):
            # every frame of a clip has the same crop and flip
            assert (red[:, n] == red[0, n]).all()
            mirrored = red[0, n, 0, 0] > red[0, n, 0, 3]
            corner = red[0, n, 0, 3] if mirrored else red[0, n, 0, 0]
            flips.add(bool(mirrored))
            corners.add(int(corner))
            window = corner + 10 * np.arange(4)[:, None] + np.arange(4)[None, :]
            np.testing.assert_array_equal(red[0, n], window[:, ::-1] if mirrored else window)
    assert flips == {False, True} and len(corners) > 1
    # every video appears once per epoch of 3 clips (3 videos, shuffled)
    order = np.concatenate([b[3] for b in batches])
    assert all(sorted(order[i:i + 3]) == [0, 1, 2] for i in range(0, 12, 3))
    # reproducible with the seed
    again = run(*make(text, pb.TRAIN, tops=4), 4)
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a[0], b[0])


def test_test_all_clips_enumerates_every_clip_with_the_stride(videos):
    text = video_param(videos / 'list.txt', 'clip_length: 4 num_clips: 4 clip_stride: 3 '
                                            'test_all_clips: true')
    layer, top = make(text, pb.TEST, tops=4)
    # video 0 (10 frames): starts 0 3 6; video 1 (7): 0 3; video 2 (12): 0 3 6
    assert layer.clips_per_epoch == 8
    seen = []
    for data, _, markers, video in run(layer, top, 3):
        blue = data[:, 0, 0, 0].reshape(4, 4)
        np.testing.assert_array_equal(np.diff(blue, axis=0), np.ones((3, 4)))
        seen += [(int(v), int(b - 10 * v)) for v, b in zip(video, blue[0])]
        np.testing.assert_array_equal(markers[0], 0)
    expected = [(0, 0), (0, 3), (0, 6), (1, 0), (1, 3), (2, 0), (2, 3), (2, 6)]
    assert seen == expected + expected[:4]                # wraps around


def test_short_videos_repeat_their_last_frame_and_natural_frame_order(tmp_path):
    write_video(tmp_path / 'short', 0, 3)
    folder = tmp_path / 'unpadded'
    write_video(folder, 1, 11, name='img{}.jpg'.replace('.jpg', '.png'))
    assert [Path(p).name for p in list_frames(str(folder))][:3] == ['img1.png', 'img2.png',
                                                                    'img3.png']
    (tmp_path / 'l.txt').write_text(f'{tmp_path / "short"} 0\n{folder} 1\n')
    layer, top = make(video_param(tmp_path / 'l.txt', 'clip_length: 5 num_clips: 2'),
                      pb.TEST)
    data = run(layer, top)[0][0]
    blue = data[:, 0, 0, 0].reshape(5, 2)
    np.testing.assert_array_equal(blue[:, 0], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(blue[:, 1], [13, 14, 15, 16, 17])   # start (11 - 5) // 2


def test_prefetch_matches_no_prefetch(videos):
    text = video_param(videos / 'list.txt', 'clip_length: 3 num_clips: 2 shuffle: true '
                                            'new_height: 5 new_width: 7') + \
        ' transform_param { crop_size: 4 mirror: true scale: 0.5 }'
    sync = run(*make(text, depth=0, seed=4), 5)
    layer, top = make(text, depth=3, seed=4)
    threaded = run(layer, top, 5)
    layer.stop_prefetch()
    assert top[0].shape == (6, 3, 4, 4)
    for a, b in zip(sync, threaded):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_bad_inputs(videos, tmp_path):
    (tmp_path / 'missing.txt').write_text('frames/v0 1\nframes/nope 2\n')
    with pytest.raises(LayerError, match=r'missing.txt line 2: frame folder frames/nope does'):
        make(video_param(tmp_path / 'missing.txt'))
    (tmp_path / 'frames' / 'empty').mkdir()
    (tmp_path / 'empty.txt').write_text('frames/empty 1\n')
    with pytest.raises(LayerError, match=r'empty.txt line 1: frame folder .*empty holds no'):
        make(video_param(tmp_path / 'empty.txt'))
    with pytest.raises(LayerError, match='crop_size 9 is larger'):
        make(video_param(videos / 'list.txt') + ' transform_param { crop_size: 9 }')
    (tmp_path / 'frames' / 'v1' / '0003.png').write_bytes(b'broken')
    layer, top = make(video_param(videos / 'list.txt', 'clip_length: 7 num_clips: 2'),
                      pb.TEST, depth=1)
    with pytest.raises(LayerError, match=r'prefetch thread.*v1/0003.png.*list.txt line 2'):
        layer.forward([], top)


@pytest.mark.skipif(not LRCN.exists(), reason='LRCN reference prototxts not present')
def test_replaces_lrcn_python_input_with_the_shapes_the_net_expects(tmp_path):
    """VideoData in place of LRCN's sequence_input_layer: the data tops reshape to what the
    lstm net's Reshape layers ask for (16 x 24 at TRAIN, 16 x 3 at TEST)."""
    for v in range(2):
        write_video(tmp_path / 'frames' / f'v{v}', v, 18, size=(240, 320))
    (tmp_path / 'list.txt').write_text('frames/v0 3\nframes/v1 4\n')
    net = text_format.Parse((LRCN / 'activity_recognition' / 'train_test_lstm_RGB.prototxt')
                            .read_text(), pb.NetParameter())
    reshapes = {(lp.name, lp.include[0].phase): tuple(lp.reshape_param.shape.dim)
                for lp in net.layer if lp.type == 'Reshape'}
    for lp, n in zip(net.layer[:2], (24, 3)):
        phase = lp.include[0].phase
        video = pb.LayerParameter(name=lp.name, type='VideoData', top=lp.top)
        video.include.extend(lp.include)
        video.transform_param.crop_size = 227
        video.transform_param.mirror = phase == pb.TRAIN
        video.transform_param.mean_value.extend([103.939, 116.779, 128.68])
        video.video_data_param.source = 'list.txt'
        video.video_data_param.num_clips = n
        layer, top = data_layer(video, phase, source_dir=str(tmp_path), prefetch_depth=0,
                                seed=None)
        layer.forward([], top)
        assert top[0].shape == (16 * n, 3, 227, 227)
        assert reshapes[('reshape-label', phase)] == (16, n) == top[1].shape
        assert reshapes[('reshape-cm', phase)] == (16, n) == top[2].shape
        assert reshapes[('reshape-data', phase)][:2] == (16, n)
