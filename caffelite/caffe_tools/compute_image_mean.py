"""compute_image_mean: the mean image of a Datum database (Caffe's tool).

    caffelite compute_image_mean [-backend lmdb|leveldb] INPUT_DB [OUTPUT_FILE]

The mean over every record (encoded ones decoded with their own channels) is written to
OUTPUT_FILE as a 1 x C x H x W BlobProto (.binaryproto, what ``transform_param { mean_file }``
reads), and the mean of each channel is logged. Every record must have the first record's
shape.
"""
import numpy as np

from ..errors import CaffeliteError, LayerError
from ..io import write_mean_binaryproto
from ..data.datum import record_to_item
from ..data.db import open_db_reader
from ..solvers.log import logger
from . import add_flag, make_parser, parse_args, run_tool

PROG = 'caffelite compute_image_mean'
USAGE = f'{PROG} [FLAGS] INPUT_DB [OUTPUT_FILE]'


def build_parser():
    parser = make_parser(PROG, USAGE, 'Compute the mean image of a set of images given by a '
                                      'leveldb/lmdb.')
    add_flag(parser, 'backend', 'lmdb', 'the backend {leveldb, lmdb} containing the images')
    parser.add_argument('input_db', metavar='INPUT_DB')
    parser.add_argument('output_file', metavar='OUTPUT_FILE', nargs='?')
    return parser


def compute_mean(path, backend='lmdb'):
    """(mean C x H x W float32, number of records) of the database at ``path``."""
    reader = open_db_reader(path, backend)
    where = f'{reader.backend.upper()} {path}'
    total, count, first_key = None, 0, None
    try:
        for key, value in reader.items():
            try:
                image, _ = record_to_item(key, value, None, where)
            except LayerError as err:
                raise CaffeliteError(str(err)) from None
            if total is None:
                total, first_key = np.zeros(image.shape, np.float64), key
            elif image.shape != total.shape:
                raise CaffeliteError(
                    f'record "{key.decode(errors="replace")}" in {where} is '
                    f'{" x ".join(map(str, image.shape))}, the first record '
                    f'"{first_key.decode(errors="replace")}" is '
                    f'{" x ".join(map(str, total.shape))}: cannot average them')
            total += image
            count += 1
            if count % 10000 == 0:
                logger.info('Processed %d files.', count)
    finally:
        reader.close()
    if not count:
        raise CaffeliteError(f'{where} has no records')
    return (total / count).astype(np.float32), count


def run(args):
    mean, count = compute_mean(args.input_db, args.backend)
    logger.info('Processed %d files.', count)
    if args.output_file:
        logger.info('Write to %s', args.output_file)
        write_mean_binaryproto(args.output_file, mean)
    logger.info('Number of channels: %d', mean.shape[0])
    for c, value in enumerate(mean.reshape(mean.shape[0], -1).mean(axis=1, dtype=np.float64)):
        logger.info('mean_value channel [%d]: %g', c, value)
    return 0


def main(argv=None):
    return run_tool(PROG, run, parse_args(build_parser(), argv))


if __name__ == '__main__':
    import sys
    sys.exit(main())
