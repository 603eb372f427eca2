"""HDF5Data, HDF5Output, ImageData, MemoryData, prefetching, and the LRCN data layers."""
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from caffelite import backend
from caffelite.data import prefetch
from caffelite.blob import Blob
from caffelite.errors import LayerError
from caffelite.proto import caffelite_pb2 as pb
import layer_testing

LRCN = Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'lrcn'


def make(text, phase=pb.TRAIN, source_dir=None, depth=None, seed=1701):
    """A data layer set up on its tops (layer_testing.data_layer); returns (layer, top)."""
    attrs = {} if source_dir is None else {'source_dir': str(source_dir)}
    return layer_testing.data_layer(text, phase, seed=seed, prefetch_depth=depth, **attrs)


def batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.reshape([], top)
        layer.forward([], top)
        out.append([t.data.copy() for t in top])
    return out


# -- HDF5Data ---------------------------------------------------------------------------------

@pytest.fixture
def h5_files(tmp_path, hdf5_file):
    """f0: rows 0..4, f1: rows 100..102; 'data' rows are (2, 3) blocks of the row id."""
    for i, n in enumerate([5, 3]):
        ids = np.arange(n) + 100 * i
        hdf5_file(f'f{i}.h5', data=ids[:, None, None] * np.ones((1, 2, 3)),
                  label=ids.astype(np.int32), extra=np.zeros(1))
    (tmp_path / 'h5list.txt').write_text('f0.h5\n\nf1.h5\n')
    return tmp_path


HDF5 = ('type: "HDF5Data" top: "data" top: "label" '
        'hdf5_data_param {{ source: "{src}" batch_size: {bs} {extra} }}')


def test_hdf5_reads_across_files_and_wraps_around(h5_files):
    layer, top = make(HDF5.format(src=h5_files / 'h5list.txt', bs=4, extra=''), depth=0)
    assert top[0].shape == (4, 2, 3) and top[1].shape == (4,)
    seen = [b[1].tolist() for b in batches(layer, top, 4)]
    assert seen == [[0, 1, 2, 3], [4, 100, 101, 102], [0, 1, 2, 3], [4, 100, 101, 102]]
    data, label = batches(layer, top, 1)[0]
    np.testing.assert_array_equal(data, label[:, None, None] * np.ones((1, 2, 3)))


def test_hdf5_batch_larger_than_a_file_and_one_file(tmp_path):
    layer_testing.write_hdf5(tmp_path / 'a.h5', label=np.arange(3.0))
    (tmp_path / 'l.txt').write_text(str(tmp_path / 'a.h5') + '\n')
    layer, top = make('type: "HDF5Data" top: "label" hdf5_data_param { source: "%s" '
                      'batch_size: 7 }' % (tmp_path / 'l.txt'), depth=0)
    assert batches(layer, top, 1)[0][0].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_hdf5_relative_entries_resolve_against_the_list_folder(h5_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)     # the entries are not relative to the cwd
    layer, top = make(HDF5.format(src=h5_files / 'h5list.txt', bs=2, extra=''), depth=0)
    assert batches(layer, top, 1)[0][1].tolist() == [0, 1]


def test_hdf5_shuffle_is_reproducible_and_a_permutation(h5_files):
    text = HDF5.format(src=h5_files / 'h5list.txt', bs=4, extra='shuffle: true')
    run = [np.concatenate([b[1] for b in batches(*make(text, depth=0, seed=s), 6)])
           for s in (7, 7, 8)]
    np.testing.assert_array_equal(run[0], run[1])
    assert not np.array_equal(run[0], run[2])
    # 24 rows = three epochs of the 8 rows; each epoch's rows of a file stay together
    for epoch in run[0].reshape(3, 8):
        assert sorted(epoch) == [0, 1, 2, 3, 4, 100, 101, 102]
        files = (epoch >= 100).astype(int)
        assert np.count_nonzero(np.diff(files)) == 1


