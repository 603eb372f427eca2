#!/usr/bin/env python
"""Draw a net's graph into an image file, as Caffe's python/draw_net.py does.

    python tools/draw_net.py net.prototxt net.png [--rankdir LR] [--phase ALL|TRAIN|TEST]

The output's extension picks the format: png, svg, pdf, ... (rendered by Graphviz's `dot`),
or dot/gv (the graph source, no Graphviz needed). Needs pydot: pip install caffelite[draw].
"""
import argparse
import sys

from caffelite import draw
from caffelite.errors import CaffeliteError
from caffelite.prototxt import read_prototxt
from caffelite.proto import caffelite_pb2 as pb

PHASES = {'TRAIN': pb.TRAIN, 'TEST': pb.TEST, 'ALL': None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input_net_proto_file', help='Input network prototxt file')
    parser.add_argument('output_image_file', help='Output image file')
    parser.add_argument('--rankdir', default='LR',
                        help='One of TB (top-bottom, i.e., vertical), RL (right-left, i.e., '
                             'horizontal), and another valid dot option (default LR).')
    parser.add_argument('--phase', default='ALL',
                        help='Which network phase to draw: can be TRAIN, TEST, or ALL. If '
                             'ALL, then all layers are drawn regardless of phase.')
    parser.add_argument('--display_lrm', action='store_true',
                        help='Show the learning rate multipliers, when non-zero, of the '
                             'learning layers (Convolution, Deconvolution, InnerProduct).')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.phase not in PHASES:
        print(f'draw_net: unknown phase {args.phase} (use TRAIN, TEST or ALL)',
              file=sys.stderr)
        return 2
    try:
        net = read_prototxt(args.input_net_proto_file, pb.NetParameter())
        print(f'Drawing net to {args.output_image_file}')
        draw.draw_net_to_file(net, args.output_image_file, args.rankdir, PHASES[args.phase],
                              args.display_lrm)
    except (CaffeliteError, ValueError, OSError) as err:
        print(f'draw_net: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
