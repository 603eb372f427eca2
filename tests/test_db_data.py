"""The Data layer: Datum records from LMDB (raw, float and encoded), transform_param,
rand_skip, worker sharding, prefetching, and its errors."""
import io

import numpy as np
import pytest
from PIL import Image

from caffelite import Net
from caffelite.errors import CaffeliteError, LayerError
from caffelite.io import array_to_datum, write_mean_binaryproto
from caffelite.data.datum import datum_to_image
from caffelite.data.images import decode_image as decode_image_bytes, encode_image
from caffelite.proto import caffelite_pb2 as pb
import layer_testing

RNG = np.random.default_rng(11)
IMAGES = RNG.integers(0, 256, size=(5, 3, 4, 6), dtype=np.uint8)
LABELS = np.array([3, 1, 4, 1, 5])


def write_lmdb(path, records):
    """records: [(key, Datum or bytes)]."""
    pytest.importorskip('lmdb')
    from caffelite.data.db import LMDBWriter
    with LMDBWriter(str(path)) as db:
        for key, value in records:
            db.put(key, value if isinstance(value, bytes) else value.SerializeToString())
    return str(path)


def raw_db(tmp_path, images=IMAGES, labels=LABELS, name='raw_lmdb'):
    return write_lmdb(tmp_path / name, [(f'{i:08d}', array_to_datum(im, lab))
                                        for i, (im, lab) in enumerate(zip(images, labels))])


def make(text, phase=pb.TRAIN, seed=1701, depth=0, **attrs):
    """A float64 data layer set up on its tops (layer_testing.data_layer); (layer, top)."""
    return layer_testing.data_layer(text, phase, np.float64, seed, prefetch_depth=depth, **attrs)


def batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append([t.data.copy() for t in top])
    return out


def data_layer(source, batch_size=2, extra='', transform=''):
    return (f'name: "data" type: "Data" top: "data" top: "label" '
            f'data_param {{ source: "{source}" backend: LMDB batch_size: {batch_size} {extra} }} '
            f'transform_param {{ {transform} }}')


def test_raw_records_read_back_exactly_in_key_order_wrapping(tmp_path):
    layer, top = make(data_layer(raw_db(tmp_path), batch_size=3))
    assert top[0].shape == (3, 3, 4, 6) and top[1].shape == (3,)
    (d0, l0), (d1, l1), (d2, l2) = batches(layer, top, 3)
    order = [[0, 1, 2], [3, 4, 0], [1, 2, 3]]
    for (d, l), idx in zip([(d0, l0), (d1, l1), (d2, l2)], order):
        np.testing.assert_array_equal(d, IMAGES[idx])
        np.testing.assert_array_equal(l, LABELS[idx])


def test_float_data_records(tmp_path):
    values = RNG.normal(size=(3, 2, 1, 3)).astype(np.float32)
    source = write_lmdb(tmp_path / 'f', [(f'{i}', array_to_datum(v, i))
                                         for i, v in enumerate(values)])
    layer, top = make(data_layer(source, batch_size=3, transform='scale: 2'))
    (d, l), = batches(layer, top, 1)
    np.testing.assert_allclose(d, values.astype(np.float64) * 2, rtol=1e-7)
    np.testing.assert_array_equal(l, [0, 1, 2])


def png_bytes(bgr):
    """A PNG of a C x H x W BGR (or 1-channel) image."""
    buffer = io.BytesIO()
    if bgr.shape[0] == 1:
        Image.fromarray(bgr[0], 'L').save(buffer, 'PNG')
    else:
        Image.fromarray(np.ascontiguousarray(bgr[::-1].transpose(1, 2, 0)), 'RGB').save(
            buffer, 'PNG')
    return buffer.getvalue()


def test_encoded_png_records_decode_to_bgr(tmp_path):
    records = [(f'{i:08d}', pb.Datum(data=png_bytes(im), label=int(lab), encoded=True))
               for i, (im, lab) in enumerate(zip(IMAGES, LABELS))]
    layer, top = make(data_layer(write_lmdb(tmp_path / 'png', records), batch_size=5))
    (d, l), = batches(layer, top, 1)
    np.testing.assert_array_equal(d, IMAGES)
    np.testing.assert_array_equal(l, LABELS)