def test_hdf5_lrcn_layout_time_major_batches(tmp_path):
    # LRCN chunk files hold streams of T*k rows x N columns: batch_size T gives T x N
    T, N = 20, 6
    cont = np.tile((np.arange(2 * T) % T > 0)[:, None], (1, N)).astype(float)
    layer_testing.write_hdf5(tmp_path / 'b.h5', cont_sentence=cont, input_sentence=cont * 3,
             target_sentence=cont * 4, buffer_size=np.array([N]))
    (tmp_path / 'chunks.txt').write_text('b.h5\n')
    layer, top = make('type: "HDF5Data" top: "cont_sentence" top: "input_sentence" '
                      'top: "target_sentence" hdf5_data_param { source: "%s" batch_size: %d }'
                      % (tmp_path / 'chunks.txt', T))
    assert [t.shape for t in top] == [(T, N)] * 3
    first, second = batches(layer, top, 2)
    np.testing.assert_array_equal(first[0], cont[:T])
    np.testing.assert_array_equal(second[2], 4 * cont[T:])
    layer.stop_prefetch()


def test_hdf5_bad_inputs(tmp_path, h5_files):
    (tmp_path / 'missing.txt').write_text('f0.h5\nnope.h5\n')
    with pytest.raises(LayerError, match=r'missing.txt line 2: HDF5 file nope.h5 does not exist'):
        make(HDF5.format(src=tmp_path / 'missing.txt', bs=2, extra=''))
    layer_testing.write_hdf5(tmp_path / 'ragged.h5', data=np.zeros((4, 2)), label=np.zeros(3))
    (tmp_path / 'ragged.txt').write_text('f0.h5\nragged.h5\n')
    with pytest.raises(LayerError, match=r'ragged.h5.*same number of rows.*data: 4, label: 3'):
        make(HDF5.format(src=tmp_path / 'ragged.txt', bs=2, extra=''))
    layer_testing.write_hdf5(tmp_path / 'nolabel.h5', data=np.zeros((4, 2, 3)))
    (tmp_path / 'nolabel.txt').write_text('nolabel.h5\n')
    with pytest.raises(LayerError, match=r'nolabel.h5.*has no dataset label'):
        make(HDF5.format(src=tmp_path / 'nolabel.txt', bs=2, extra=''))
    with pytest.raises(LayerError, match='hdf5_data_param.source .*does not exist'):
        make(HDF5.format(src=tmp_path / 'nothere.txt', bs=2, extra=''))
    (tmp_path / 'empty.txt').write_text('\n')
    with pytest.raises(LayerError, match='empty'):
        make(HDF5.format(src=tmp_path / 'empty.txt', bs=2, extra=''))
    layer_testing.write_hdf5(tmp_path / 'wide.h5', data=np.zeros((4, 2, 4)), label=np.zeros(4))
    (tmp_path / 'wide.txt').write_text('f0.h5\nwide.h5\n')
    with pytest.raises(LayerError, match='wide.h5: dataset shapes'):
        make(HDF5.format(src=tmp_path / 'wide.txt', bs=2, extra=''))


def test_hdf5_workers_read_alternate_batches_at_train(h5_files):
    """With solver_count workers, batch j of the stream goes to rank j % count (whole
    batches, so that time-major streams stay whole)."""
    seen = {}
    for rank in (0, 1):
        layer, top = layer_testing.data_layer(
            HDF5.format(src=h5_files / 'h5list.txt', bs=3, extra=''), solver_rank=rank,
            solver_count=2, prefetch_depth=0, seed=None)
        seen[rank] = [b[1].tolist() for b in batches(layer, top, 2)]
    stream = [0, 1, 2, 3, 4, 100, 101, 102] * 2
    assert seen[0] == [stream[0:3], stream[6:9]]
    assert seen[1] == [stream[3:6], stream[9:12]]


def test_data_layers_in_a_net_resolve_sources_beside_the_prototxt(h5_files, tmp_path,
                                                                   monkeypatch):
    import caffelite
    (tmp_path / 'net.prototxt').write_text(
        'layer { name: "h5" type: "HDF5Data" top: "data" top: "label" '
        '        hdf5_data_param { source: "h5list.txt" batch_size: 2 } }\n'
        'layer { name: "mem" type: "MemoryData" top: "m" top: "ml" '
        '        memory_data_param { batch_size: 2 channels: 1 height: 1 width: 2 } }\n')
    monkeypatch.chdir(tmp_path.parent)
    net = caffelite.Net(str(tmp_path / 'net.prototxt'), caffelite.TRAIN)
    net.set_input_arrays(np.arange(8, dtype=np.float32).reshape(4, 1, 1, 2),
                         np.array([5, 6, 7, 8], np.float32), layer_index=1)
    out = net.forward()
    assert out['label'].tolist() == [0, 1] and out['ml'].tolist() == [5, 6]
    out = net.forward()
    assert out['label'].tolist() == [2, 3] and out['m'].reshape(-1).tolist() == [4, 5, 6, 7]


