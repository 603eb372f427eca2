"""The Data layer (Caffe's DataLayer): Datum records from an LMDB (or LevelDB) database.

Records are read in key order, wrapping around to the first record after the last; the
database access is caffelite.data.db, the Datum decoding caffelite.data.datum.
"""
import warnings

import numpy as np

from ..data.datum import record_to_item
from ..data.db import endless_records, open_db_reader
from ..data.listfile import resolve_path
from ..data.transformer import DataTransformer
from ..errors import CaffeliteError, LayerError
from ..proto import caffelite_pb2 as pb
from ..worker import shard_rng
from .base import register
from .data import PrefetchingDataLayer, _source_dir

# -- the Data layer -----------------------------------------------------------------------------

class DatumSource:
    """Caffe's DataLayer::load_batch over a database cursor.

    Record k of the stream (counted from the first record, through wrap-arounds, and
    including the ``skip`` records passed over at the start) is kept by the worker with
    rank k % count (Caffe's Skip(); count is 1 at TEST). Each batch takes the shape of its
    first record; a record of another shape is an error naming its key.
    """

    def __init__(self, reader, batch_size, transformer, rng, dtype, color, skip=0,
                 rank=0, count=1):
        self.reader, self.batch_size, self.transformer = reader, batch_size, transformer
        self.rng, self.dtype, self.color = rng, dtype, color
        self.skip, self.rank, self.count = skip, rank, count
        self.records = None   # created by the first next_batch, in the loading thread
        self.offset = 0
        self.where = f'{reader.backend.upper()} {reader.path}'

    def _advance(self):
        record = next(self.records)
        self.offset += 1
        return record

    def _next_record(self):
        if self.records is None:
            self.records = endless_records(self.reader)
            for _ in range(self.skip):
                self._advance()
        while self.offset % self.count != self.rank:
            self._advance()
        return self._advance()

    def next_batch(self):
        items, labels, keys = [], [], []
        for _ in range(self.batch_size):
            key, value = self._next_record()
            image, label = record_to_item(key, value, self.color, self.where)
            if items and image.shape != items[0].shape:
                raise LayerError(
                    f'record "{key.decode(errors="replace")}" in {self.where} is '
                    f'{" x ".join(map(str, image.shape))}, the batch\'s first record '
                    f'"{keys[0].decode(errors="replace")}" is '
                    f'{" x ".join(map(str, items[0].shape))}: records of a batch must have '
                    f'one shape')
            items.append(image)
            labels.append(label)
            keys.append(key)
        batch = np.stack(items)
        if batch.dtype != np.uint8:
            batch = batch.astype(np.float32)
        data = self.transformer.transform(batch, self.rng, dtype=self.dtype)
        return data, np.asarray(labels, dtype=self.dtype)


@register('Data')
class DataLayer(PrefetchingDataLayer):
    """Datum records from a database (Caffe's Data layer).

    data_param: source (the database folder, looked up in the working directory, then
    beside the prototxt), backend (LEVELDB, the default, needs the plyvel package; LMDB needs
    lmdb), batch_size, rand_skip (pass over a random number < rand_skip of records at the
    start), prefetch (batches loaded ahead), force_encoded_color. transform_param applies
    (crop, mirror, mean_file / mean_value, scale); force_color / force_gray choose how
    encoded images decode, which otherwise keep their own channels.
    Tops: data (batch_size x C x H' x W') and, optionally, label (batch_size).
    At TRAIN with ``solver_count`` workers, the worker of rank ``solver_rank`` keeps records
    rank, rank + count, ... (class attributes, set by the solver; 0 / 1 by default).
    """
    deals_records = True
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.data_param
        if self.prefetch_depth is None and p.HasField('prefetch'):
            self.prefetch_depth = int(p.prefetch)
        super().setup(bottom, top)

    def make_source(self, top):
        p = self.layer_param.data_param
        if p.batch_size <= 0:
            raise LayerError('data_param.batch_size must be positive')
        if not p.source:
            raise LayerError('data_param.source is not set')
        deprecated = [f for f in ('scale', 'mean_file', 'crop_size', 'mirror') if p.HasField(f)]
        if deprecated:
            warnings.warn(f'Data layer "{self.name}": data_param.{", ".join(deprecated)} '
                          f'{"is" if len(deprecated) == 1 else "are"} ignored, as in Caffe; '
                          f'give them in transform_param')
        path = resolve_path(p.source, _source_dir(self))
        try:
            reader = open_db_reader(path, p.backend)
        except CaffeliteError as err:
            raise LayerError(f'data_param.source: {err}') from None
        transformer = DataTransformer(self.layer_param.transform_param, self.phase,
                                      _source_dir(self))
        color = True if p.force_encoded_color else None
        color = transformer.color_override(color)
        where = f'{reader.backend.upper()} {path}'
        records = reader.items()
        first = next(records, None)
        records.close()
        if first is None:
            raise LayerError(f'{where} has no records')
        image, _ = record_to_item(first[0], first[1], color, where)
        shape = transformer.output_shape(*image.shape)
        count = max(int(self.solver_count), 1) if self.phase == pb.TRAIN else 1
        rank = int(self.solver_rank) if count > 1 else 0
        skip = 0
        if p.rand_skip:     # one skip for all ranks, so that their shards stay disjoint
            skip_rng = shard_rng(self.rng, self.name) if count > 1 else self.rng
            skip = int(skip_rng.integers(0, p.rand_skip))
        source = DatumSource(reader, int(p.batch_size), transformer, self.rng, self.dtype,
                             color, skip, rank, count)
        return source, [(p.batch_size,) + shape, (p.batch_size,)][:len(top)]