def test_encoded_jpeg_and_gray_decoding_modes(tmp_path):
    jpeg = encode_image(IMAGES[0], 'jpg')
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert('RGB'))
    np.testing.assert_array_equal(decode_image_bytes(jpeg), rgb[:, :, ::-1].transpose(2, 0, 1))
    gray = IMAGES[:, :1]
    records = [(f'{i}', pb.Datum(data=png_bytes(g), label=0, encoded=True))
               for i, g in enumerate(gray)]
    source = write_lmdb(tmp_path / 'gray', records)
    layer, top = make(data_layer(source, batch_size=2))       # native: 1 channel
    (d, _), = batches(layer, top, 1)
    np.testing.assert_array_equal(d, gray[:2])
    layer, top = make(data_layer(source, batch_size=2, transform='force_color: true'))
    (d, _), = batches(layer, top, 1)
    np.testing.assert_array_equal(d, np.repeat(gray[:2], 3, axis=1))
    rgba = np.dstack([IMAGES[1][::-1].transpose(1, 2, 0), np.full((4, 6), 7, np.uint8)])
    buffer = io.BytesIO()
    Image.fromarray(rgba, 'RGBA').save(buffer, 'PNG')
    bgra = decode_image_bytes(buffer.getvalue())
    assert bgra.shape == (4, 4, 6)
    np.testing.assert_array_equal(bgra[:3], IMAGES[1])
    np.testing.assert_array_equal(bgra[3], 7)


def test_transform_mean_file_scale_and_centre_crop_at_test(tmp_path):
    mean = RNG.uniform(0, 255, size=(3, 4, 6)).astype(np.float32)
    write_mean_binaryproto(str(tmp_path / 'mean.binaryproto'), mean)
    text = data_layer(raw_db(tmp_path), batch_size=2,
                      transform=f'mean_file: "{tmp_path / "mean.binaryproto"}" scale: 0.5 '
                                f'crop_size: 2')
    layer, top = make(text, phase=pb.TEST)
    (d, _), = batches(layer, top, 1)
    expected = (IMAGES[:2].astype(np.float32) - mean)[:, :, 1:3, 2:4] * np.float32(0.5)
    np.testing.assert_allclose(d, expected, rtol=1e-6)


def test_mean_file_of_the_wrong_shape_names_the_layer(tmp_path):
    write_mean_binaryproto(str(tmp_path / 'mean.binaryproto'), np.zeros((3, 5, 5), np.float32))
    proto = tmp_path / 'net.prototxt'
    proto.write_text(data_layer(raw_db(tmp_path), transform='mean_file: "mean.binaryproto"')
                     .replace('name: "data"', 'layer { name: "data"') + ' }')
    with pytest.raises(CaffeliteError, match=r'layer "data" \(type Data\).*mean_file shape '
                                             r'\(3, 5, 5\) does not match the input 3 x 4 x 6'):
        Net(str(proto), pb.TRAIN)


def test_rand_skip_starts_within_the_range(tmp_path):
    source = raw_db(tmp_path)
    starts = set()
    for seed in range(8):
        layer, top = make(data_layer(source, batch_size=2, extra='rand_skip: 4'), seed=seed)
        (d, _), = batches(layer, top, 1)
        first = next(i for i in range(5) if np.array_equal(d[0], IMAGES[i]))
        assert first < 4
        np.testing.assert_array_equal(d[1], IMAGES[(first + 1) % 5])
        starts.add(first)
    assert len(starts) > 1
    layer, top = make(data_layer(source, extra='rand_skip: 4'), seed=3)
    again, top_again = make(data_layer(source, extra='rand_skip: 4'), seed=3)
    np.testing.assert_array_equal(batches(layer, top, 1)[0][0],
                                  batches(again, top_again, 1)[0][0])


def test_workers_take_every_count_th_record_at_train_only(tmp_path):
    source = raw_db(tmp_path)
    for rank in (0, 1):
        layer, top = make(data_layer(source, batch_size=3), solver_rank=rank, solver_count=2)
        (_, labels), = batches(layer, top, 1)
        # stream positions rank, rank + 2, rank + 4 (wrapping over the 5 records)
        np.testing.assert_array_equal(labels, LABELS[[(rank + 2 * k) % 5 for k in range(3)]])
    layer, top = make(data_layer(source, batch_size=3), phase=pb.TEST, solver_rank=1,
                      solver_count=2)
    (_, labels), = batches(layer, top, 1)
    np.testing.assert_array_equal(labels, LABELS[:3])