def test_hdf5_output_appends_data_and_label(tmp_path):
    out = tmp_path / 'out.h5'
    layer = layer_testing.make(
        'type: "HDF5Output" bottom: "d" bottom: "l" hdf5_output_param { file_name: "%s" }'
        % out, dtype=np.float32)
    d, lab = Blob((2, 3)), Blob((2,))
    layer.set_up([d, lab], [])
    for k in range(2):
        d.data[...] = np.arange(6).reshape(2, 3) + 10 * k
        lab.data[...] = [k, k + 1]
        layer.reshape([d, lab], [])
        layer.forward([d, lab], [])
    with h5py.File(out, 'r') as f:
        np.testing.assert_array_equal(f['data'][:], np.concatenate(
            [np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3) + 10]))
        np.testing.assert_array_equal(f['label'][:], [0, 1, 1, 2])


# -- ImageData --------------------------------------------------------------------------------

def write_images(folder, count, size=(6, 8), start=0):
    """Image k: R = 10k, G = 100, B = 200 + k at every pixel, except pixel (0, 0) = k."""
    names = []
    for k in range(start, start + count):
        rgb = np.zeros(size + (3,), np.uint8)
        rgb[...] = (10 * k, 100, 200 + k)
        rgb[0, 0] = k
        name = f'img{k}.png'
        Image.fromarray(rgb).save(folder / name)
        names.append(name)
    return names


IMAGE = ('type: "ImageData" top: "data" top: "label" image_data_param {{ source: "{src}" '
         'batch_size: {bs} {extra} }} {transform}')


@pytest.fixture
def image_list(tmp_path):
    (tmp_path / 'imgs').mkdir()
    names = write_images(tmp_path / 'imgs', 5)
    (tmp_path / 'list.txt').write_text(''.join(f'{n} {k * 2}\n' for k, n in enumerate(names)))
    return tmp_path / 'list.txt'


def test_image_data_bgr_labels_and_wrap(image_list):
    layer, top = make(IMAGE.format(src=image_list, bs=3, transform='',
                                   extra=f'root_folder: "{image_list.parent / "imgs"}/"'),
                      depth=0)
    assert top[0].shape == (3, 3, 6, 8) and top[1].shape == (3,)
    (d0, l0), (d1, l1) = batches(layer, top, 2)
    assert l0.tolist() == [0, 2, 4] and l1.tolist() == [6, 8, 0]
    # BGR: channel 0 = blue (200 + k), channel 2 = red (10 k)
    np.testing.assert_array_equal(d0[:, 0, 1, 1], [200, 201, 202])
    np.testing.assert_array_equal(d0[:, 1, 1, 1], [100, 100, 100])
    np.testing.assert_array_equal(d0[:, 2, 1, 1], [0, 10, 20])
    np.testing.assert_array_equal(d1[:, 2, 1, 1], [30, 40, 0])


def test_image_data_resize_gray_and_transform(image_list):
    text = IMAGE.format(src=image_list, bs=2,
                        extra='root_folder: "%s/" new_height: 9 new_width: 5 is_color: false'
                              % (image_list.parent / 'imgs'),
                        transform='transform_param { scale: 0.5 mean_value: 100 }')
    layer, top = make(text, depth=0)
    assert top[0].shape == (2, 1, 9, 5)
    data, _ = batches(layer, top, 1)[0]
    gray1 = round(0.299 * 10 + 0.587 * 100 + 0.114 * 201)     # image 1, away from pixel (0,0)
    assert data[1, 0, 8, 4] == (gray1 - 100) * 0.5


