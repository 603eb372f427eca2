"""upgrade_net_proto_binary: rewrite a V0/V1 binary net (.caffemodel) in the current format.

    caffelite upgrade_net_proto_binary v0_net_proto_file_in net_proto_file_out

As upgrade_net_proto_text, for binary NetParameters; the layers' weight blobs are kept.
"""
from . import parse_args, run_tool
from .upgrade_net_proto_text import build_parser, upgrade_binary

PROG = 'caffelite upgrade_net_proto_binary'


def main(argv=None):
    return run_tool(PROG, upgrade_binary, parse_args(build_parser(PROG, 'binary'), argv))


if __name__ == '__main__':
    import sys
    sys.exit(main())