def test_prefetch_thread_gives_the_same_batches(tmp_path):
    source = raw_db(tmp_path)
    text = data_layer(source, batch_size=2, transform='mirror: true crop_size: 3')
    layer, top = make(text, depth=0, seed=5)
    threaded, top_t = make(text, depth=2, seed=5)
    for (a, la), (b, lb) in zip(batches(layer, top, 4), batches(threaded, top_t, 4)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    threaded.stop_prefetch()
    prefetch_field, top_p = make(text.replace('batch_size: 2', 'batch_size: 2 prefetch: 1'),
                                 depth=None)
    assert prefetch_field.prefetcher.depth == 1
    prefetch_field.stop_prefetch()


def test_leveldb_without_plyvel_is_a_clear_error(tmp_path):
    try:
        import plyvel  # noqa: F401
        pytest.skip('plyvel is installed')
    except ImportError:
        pass
    (tmp_path / 'db').mkdir()
    text = ('type: "Data" top: "data" data_param { source: "' + str(tmp_path / 'db') +
            '" batch_size: 1 }')     # backend defaults to LEVELDB, as in Caffe
    with pytest.raises(LayerError, match=r'backend LEVELDB needs a LevelDB binding \(the '
                                         r'plyvel package\).*backend: LMDB'):
        make(text)


def test_missing_and_empty_databases(tmp_path):
    pytest.importorskip('lmdb')
    with pytest.raises(LayerError, match='LMDB .*nowhere does not exist'):
        make(data_layer(str(tmp_path / 'nowhere')))
    with pytest.raises(LayerError, match='has no records'):
        make(data_layer(write_lmdb(tmp_path / 'empty', [])))


def net_file(tmp_path, source, batch_size=2):
    path = tmp_path / 'net.prototxt'
    path.write_text(f'layer {{ {data_layer(source, batch_size)} }}\n'
                    'layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }')
    return str(path)


def test_corrupt_record_names_layer_key_and_cause(tmp_path):
    records = [(f'{i:08d}', array_to_datum(IMAGES[i], i)) for i in range(3)]
    records[1] = ('00000001_broken', b'\xff\xff\xff\xff')
    net = Net(net_file(tmp_path, write_lmdb(tmp_path / 'bad', records)), pb.TRAIN)
    with pytest.raises(CaffeliteError, match=r'layer "data" \(type Data\).*corrupt record '
                                             r'"00000001_broken" in LMDB .*bad: it does not '
                                             r'parse as a Datum'):
        net.forward()


def test_record_with_wrong_data_size_and_shape(tmp_path):
    short = pb.Datum(channels=3, height=4, width=6, data=b'\x00' * 10, label=0)
    records = [('a', array_to_datum(IMAGES[0], 0)), ('b', short)]
    net = Net(net_file(tmp_path, write_lmdb(tmp_path / 'short', records)), pb.TRAIN)
    with pytest.raises(CaffeliteError, match=r'corrupt record "b" .*10 bytes of pixel data, '
                                             r'but channels x height x width = 3 x 4 x 6 = 72'):
        net.forward()
    records = [('a', array_to_datum(IMAGES[0], 0)), ('b', array_to_datum(IMAGES[0, :, :3], 0))]
    layer, top = make(data_layer(write_lmdb(tmp_path / 'shapes', records)))
    with pytest.raises(LayerError, match=r'record "b" .* is 3 x 3 x 6, the batch\'s first '
                                         r'record "a" is 3 x 4 x 6'):
        batches(layer, top, 1)


def test_deprecated_data_param_transform_fields_warn(tmp_path):
    with pytest.warns(UserWarning, match=r'data_param.scale is ignored, as in Caffe'):
        make(data_layer(raw_db(tmp_path), extra='scale: 0.5'))


def test_datum_helpers_round_trip():
    datum = array_to_datum(IMAGES[2], 9)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 6, 9)
    np.testing.assert_array_equal(datum_to_image(datum), IMAGES[2])
    with pytest.raises(LayerError, match='neither data nor float_data'):
        datum_to_image(pb.Datum(channels=1, height=1, width=1))