def test_image_data_crop_mirror_positions_under_seed(tmp_path):
    # red channel = 10 y + x, so a crop's first pixel tells its offset; green = k
    for k in range(6):
        rgb = np.zeros((6, 8, 3), np.uint8)
        rgb[..., 0] = 10 * np.arange(6)[:, None] + np.arange(8)[None, :]
        rgb[..., 1] = k
        Image.fromarray(rgb).save(tmp_path / f'p{k}.png')
    (tmp_path / 'p.txt').write_text(''.join(f'p{k}.png {k}\n' for k in range(6)))
    text = IMAGE.format(src=tmp_path / 'p.txt', bs=6, extra='',
                        transform='transform_param { crop_size: 4 mirror: true }')
    data = batches(*make(text, depth=0, seed=3), 1)[0][0]
    again = batches(*make(text, depth=0, seed=3), 1)[0][0]
    np.testing.assert_array_equal(data, again)
    red = data[:, 2]
    mirrored = red[:, 0, 0] > red[:, 0, 3]
    corner = np.where(mirrored, red[:, 0, 3], red[:, 0, 0])
    h_off, w_off = corner // 10, corner % 10
    assert (h_off <= 2).all() and (w_off <= 4).all()
    for k in range(6):
        window = 10 * (h_off[k] + np.arange(4))[:, None] + (w_off[k] + np.arange(4))[None, :]
        np.testing.assert_array_equal(red[k], window[:, ::-1] if mirrored[k] else window)
    # the offsets are the transformer's draws from the layer's generator, which setup
    # derives from the global seed
    from caffelite.data.transformer import DataTransformer
    layer_rng = np.random.default_rng(int(np.random.default_rng(3).integers(2 ** 63)))
    drawn = DataTransformer(pb.TransformationParameter(crop_size=4, mirror=True),
                            pb.TRAIN).draw(6, 6, 8, layer_rng)
    np.testing.assert_array_equal(drawn[0], h_off)
    np.testing.assert_array_equal(drawn[1], w_off)
    np.testing.assert_array_equal(drawn[2], mirrored)
    assert 0 < mirrored.sum() < 6 and len(set(corner)) > 1


def test_image_data_shuffle_and_rand_skip_reproducible(image_list):
    root = 'root_folder: "%s/"' % (image_list.parent / 'imgs')
    text = IMAGE.format(src=image_list, bs=5, extra=root + ' shuffle: true', transform='')
    a = [b[1].tolist() for b in batches(*make(text, depth=0, seed=5), 3)]
    b = [b[1].tolist() for b in batches(*make(text, depth=0, seed=5), 3)]
    assert a == b and all(sorted(x) == [0, 2, 4, 6, 8] for x in a)
    assert len({tuple(x) for x in a}) > 1            # reshuffled each epoch
    text = IMAGE.format(src=image_list, bs=5, extra=root + ' rand_skip: 5', transform='')
    first = batches(*make(text, depth=0, seed=5), 1)[0][1].tolist()
    skip = int(first[0]) // 2
    assert skip == 2     # the draw for seed 5 (checked so the test is not vacuous)
    assert first == [0, 2, 4, 6, 8][skip:] + [0, 2, 4, 6, 8][:skip]


def test_image_data_missing_and_undecodable_images(tmp_path, image_list):
    (tmp_path / 'bad_list.txt').write_text('imgs/img0.png 0\nimgs/none.png 1\n')
    with pytest.raises(LayerError, match=r'bad_list.txt line 2: image imgs/none.png does not'):
        make(IMAGE.format(src=tmp_path / 'bad_list.txt', bs=1, extra='', transform=''))
    (tmp_path / 'nolabel.txt').write_text('imgs/img0.png\n')
    with pytest.raises(LayerError, match=r'nolabel.txt line 1: expected "path label"'):
        make(IMAGE.format(src=tmp_path / 'nolabel.txt', bs=1, extra='', transform=''))
    # a broken image that is not the first one fails in the prefetch thread; the error
    # reaches forward with the file name and list line
    (tmp_path / 'imgs' / 'broken.png').write_bytes(b'\x89PNG garbage')
    (tmp_path / 'broken.txt').write_text('imgs/img0.png 0\nimgs/img1.png 1\nimgs/broken.png 2\n')
    layer, top = make(IMAGE.format(src=tmp_path / 'broken.txt', bs=2, extra='', transform=''),
                      source_dir=tmp_path, depth=2)
    assert layer.prefetcher.depth == 2
    layer.forward([], top)
    with pytest.raises(LayerError, match=r'prefetch thread.*broken.png.*broken.txt line 3'):
        layer.forward([], top)
    with pytest.raises(LayerError, match='earlier error'):
        layer.forward([], top)
    # mixed sizes without new_height/new_width
    write_images(tmp_path / 'imgs', 1, size=(7, 8), start=9)
    (tmp_path / 'mixed.txt').write_text('imgs/img0.png 0\nimgs/img9.png 1\n')
    layer, top = make(IMAGE.format(src=tmp_path / 'mixed.txt', bs=2, extra='', transform=''),
                      source_dir=tmp_path, depth=0)
    with pytest.raises(LayerError, match=r'img9.png \(.*mixed.txt line 2\) is 7 x 8'):
        layer.forward([], top)


