"""upgrade_solver_proto_text: rewrite a solver prototxt in the current format (Caffe's tool).

    caffelite upgrade_solver_proto_text old_solver_proto_file_in solver_proto_file_out

The deprecated enum ``solver_type: NESTEROV`` becomes ``type: "Nesterov"``; nets embedded in
the solver (net_param, train_net_param, test_net_param) are upgraded too.
"""
import warnings

from ..proto import caffelite_pb2 as pb
from ..prototxt import read_prototxt
from ..solvers.log import logger
from ..upgrade import UpgradeWarning, solver_needs_upgrade, upgrade_solver_param
from . import make_parser, parse_args, run_tool
from .upgrade_net_proto_text import upgrade_net_logged, write_text

PROG = 'caffelite upgrade_solver_proto_text'


def build_parser():
    parser = make_parser(PROG, f'{PROG} old_solver_proto_file_in solver_proto_file_out',
                         'Upgrade a SolverParameter text file written in a deprecated format.')
    parser.add_argument('input_file', metavar='old_solver_proto_file_in')
    parser.add_argument('output_file', metavar='solver_proto_file_out')
    return parser


def upgrade(args):
    param = read_prototxt(args.input_file, pb.SolverParameter())
    if solver_needs_upgrade(param):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UpgradeWarning)
            upgrade_solver_param(param, args.input_file)
        for warning in caught:
            logger.warning('%s', warning.message)
    else:
        logger.warning('File already in latest proto format: %s', args.input_file)
    for field in ('net_param', 'train_net_param'):
        if param.HasField(field):
            where = f'{args.input_file} ({field})'
            getattr(param, field).CopyFrom(upgrade_net_logged(getattr(param, field), where,
                                                                  False))
    for i, net in enumerate(param.test_net_param):
        net.CopyFrom(upgrade_net_logged(net, f'{args.input_file} (test_net_param {i})', False))
    write_text(args.output_file, param)
    logger.info('Wrote upgraded SolverParameter text proto to %s', args.output_file)
    return 0


def main(argv=None):
    return run_tool(PROG, upgrade, parse_args(build_parser(), argv))


if __name__ == '__main__':
    import sys
    sys.exit(main())
