#!/usr/bin/env python
"""Draw the loss and accuracy curves of a Caffe / caffelite training log into a PNG.

    caffelite train --solver prototxt/lenet_solver.prototxt | tee lenet.log
    python tools/plot_training_log.py lenet.log lenet_curves.png

Reads the lines Caffe's own log parser reads (with or without glog's prefix):
``Iteration N (... iter/s, ...), loss = L`` (the displayed, smoothed train loss),
``Iteration N, Testing net (#k)`` followed by ``Test net output #i: name = v``. The left
panel shows the train loss and every test output whose name contains "loss"; the right panel
every other test output (accuracy). Drawn with matplotlib (the [plot] extra).
"""
import argparse
import re
import sys
from collections import OrderedDict

from caffelite.errors import CaffeliteError
from caffelite.plotting import pyplot

NUMBER = r'([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)'
TRAIN = re.compile(r'Iteration (\d+)(?: \(.*\))?, loss = ' + NUMBER)
TESTING = re.compile(r'Iteration (\d+), Testing net \(#(\d+)\)')
TEST_OUTPUT = re.compile(r'Test net output #\d+: (\S+) = ' + NUMBER)

def parse_log(lines):
    """{'train loss': [(iter, value)], 'test#k name': [(iter, value)], ...} in log order."""
    series = OrderedDict()
    test_iter, test_net = None, None
    for line in lines:
        match = TESTING.search(line)
        if match:
            test_iter, test_net = int(match.group(1)), int(match.group(2))
            continue
        match = TEST_OUTPUT.search(line)
        if match and test_iter is not None:
            name = f'test#{test_net} {match.group(1)}' if test_net else f'test {match.group(1)}'
            series.setdefault(name, []).append((test_iter, float(match.group(2))))
            continue
        match = TRAIN.search(line)
        if match:
            series.setdefault('train loss', []).append((int(match.group(1)),
                                                        float(match.group(2))))
    return series


def plot(series, path, title=''):
    """Two panels: losses (train and test) and the other test outputs, against iteration."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (('loss', [k for k in series if 'loss' in k]),
              ('test outputs', [k for k in series if 'loss' not in k]))
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            xs, ys = zip(*series[key])
            ax.plot(xs, ys, marker='o' if len(xs) < 40 else None, markersize=3, label=key)
        ax.set_title(f'{title} {name}'.strip())
        ax.set_xlabel('iteration')
        ax.grid(True, alpha=0.3)
        if keys:
            ax.legend()
        else:
            ax.text(0.5, 0.5, 'no data', ha='center', va='center', transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Plot loss and accuracy from a training log.')
    parser.add_argument('log', help='log file written by `caffelite train` (or caffe train)')
    parser.add_argument('png', help='output image')
    parser.add_argument('--title', default='')
    args = parser.parse_args(argv)
    try:
        with open(args.log, encoding='utf-8', errors='replace') as f:
            series = parse_log(f)
    except OSError as err:
        print(f'plot_training_log: cannot read {args.log}: {err.strerror}', file=sys.stderr)
        return 1
    if not series:
        print(f'plot_training_log: {args.log} has no "Iteration N ..., loss = " or '
              f'"Test net output" lines', file=sys.stderr)
        return 1
    try:
        plot(series, args.png, args.title)
    except CaffeliteError as err:
        print(f'plot_training_log: {err}', file=sys.stderr)
        return 1
    for name, points in series.items():
        print(f'{name}: {len(points)} points, last {points[-1][1]:g} at iteration '
              f'{points[-1][0]}')
    print(f'wrote {args.png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
