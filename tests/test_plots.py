"""Plots: the training-log curves render to a PNG with matplotlib; a missing matplotlib is a
clear message naming the [plot] extra; the caption gallery and confusion-matrix images."""

import builtins

import numpy as np
import pytest
from PIL import Image

from caffelite.errors import CaffeliteError
from caffelite import plotting

LOG = '''I1125 10:00:00.100000  1 solver.cpp:2] Iteration 0, Testing net (#0)
I1125 10:00:00.200000  1 solver.cpp:3]     Test net output #0: accuracy = 0.1
I1125 10:00:00.200000  1 solver.cpp:3]     Test net output #1: cross_entropy_loss = 2.3 (* 1 = 2.3 loss)
I1125 10:00:00.300000  1 solver.cpp:4] Iteration 0 (0 iter/s, 0.1s/100 iters), loss = 2.31
I1125 10:00:01.300000  1 solver.cpp:4] Iteration 100 (100 iter/s, 1s/100 iters), loss = 0.5
I1125 10:00:02.100000  1 solver.cpp:2] Iteration 200, Testing net (#0)
I1125 10:00:02.200000  1 solver.cpp:3]     Test net output #0: accuracy = 0.9
I1125 10:00:02.200000  1 solver.cpp:3]     Test net output #1: cross_entropy_loss = 0.3 (* 1 = 0.3 loss)
'''


def _is_png(path, min_width):
    with Image.open(path) as image:
        assert image.format == 'PNG' and image.size[0] >= min_width
        colours = np.unique(np.asarray(image.convert('RGB')).reshape(-1, 3), axis=0)
        assert len(colours) > 3


def test_training_log_renders_with_matplotlib(tmp_path):
    from tools import plot_training_log
    (tmp_path / 'train.log').write_text(LOG)
    png = tmp_path / 'curves.png'
    assert plot_training_log.main([str(tmp_path / 'train.log'), str(png)]) == 0
    _is_png(png, 500)


@pytest.fixture
def no_matplotlib(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == 'matplotlib' or name.startswith('matplotlib.'):
            raise ImportError('No module named %r' % name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)


def test_missing_matplotlib_message_names_the_extra(no_matplotlib, tmp_path, capsys):
    with pytest.raises(CaffeliteError, match=r"matplotlib is not installed.*\.\[plot\]"):
        plotting.pyplot()
    from tools import plot_training_log
    (tmp_path / 'train.log').write_text(LOG)
    assert plot_training_log.main([str(tmp_path / 'train.log'), str(tmp_path / 'x.png')]) == 1
    err = capsys.readouterr().err
    assert "pip install -e '.[plot]'" in err and 'Traceback' not in err


def test_confusion_matrix_counts_true_rows_predicted_columns():
    from caffelite.lrcn.activity import confusion_matrix
    scores = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
    labels = [0, 1, 1, 2]
    assert confusion_matrix(scores, labels, 3).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_gallery_and_confusion_pictures(tmp_path):
    from caffelite.lrcn.gallery import caption_gallery, confusion_figure
    paths = []
    for k, colour in enumerate(((255, 0, 0), (0, 0, 255), (0, 200, 0))):
        paths.append(str(tmp_path / ('im%d.png' % k)))
        Image.new('RGB', (16, 16), colour).save(paths[-1])
    refs = [['a red square'], ['a blue square'], ['a green square']]
    caption_gallery(paths, refs, {'greedy': ['a red square', 'a blue circle', 'a square'],
                                  'beam 3': ['red', 'blue', 'green']},
                    str(tmp_path / 'gallery.png'), columns=2)
    _is_png(tmp_path / 'gallery.png', 300)
    confusion_figure([('single frame', np.eye(3) * 5), ('LRCN', np.ones((3, 3)))],
                     ['a', 'b', 'c'], str(tmp_path / 'confusion.png'))
    _is_png(tmp_path / 'confusion.png', 300)
