"""Caffe's command-line tools, each a module with ``main(argv=None)`` returning an exit code:

- ``convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME``: images -> Datum LMDB/LevelDB
- ``compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]``: the mean image as a .binaryproto
- ``extract_features pretrained_net_param feature_extraction_proto_file blob1[,blob2,...]
  dataset1[,dataset2,...] num_mini_batches db_type [CPU/GPU] [DEVICE_ID]``
- ``upgrade_net_proto_text`` / ``upgrade_net_proto_binary`` / ``upgrade_solver_proto_text``
  ``IN OUT``: old-format nets and solvers rewritten in the current format

Flags are Caffe's gflags: one dash or two, ``-flag value`` or ``-flag=value``; a boolean
flag alone means true, ``-flag=false`` or ``-noflag`` false.
"""
import argparse
import sys

from ..errors import CaffeliteError, printable

TRUE_WORDS = ('1', 'true', 't', 'yes', 'y')
FALSE_WORDS = ('0', 'false', 'f', 'no', 'n')


def parse_bool(text):
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got "{text}"')


def make_parser(prog, usage, description):
    parser = argparse.ArgumentParser(prog=prog, usage=usage, description=description,
                                     allow_abbrev=False)
    parser.bool_flags = set()
    return parser


def add_flag(parser, name, default, help, type=str):
    """A gflags-style flag -name / --name; a boolean one also takes -noname / --noname and
    never consumes the next argument (``-shuffle ROOT/`` leaves ROOT/ positional)."""
    if type is bool:
        parser.bool_flags.add(name)
        parser.add_argument('--' + name, dest=name, default=default, type=parse_bool,
                            metavar='BOOL', help=help)
    else:
        parser.add_argument('-' + name, '--' + name, dest=name, default=default, type=type,
                            help=help)


def parse_args(parser, argv):
    """parser.parse_args after rewriting the boolean flags as --name=true/false."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rewritten = []
    for arg in argv:
        name, value = arg.lstrip('-'), None
        if arg.startswith('-') and arg != '-' and '=' in name:
            name, value = name.split('=', 1)
        if arg.startswith('-') and name in parser.bool_flags:
            arg = f'--{name}={"true" if value is None else value}'
        elif arg.startswith('-') and value is None and name.startswith('no') \
                and name[2:] in parser.bool_flags:
            arg = f'--{name[2:]}=false'
        rewritten.append(arg)
    return parser.parse_args(rewritten)


def run_tool(prog, body, args):
    """Run ``body(args)`` with the caffelite logger printing glog-style lines on stderr (as
    Caffe's tools); a CaffeliteError (or OSError) prints one line there and returns 1."""
    from ..solvers.log import glog_handler, logger
    handler = glog_handler(sys.stderr)
    try:
        result = body(args)
        return 0 if result is None else result
    except (CaffeliteError, OSError) as err:
        sys.stdout.flush()
        print(f'{prog}: error: {printable(err)}', file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
