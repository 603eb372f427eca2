"""upgrade_net_proto_text: rewrite a V0/V1 net prototxt in the current format (Caffe's tool).

    caffelite upgrade_net_proto_text v0_net_proto_file_in net_proto_file_out

The net is upgraded as a Net upgrades it when it reads it (caffelite.upgrade: V0 padding
layers and settings, V1 ``layers``, data transformation fields, BatchNorm params), and its
deprecated ``input`` / ``input_dim`` fields become an Input layer; each upgrade is logged.
A file already in the current format is written unchanged (and said so). Exit status 0.
"""
import warnings

from google.protobuf import text_format

from ..io import atomic_path, write_proto_atomic
from ..proto import caffelite_pb2 as pb
from ..prototxt import read_proto_binary, read_prototxt
from ..solvers.log import logger
from ..upgrade import UpgradeWarning, net_needs_upgrade, upgrade_net_as_needed
from . import make_parser, parse_args, run_tool

PROG = 'caffelite upgrade_net_proto_text'


def build_parser(prog=PROG, what='text'):
    parser = make_parser(prog, f'{prog} v0_net_proto_file_in net_proto_file_out',
                         f'Upgrade a {what} NetParameter written in a deprecated format.')
    parser.add_argument('input_file', metavar='v0_net_proto_file_in')
    parser.add_argument('output_file', metavar='net_proto_file_out')
    return parser


def upgrade_net_logged(param, source, report_current=True):
    """``param`` upgraded to the current format, each upgrade logged as a warning line."""
    has_input_fields = bool(param.input)
    if not (net_needs_upgrade(param) or has_input_fields):
        if report_current:
            logger.warning('File already in latest proto format: %s', source)
        return param
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', UpgradeWarning)
        param = upgrade_net_as_needed(param, source)
    for warning in caught:
        logger.warning('%s', warning.message)
    if has_input_fields:
        logger.warning('Attempting to upgrade input file specified using deprecated input '
                       'fields: %s', source)
    return param


def write_text(path, message):
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text_format.MessageToString(message))




def upgrade_text(args):
    param = read_prototxt(args.input_file, pb.NetParameter())
    param = upgrade_net_logged(param, args.input_file)
    write_text(args.output_file, param)
    logger.info('Wrote upgraded NetParameter text proto to %s', args.output_file)
    return 0


def upgrade_binary(args):
    param = read_proto_binary(args.input_file, pb.NetParameter())
    param = upgrade_net_logged(param, args.input_file)
    write_proto_atomic(args.output_file, param)
    logger.info('Wrote upgraded NetParameter binary proto to %s', args.output_file)
    return 0


def main(argv=None):
    return run_tool(PROG, upgrade_text, parse_args(build_parser(), argv))




if __name__ == '__main__':
    import sys
    sys.exit(main())
