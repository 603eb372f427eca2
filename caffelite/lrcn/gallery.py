"""Pictures of LRCN results (matplotlib, the [plot] extra; caffelite.plotting):

  caption_gallery:   a grid of images, each with its first reference caption and the
                     generated ones (e.g. greedy and beam) written under it;
  confusion_figure:  one confusion matrix per model side by side (rows: true class, columns:
                     predicted; cell = fraction of the row's videos), for activity recognition.
"""

import textwrap

import numpy as np
from PIL import Image

from ..plotting import pyplot


def caption_gallery(paths, references, generated, out, columns=4, width=36):
    """paths: N image files; references: N caption lists; generated: {label: N captions}
    -> PNG at ``out`` (N / columns rows; the texts are wrapped at ``width`` characters)."""
    plt = pyplot()
    texts = [["%s: %s" % t for t in [("ref", references[k][0])]
              + [(label, caps[k]) for label, caps in generated.items()]]
             for k in range(len(paths))]
    texts = ["\n".join(textwrap.fill(t, width) for t in cell) for cell in texts]
    lines = max(t.count("\n") + 1 for t in texts)
    rows = -(-len(paths) // columns)
    cell_w, image_h, text_h = 2.9, 2.0, 0.14 * lines + 0.15       # inches
    cell_h = image_h + text_h
    fig = plt.figure(figsize=(cell_w * columns, cell_h * rows))
    for k, (path, text) in enumerate(zip(paths, texts)):
        r, c = divmod(k, columns)
        ax = fig.add_axes([(c * cell_w + 0.05) / (cell_w * columns),
                           ((rows - 1 - r) * cell_h + text_h) / (cell_h * rows),
                           image_h / (cell_w * columns), (image_h - 0.1) / (cell_h * rows)])
        ax.axis("off")
        with Image.open(path) as image:
            ax.imshow(np.asarray(image.convert("RGB")), interpolation="nearest")
        ax.text(0.0, -0.03, text, transform=ax.transAxes, va="top", ha="left", fontsize=7.5)
    fig.savefig(out, dpi=72)
    plt.close(fig)


def confusion_figure(matrices, class_names, out, group=2):
    """matrices: [(title, C x C counts)] -> PNG at ``out``, rows normalised to fractions;
    thin lines separate consecutive groups of ``group`` classes (the activity data's
    time-reversal pairs)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.6), squeeze=False)
    for ax, (title, m) in zip(axes[0], matrices):
        m = np.asarray(m, np.float64)
        frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        for k in range(group, len(class_names), group):
            ax.axhline(k - 0.5, color="0.6", lw=0.5)
            ax.axvline(k - 0.5, color="0.6", lw=0.5)
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    plt.close(fig)
