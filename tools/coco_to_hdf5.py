#!/usr/bin/env python3
"""COCO captions JSON + image folder -> LRCN's HDF5 caption-training layout.

    python tools/coco_to_hdf5.py --captions captions_train.json --images DIR --out OUT
    python tools/coco_to_hdf5.py --captions captions_val.json --images DIR \\
        --out OUT_VAL --vocab OUT/vocabulary.txt

The layout (streams, vocabulary, alignment, chunk files) is documented in
caffelite/lrcn/coco_hdf5.py, which does the work.
"""

import argparse
import sys

from caffelite.errors import CaffeliteError
from caffelite.lrcn.coco_hdf5 import convert


def main(argv=None):
    p = argparse.ArgumentParser(description="COCO captions -> LRCN HDF5 caption streams "
                                            "(layout: caffelite/lrcn/coco_hdf5.py)")
    p.add_argument("--captions", required=True, help="COCO captions JSON")
    p.add_argument("--images", required=True, help="folder the JSON's file_name entries live in")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--vocab", help="reuse this vocabulary.txt instead of building one")
    p.add_argument("--buffer-size", type=int, default=100, help="parallel streams N (default 100)")
    p.add_argument("--max-words", type=int, default=20, help="stream length T (default 20)")
    p.add_argument("--min-count", type=int, default=5, help="min word count for the vocabulary (default 5)")
    p.add_argument("--chunk-length", type=int, default=100000,
                   help="time rows per .h5 file, multiple of --max-words (default 100000)")
    p.add_argument("--seed", type=int, default=3, help="seed for alignment padding + shuffle (LRCN: 3)")
    p.add_argument("--no-shuffle", action="store_true", help="keep JSON order")
    p.add_argument("--input-pad", type=int, default=-1,
                   help="pad value of input_sentence (LRCN: -1)")
    args = p.parse_args(argv)
    try:
        info = convert(args.captions, args.images, args.out, args.vocab, args.buffer_size,
                       args.max_words, args.min_count, args.chunk_length, args.seed,
                       not args.no_shuffle, args.input_pad)
    except CaffeliteError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("%(pairs)d captions (%(aligned_pairs)d after alignment), vocabulary %(vocab_size)d "
          "words, %(truncated)d truncated, %(rows)d rows in %(chunks)d chunk file(s)" % info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
