#!/usr/bin/env python
"""Generate a small handwritten-digit-like data set (no download), for the LeNet example.

Each digit 0-9 is a stroke template (polylines in a unit box). Every sample jitters the
template's points, applies a random affine map (rotation, scale, shear, shift), draws the
strokes with a random pen width as an anti-aliased distance field (vectorised over the whole
batch), then adds a little blur-like softness and pixel noise. Images are 28 x 28 grayscale.

Output (Caffe's HDF5Data format) in --out (default data/digits):

    digits_train.h5, digits_test.h5   datasets ``data`` (float32 N x 1 x 28 x 28 in [0, 1])
                                      and ``label`` (float32 N, the digit)
    train.txt, test.txt               list files naming the .h5 files (beside them)

    python tools/make_digits.py [--out data/digits] [--train 12000] [--test 2000] [--seed 1]
"""
import argparse
import os
import sys

import numpy as np

SIZE = 28


def _arc(cx, cy, rx, ry, start, stop, n=10):
    """Points on an ellipse arc; angles in degrees, 0 = right, 90 = down (image y)."""
    t = np.radians(np.linspace(start, stop, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*points):
    return np.array(points, dtype=np.float64)


# Each digit: a list of polylines (arrays of (x, y) points in [0, 1]^2, y pointing down).
TEMPLATES = {
    0: [_arc(0.5, 0.5, 0.27, 0.4, 0, 360, 20)],
    1: [_line((0.36, 0.26), (0.55, 0.09), (0.55, 0.92))],
    2: [np.concatenate([_arc(0.5, 0.33, 0.27, 0.23, 200, 370, 10),
                        _line((0.74, 0.42), (0.22, 0.9), (0.8, 0.9))])],
    3: [_arc(0.48, 0.29, 0.26, 0.2, 210, 450, 12), _arc(0.48, 0.69, 0.29, 0.22, 270, 510, 12)],
    4: [_line((0.64, 0.92), (0.64, 0.08), (0.16, 0.64), (0.84, 0.64))],
    5: [np.concatenate([_line((0.78, 0.1), (0.3, 0.1), (0.27, 0.45)),
                        _arc(0.48, 0.65, 0.3, 0.25, 235, 495, 12)])],
    6: [np.concatenate([_line((0.72, 0.1)), _arc(0.72, 0.62, 0.48, 0.52, 270, 180, 6),
                        _arc(0.5, 0.68, 0.24, 0.22, 180, 540, 14)])],
    7: [_line((0.2, 0.1), (0.8, 0.1), (0.42, 0.92))],
    8: [_arc(0.5, 0.29, 0.2, 0.19, 0, 360, 14), _arc(0.5, 0.7, 0.25, 0.21, 0, 360, 14)],
    9: [np.concatenate([_arc(0.5, 0.33, 0.22, 0.21, 0, 360, 14),
                        _line((0.72, 0.33), (0.62, 0.92))])],
}


def _segments(digit):
    """(S, 2, 2) array of the template's line segments."""
    return np.concatenate([np.stack([p[:-1], p[1:]], axis=1) for p in TEMPLATES[digit]])


MAX_SEGMENTS = max(len(_segments(d)) for d in TEMPLATES)


def _padded_segments(labels):
    """(N, S, 2, 2) segments of each sample's template, padded with far-away segments."""
    table = np.full((10, MAX_SEGMENTS, 2, 2), 1e3)
    for d in TEMPLATES:
        seg = _segments(d)
        table[d, :len(seg)] = seg
    return table[labels], np.arange(MAX_SEGMENTS)[None, :] < np.array(
        [len(_segments(d)) for d in range(10)])[labels][:, None]


def _random_affine(rng, n):
    """(N, 2, 2) matrices and (N, 2) offsets mapping template space to pixels."""
    angle = rng.normal(0, 0.22, n)
    scale = rng.uniform(0.62, 0.95, n) * SIZE
    aspect = rng.uniform(0.8, 1.15, n)
    shear = rng.normal(0, 0.22, n)
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    stretch = np.zeros((n, 2, 2))
    stretch[:, 0, 0] = scale * aspect
    stretch[:, 0, 1] = scale * shear
    stretch[:, 1, 1] = scale
    matrix = rot @ stretch
    offset = SIZE / 2 + rng.normal(0, 1.8, (n, 2))
    return matrix, offset


def render(labels, rng):
    """float32 (N, 1, 28, 28) images in [0, 1] of the given digits."""
    n = len(labels)
    seg, valid = _padded_segments(labels)
    # Wobble: every segment end point moves a little on its own (strokes may break slightly).
    seg = seg + rng.normal(0, 0.04, seg.shape) * valid[:, :, None, None]
    matrix, offset = _random_affine(rng, n)
    centred = seg - 0.5
    pts = np.einsum('nij,nsej->nsei', matrix, centred) + offset[:, None, None, :]
    a, b = pts[:, :, 0, :], pts[:, :, 1, :]                       # (N, S, 2)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)             # (P, 2)
    width = rng.uniform(0.7, 2.0, n)[:, None]
    images = np.empty((n, SIZE * SIZE))
    chunk = 512
    for start in range(0, n, chunk):                              # bounded memory only
        sl = slice(start, start + chunk)
        ab = (b[sl] - a[sl])[:, :, None, :]                       # (C, S, 1, 2)
        ap = grid[None, None] - a[sl][:, :, None, :]              # (C, S, P, 2)
        t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
        dist = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=1)   # (C, P)
        images[sl] = np.clip(width[sl] + 0.5 - dist, 0, 1)
    images *= rng.uniform(0.75, 1.0, (n, 1))
    images += rng.normal(0, 0.08, images.shape)
    return np.clip(images, 0, 1).astype(np.float32).reshape(n, 1, SIZE, SIZE)


def write_split(folder, name, count, rng):
    import h5py
    labels = rng.integers(0, 10, count)
    data = render(labels, rng)
    path = os.path.join(folder, f'digits_{name}.h5')
    with h5py.File(path, 'w') as f:
        f.create_dataset('data', data=data, compression='gzip', compression_opts=1)
        f.create_dataset('label', data=labels.astype(np.float32))
    with open(os.path.join(folder, f'{name}.txt'), 'w') as f:
        f.write(os.path.basename(path) + '\n')     # resolved beside the list file
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=os.path.join('data', 'digits'))
    parser.add_argument('--train', type=int, default=12000, help='training images')
    parser.add_argument('--test', type=int, default=2000, help='test images')
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1:
        parser.error('--train and --test must be positive')
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, count in (('train', args.train), ('test', args.test)):
        path = write_split(args.out, name, count, rng)
        print(f'wrote {count} images to {path} and {os.path.join(args.out, name + ".txt")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