# -- prefetching ------------------------------------------------------------------------------

def test_prefetch_gives_the_same_batches_as_no_prefetch(image_list, h5_files):
    texts = [IMAGE.format(src=image_list, bs=3, extra='root_folder: "%s/" shuffle: true'
                          % (image_list.parent / 'imgs'),
                          transform='transform_param { crop_size: 5 mirror: true }'),
             HDF5.format(src=h5_files / 'h5list.txt', bs=3, extra='shuffle: true')]
    for text in texts:
        sync = batches(*make(text, depth=0, seed=21), 6)
        layer, top = make(text, depth=3, seed=21)
        assert layer.prefetcher.running
        threaded = batches(layer, top, 6)
        layer.stop_prefetch()
        assert not layer.prefetcher.running
        for s, t in zip(sync, threaded):
            for a, b in zip(s, t):
                np.testing.assert_array_equal(a, b)


def test_prefetcher_thread_is_daemon_bounded_and_stoppable():
    class Counter:
        def __init__(self):
            self.calls = 0

        def next_batch(self):
            self.calls += 1
            return (np.array([self.calls]),)

    source = Counter()
    p = prefetch.Prefetcher(source, depth=2)
    assert p._thread.daemon
    assert [p.next()[0][0] for _ in range(3)] == [1, 2, 3]
    for _ in range(50):             # the queue holds at most 2 batches ahead (+1 in hand)
        if source.calls >= 5:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    assert source.calls <= 6
    p.stop()
    assert not p.running
    with pytest.raises(LayerError, match='stopped'):
        p.next()


def test_prefetcher_error_surfaces_in_main_thread():
    class Failing:
        def next_batch(self):
            raise OSError('disk on fire while reading /data/x.h5')

    p = prefetch.Prefetcher(Failing(), depth=1)
    with pytest.raises(LayerError, match=r'OSError: disk on fire while reading /data/x.h5'):
        p.next()
    sync = prefetch.Prefetcher(Failing(), depth=0)
    with pytest.raises(OSError):
        sync.next()


# -- MemoryData -------------------------------------------------------------------------------

def test_memory_data_reset_and_batches():
    layer, top = make('type: "MemoryData" top: "data" top: "label" memory_data_param { '
                      'batch_size: 2 channels: 1 height: 2 width: 3 }')
    assert top[0].shape == (2, 1, 2, 3) and top[1].shape == (2,)
    with pytest.raises(LayerError, match='set_input_arrays'):
        layer.forward([], top)
    data = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
    layer.reset(data, np.arange(4).reshape(4, 1, 1, 1))
    seen = batches(layer, top, 3)
    np.testing.assert_array_equal(seen[0][0], data[:2])
    assert [s[1].tolist() for s in seen] == [[0, 1], [2, 3], [0, 1]]
    with pytest.raises(LayerError, match='multiple of batch_size'):
        layer.reset(data[:3], np.arange(3))
    with pytest.raises(LayerError, match='n x 1 x 2 x 3'):
        layer.reset(np.zeros((2, 3, 2, 3)), np.arange(2))
    with pytest.raises(LayerError, match='labels must be a vector of 4'):
        layer.reset(data, np.arange(2))


# -- the LRCN reference prototxts ---------------------------------------------------------------

def _phase_layers(path, phase, stages=()):
    """Data layers of ``path`` included for the phase/stages (a small NetStateRule check)."""
    net = text_format.Parse(path.read_text(), pb.NetParameter())
    chosen = []
    for lp in net.layer:
        if lp.type not in ('ImageData', 'HDF5Data', 'Python'):
            continue
        ok = True
        for rule in lp.include:
            ok = (not rule.HasField('phase') or rule.phase == phase) and \
                all(s in stages for s in rule.stage) and not any(s in stages
                                                                  for s in rule.not_stage)
        if ok:
            chosen.append(lp)
    return chosen


def _setup(lp, phase, source_dir):
    layer, top = layer_testing.data_layer(lp, phase, source_dir=str(source_dir),
                                          prefetch_depth=0, seed=None)
    layer.forward([], top)
    return layer, top


