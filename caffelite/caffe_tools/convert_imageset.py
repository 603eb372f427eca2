"""convert_imageset: images listed in a text file -> a database of Datum records (Caffe's tool).

    caffelite convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME

LISTFILE lines are ``path/to/image.jpg label`` (the label after the last space); each image
is read from ROOTFOLDER/path, as 3-channel BGR (1 gray channel with -gray), resized to
-resize_height x -resize_width when both are given, and stored under the key
``%08d_<path>`` (the line number from 0), so that the database's key order is the list order
(shuffled first with -shuffle). Raw records hold C x H x W uint8 pixels; with -encoded they
hold the image file itself -- re-encoded as -encode_type (default: the file's own extension)
when it was resized or is in another format. An image that cannot be read is skipped with a
warning, as in Caffe.
"""
import os

import numpy as np

from ..data.datum import array_to_datum
from ..data.db import open_db_writer
from ..data.images import encode_image, read_image as load_image
from ..data.listfile import read_list_file
from ..errors import CaffeliteError, LayerError
from ..proto import caffelite_pb2 as pb
from ..solvers.log import logger
from . import add_flag, make_parser, parse_args, run_tool

PROG = 'caffelite convert_imageset'
USAGE = f'{PROG} [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME'


def build_parser():
    parser = make_parser(PROG, USAGE, 'Convert a set of images to the leveldb/lmdb format '
                                      'used as input for Caffe.')
    add_flag(parser, 'gray', False, 'treat images as grayscale ones', bool)
    add_flag(parser, 'shuffle', False, 'randomly shuffle the order of images and their '
                                       'labels', bool)
    add_flag(parser, 'backend', 'lmdb', 'the backend {lmdb, leveldb} for storing the result')
    add_flag(parser, 'resize_width', 0, 'width images are resized to', int)
    add_flag(parser, 'resize_height', 0, 'height images are resized to', int)
    add_flag(parser, 'check_size', False, 'check that all the datum have the same size', bool)
    add_flag(parser, 'encoded', False, 'when true, the encoded image is saved in the datum',
             bool)
    add_flag(parser, 'encode_type', '', 'optional: what type should we encode the image as '
                                        "('png','jpg',...)")
    add_flag(parser, 'seed', None, 'caffelite extension: seed of the -shuffle order (default: '
                                   'random)', int)
    parser.add_argument('root_folder', metavar='ROOTFOLDER/')
    parser.add_argument('list_file', metavar='LISTFILE')
    parser.add_argument('db_name', metavar='DB_NAME')
    return parser


def _extension(path):
    ext = os.path.splitext(path)[1].lower().lstrip('.')
    return 'jpg' if ext == 'jpeg' else ext


def image_to_datum(path, label, height, width, is_color, encoding):
    """Caffe's ReadImageToDatum: the Datum for one image file (None if it cannot be read)."""
    try:
        image = load_image(path, is_color, height, width)
    except LayerError as err:
        logger.warning('Could not open or find file %s (%s)', path, err)
        return None
    if encoding:
        if not height and not width and _extension(path) == _extension('.' + encoding):
            with open(path, 'rb') as f:         # the file is already in that format
                data = f.read()
        else:
            data = encode_image(image, encoding)
        return pb.Datum(data=data, label=int(label), encoded=True)
    return array_to_datum(image, label)


def convert(args):
    if bool(args.resize_height) != bool(args.resize_width):
        logger.warning('only one of -resize_height / -resize_width is set; images are not '
                       'resized (Caffe resizes only when both are)')
        args.resize_height = args.resize_width = 0
    if args.encode_type and not args.encoded:
        raise CaffeliteError('-encode_type needs -encoded')
    try:
        lines = read_list_file(args.list_file, with_label=True)
    except (LayerError, OSError) as err:
        raise CaffeliteError(f'cannot read the list file: {err}') from None
    lines = [(entry, label) for _, entry, label in lines]
    if args.shuffle:
        logger.info('Shuffling data')
        np.random.default_rng(args.seed).shuffle(lines)
    logger.info('A total of %d images.', len(lines))
    count, size = 0, None
    with open_db_writer(args.db_name, args.backend) as db:
        for line_id, (entry, label) in enumerate(lines):
            encoding = ''
            if args.encoded:
                encoding = args.encode_type or _extension(entry)
                if not encoding:
                    logger.warning("Failed to guess the encoding of '%s'", entry)
            path = os.path.join(args.root_folder, entry)
            datum = image_to_datum(path, label, args.resize_height, args.resize_width,
                                   not args.gray, encoding)
            if datum is None:
                continue
            if args.check_size and not datum.encoded:
                if size is None:
                    size = datum.channels * datum.height * datum.width
                elif len(datum.data) != size:
                    raise CaffeliteError(f'{path}: incorrect data field size {len(datum.data)} '
                                         f'(the first image has {size}); give -resize_height '
                                         f'and -resize_width')
            db.put(f'{line_id:08d}_{entry}', datum.SerializeToString())
            count += 1
            if count % 1000 == 0:
                logger.info('Processed %d files.', count)
    if count % 1000:
        logger.info('Processed %d files.', count)
    return 0


def main(argv=None):
    return run_tool(PROG, convert, parse_args(build_parser(), argv))


if __name__ == '__main__':
    import sys
    sys.exit(main())
