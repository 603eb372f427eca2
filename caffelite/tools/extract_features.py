"""extract_features: blobs of a trained net, item by item, into databases (Caffe's tool).

    caffelite extract_features pretrained_net_param feature_extraction_proto_file \\
        extract_feature_blob_name1[,name2,...] save_feature_dataset_name1[,name2,...] \\
        num_mini_batches db_type [CPU/GPU] [DEVICE_ID=0]

The net (TEST phase, weights from pretrained_net_param) must read its own input (a Data,
ImageData, ... layer). It runs num_mini_batches forward passes; for every item n of every
batch, blob k's values go to dataset k as a Datum with float_data, channels / height / width
the blob's (legacy 4-D) shape, under the key ``%010d`` (the item's number from 0).
db_type is lmdb or leveldb; ``hdf5`` (a caffelite extension) writes each dataset as an HDF5
file with one dataset ``data`` of shape (items, *blob.shape[1:]).
"""
import numpy as np

from .. import backend
from ..errors import CaffeliteError
from ..io import atomic_path
from ..layers.db_data import open_db_writer
from ..net import Net
from ..proto import caffelite_pb2 as pb
from ..solvers.log import logger
from . import make_parser, parse_args, run_tool

PROG = 'caffelite extract_features'
USAGE = (f'{PROG} pretrained_net_param feature_extraction_proto_file '
         f'extract_feature_blob_name1[,name2,...] save_feature_dataset_name1[,name2,...] '
         f'num_mini_batches db_type [CPU/GPU] [DEVICE_ID=0]')


def build_parser():
    parser = make_parser(PROG, USAGE, 'Extract features of a trained net into databases.')
    parser.add_argument('pretrained_net_param')
    parser.add_argument('feature_extraction_proto_file')
    parser.add_argument('blob_names', metavar='extract_feature_blob_names')
    parser.add_argument('dataset_names', metavar='save_feature_dataset_names')
    parser.add_argument('num_mini_batches', type=int)
    parser.add_argument('db_type', type=str.lower, choices=('lmdb', 'leveldb', 'hdf5'))
    parser.add_argument('mode', nargs='?', default='CPU', type=str.upper,
                        choices=('CPU', 'GPU'))
    parser.add_argument('device_id', nargs='?', default=0, type=int)
    return parser


class _HDF5Dataset:
    """Rows appended to the dataset ``data`` of a new HDF5 file (written atomically)."""

    def __init__(self, path):
        self.path, self.rows = path, []

    def add(self, array):
        self.rows.append(np.array(array, dtype=np.float32))  # a copy: blob storage is reused

    def close(self):
        import h5py
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, 'w') as f:
                f.create_dataset('data', data=np.concatenate(self.rows))


class _DatumDataset:
    """One Datum (float_data) per item, keys %010d."""

    def __init__(self, path, db_type):
        self.db = open_db_writer(path, db_type)
        self.index = 0

    def add(self, array):
        array = np.asarray(array, dtype=np.float32)
        padded = array.shape[1:] + (1,) * (3 - len(array.shape[1:]))
        if len(padded) > 3:
            raise CaffeliteError(f'a Datum holds at most 3 axes per item; the blob has shape '
                                 f'{array.shape}')
        for item in array:
            datum = pb.Datum(channels=padded[0], height=padded[1], width=padded[2])
            datum.float_data.extend(item.ravel())
            self.db.put(f'{self.index:010d}', datum.SerializeToString())
            self.index += 1

    def close(self):
        self.db.close()


def extract(args):
    if args.num_mini_batches <= 0:
        raise CaffeliteError(f'num_mini_batches must be positive, got {args.num_mini_batches}')
    if args.mode == 'GPU':
        logger.info('Using Device_id=%d', args.device_id)
        try:
            backend.set_device(args.device_id)
            backend.set_mode_gpu()
        except CaffeliteError:
            raise
        except Exception as err:
            raise CaffeliteError(f'cannot use GPU {args.device_id}: {err}') from None
    else:
        logger.info('Using CPU')
    blob_names = [b for b in args.blob_names.split(',') if b]
    dataset_names = [d for d in args.dataset_names.split(',') if d]
    if len(blob_names) != len(dataset_names):
        raise CaffeliteError(f'{len(blob_names)} blob name(s) but {len(dataset_names)} '
                             f'dataset name(s): give one dataset per blob')
    net = Net(args.feature_extraction_proto_file, pb.TEST, weights=args.pretrained_net_param)
    for name in blob_names:
        if name not in net.blobs:
            raise CaffeliteError(f'Unknown feature blob name {name} in the network '
                                 f'{args.feature_extraction_proto_file}')
    if net.inputs:
        raise CaffeliteError(f'{args.feature_extraction_proto_file}: the net has input blobs '
                             f'({", ".join(net.inputs)}); extract_features needs a net that '
                             f'reads its own data (e.g. a Data layer)')
    datasets = []
    try:
        for name in dataset_names:
            datasets.append(_HDF5Dataset(name) if args.db_type == 'hdf5'
                            else _DatumDataset(name, args.db_type))
        logger.info('Extracting Features')
        for batch in range(args.num_mini_batches):
            net.forward()
            for name, dataset in zip(blob_names, datasets):
                data = net.blobs[name].data
                dataset.add(data if data.ndim else data.reshape(1, 1))
            logger.info('Extracted features of %d query images for %d feature blob(s)',
                        (batch + 1) * net.blobs[blob_names[0]].num, len(blob_names))
    finally:
        for dataset in datasets:
            dataset.close()
    logger.info('Successfully extracted the features!')
    return 0


def main(argv=None):
    return run_tool(PROG, extract, parse_args(build_parser(), argv))


if __name__ == '__main__':
    import sys
    sys.exit(main())
