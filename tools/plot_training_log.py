#!/usr/bin/env python
"""Draw the loss and accuracy curves of a Caffe / caffelite training log into a PNG.

    caffelite train --solver prototxt/lenet_solver.prototxt | tee lenet.log
    python tools/plot_training_log.py lenet.log lenet_curves.png

Reads the lines Caffe's own log parser reads (with or without glog's prefix):
``Iteration N (... iter/s, ...), loss = L`` (the displayed, smoothed train loss),
``Iteration N, Testing net (#k)`` followed by ``Test net output #i: name = v``. The left
panel shows the train loss and every test output whose name contains "loss"; the right panel
every other test output (accuracy). Drawn with Pillow, no plotting library needed.
"""
import argparse
import re
import sys
from collections import OrderedDict

NUMBER = r'([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)'
TRAIN = re.compile(r'Iteration (\d+)(?: \(.*\))?, loss = ' + NUMBER)
TESTING = re.compile(r'Iteration (\d+), Testing net \(#(\d+)\)')
TEST_OUTPUT = re.compile(r'Test net output #\d+: (\S+) = ' + NUMBER)

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127)]


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


def _nice_ticks(lo, hi, count=5):
    """Round tick values from <= lo to >= hi, about ``count`` steps apart."""
    import math
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [k * step for k in range(first, last + 1)]


def _draw_panel(draw, box, curves, title, font):
    """Axes, ticks and one polyline per (label, points) in ``curves`` inside ``box``."""
    left, top, right, bottom = box
    plot = (left + 60, top + 30, right - 15, bottom - 40)
    draw.text((left + 60, top + 8), title, fill='black', font=font)
    draw.rectangle(plot, outline='black')
    points = [p for _, pts in curves for p in pts if p[1] == p[1] and abs(p[1]) != float('inf')]
    if not points:
        draw.text((plot[0] + 10, plot[1] + 10), 'no data', fill='gray', font=font)
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks, y_ticks = _nice_ticks(min(xs), max(xs)), _nice_ticks(min(ys), max(ys))
    x_lo, x_hi, y_lo, y_hi = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def to_pixel(x, y):
        px = plot[0] + (x - x_lo) / ((x_hi - x_lo) or 1) * (plot[2] - plot[0])
        py = plot[3] - (y - y_lo) / ((y_hi - y_lo) or 1) * (plot[3] - plot[1])
        return px, py

    for x in x_ticks:
        px, _ = to_pixel(x, y_lo)
        draw.line([(px, plot[3]), (px, plot[3] + 4)], fill='black')
        draw.text((px - 12, plot[3] + 8), f'{x:g}', fill='black', font=font)
    for y in y_ticks:
        _, py = to_pixel(x_lo, y)
        draw.line([(plot[0] - 4, py), (plot[0], py)], fill='black')
        draw.line([(plot[0] + 1, py), (plot[2] - 1, py)], fill=(230, 230, 230))
        draw.text((left + 4, py - 6), f'{y:.4g}', fill='black', font=font)
    draw.text(((plot[0] + plot[2]) / 2 - 20, bottom - 18), 'iteration', fill='black', font=font)
    for k, (label, pts) in enumerate(curves):
        color = COLORS[k % len(COLORS)]
        pixels = [to_pixel(x, y) for x, y in pts if y == y and abs(y) != float('inf')]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2)
        for px, py in pixels if len(pixels) < 40 else []:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
        draw.text((plot[2] - 150, plot[1] + 6 + 14 * k), label, fill=color, font=font)


def plot(series, path, title=''):
    from PIL import Image, ImageDraw, ImageFont
    width, height = 1100, 450
    image = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    losses = [(k, v) for k, v in series.items() if 'loss' in k]
    others = [(k, v) for k, v in series.items() if 'loss' not in k]
    _draw_panel(draw, (0, 0, width // 2, height), losses, f'{title} loss'.strip(), font)
    _draw_panel(draw, (width // 2, 0, width, height), others,
                f'{title} test outputs'.strip(), font)
    image.save(path)


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
    plot(series, args.png, args.title)
    for name, points in series.items():
        print(f'{name}: {len(points)} points, last {points[-1][1]:g} at iteration '
              f'{points[-1][0]}')
    print(f'wrote {args.png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