@pytest.mark.skipif(not LRCN.exists(), reason='LRCN reference prototxts not present')
def test_lrcn_captioning_data_layers_give_the_expected_batches(tmp_path):
    # fixtures: 256 x 256 images (the prototxt resizes to 256 x 256, crops 227) and one
    # chunk of 20-step caption streams for 100 columns, as tools/coco_to_hdf5.py writes
    (tmp_path / 'imgs').mkdir()
    names = write_images(tmp_path / 'imgs', 4, size=(256, 256))
    (tmp_path / 'images.txt').write_text(''.join(f'imgs/{n} {k}\n' for k, n in enumerate(names)))
    stream = np.ones((40, 100))
    layer_testing.write_hdf5(tmp_path / 'batch_0.h5', cont_sentence=stream, input_sentence=stream,
             target_sentence=stream, buffer_size=np.array([100]))
    (tmp_path / 'chunks.txt').write_text('batch_0.h5\n')
    layers = _phase_layers(LRCN / 'coco_caption' / 'lrcn.prototxt', pb.TRAIN)
    assert [lp.type for lp in layers] == ['ImageData', 'HDF5Data']
    layers[0].image_data_param.source = str(tmp_path / 'images.txt')
    layers[1].hdf5_data_param.source = str(tmp_path / 'chunks.txt')
    backend.set_random_seed(1)
    _, image_top = _setup(layers[0], pb.TRAIN, tmp_path)
    _, seq_top = _setup(layers[1], pb.TRAIN, tmp_path)
    assert image_top[0].shape == (100, 3, 227, 227) and image_top[1].shape == (100,)
    assert [t.shape for t in seq_top] == [(20, 100)] * 3
    # mean_value 104/117/123 subtracted from BGR: blue of image 0 is 200
    assert set(np.unique(image_top[0].data[:, 0])) <= {200 + k - 104.0 for k in range(4)} | \
        {k - 104.0 for k in range(4)}

    lm = _phase_layers(LRCN / 'coco_caption' / 'lstm_language_model.prototxt', pb.TEST,
                       ('test-on-val',))
    assert [lp.type for lp in lm] == ['HDF5Data']
    lm[0].hdf5_data_param.source = str(tmp_path / 'chunks.txt')
    assert [t.shape for t in _setup(lm[0], pb.TEST, tmp_path)[1]] == [(20, 100)] * 3


@pytest.mark.skipif(not LRCN.exists(), reason='LRCN reference prototxts not present')
def test_lrcn_single_frame_image_data(tmp_path):
    (tmp_path / 'frames').mkdir()
    names = write_images(tmp_path / 'frames', 2, size=(240, 320))
    (tmp_path / 'list.txt').write_text(''.join(f'{n} {k}\n' for k, n in enumerate(names)))
    layers = _phase_layers(LRCN / 'activity_recognition' / 'train_test_singleFrame_RGB.prototxt',
                           pb.TRAIN)
    assert [lp.type for lp in layers] == ['ImageData']
    lp = layers[0]
    assert lp.image_data_param.root_folder == 'frames/'
    lp.image_data_param.source = 'list.txt'             # resolved beside the "prototxt"
    _, top = _setup(lp, pb.TRAIN, tmp_path)             # frames/ found beside list.txt
    assert top[0].shape == (128, 3, 227, 227) and top[1].shape == (128,)


@pytest.mark.skipif(not LRCN.exists(), reason='LRCN reference prototxts not present')
def test_lrcn_single_frame_flow_image_data_upscales_and_negates_flow(tmp_path):
    # flow images smaller than 227 are upscaled (min_height/min_width: 227), then cropped
    (tmp_path / 'flow_images').mkdir()
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[...] = (200, 128, 30)                      # x-flow (red) 200
    Image.fromarray(rgb).save(tmp_path / 'flow_images' / 'f.png')
    (tmp_path / 'flow.txt').write_text('f.png 3\n')
    layers = _phase_layers(LRCN / 'activity_recognition' /
                           'train_test_singleFrame_flow.prototxt', pb.TRAIN)
    lp = layers[0]
    assert lp.transform_param.flow and lp.image_data_param.min_height == 227
    lp.image_data_param.source = 'flow.txt'
    backend.set_random_seed(2)
    _, top = _setup(lp, pb.TRAIN, tmp_path)
    assert top[0].shape == (128, 3, 227, 227)
    red = top[0].data[:, 2, 0, 0]                  # 200 - 128, or 255 - 200 - 128 if flipped
    assert set(red) == {72.0, -73.0}
    np.testing.assert_array_equal(top[0].data[:, 0], 30 - 128.0)
