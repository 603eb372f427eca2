"""The LRCN variants: where the image enters the captioning LSTMs (LRCN's stages), LRCN-fc7 for
activity recognition, and the reduced training budget of caffelite.lrcn.training."""

import re

import pytest

import caffelite as caffe
from caffelite.lrcn import training
import layer_testing

# The main job's data tops (N = 50 images, T = 20 steps), fed by Input instead of the files.
CAPTION_INPUTS = {'data': (50, 3, 64, 64), 'label': (50,), 'cont_sentence': (20, 50),
                  'input_sentence': (20, 50), 'target_sentence': (20, 50)}


def _wiring(path, stages):
    net = caffe.Net(path, caffe.TEST, stages=stages)
    split = r'_(?:data|input)_\d+_split_\d+$'           # the blob's name before its Split
    return {name: [re.sub(split, '', b) for b in net.bottom_names[name]]
            for name in net._layer_names if name.startswith(('lstm', 'predict'))}, net


@pytest.mark.parametrize('stages, lstm1, lstm2, predict', [
    ([], ['embedded_input_sentence', 'cont_sentence'], ['lstm1', 'cont_sentence', 'image_features'],
     ['lstm2']),
    (['unfactored', '2-layer'], ['embedded_input_sentence', 'cont_sentence', 'image_features'],
     ['lstm1', 'cont_sentence'], ['lstm2']),
    (['unfactored', '1-layer'], ['embedded_input_sentence', 'cont_sentence', 'image_features'],
     None, ['lstm1']),
])
def test_caption_variants_follow_lrcns_stages(stages, lstm1, lstm2, predict):
    wiring, net = _wiring('prototxt/lrcn_deploy_word.prototxt', stages)
    assert wiring['lstm1'][:len(lstm1)] == lstm1 and len(wiring['lstm1']) == len(lstm1) + 2
    assert wiring.get('lstm2', [None])[:len(lstm2 or [None])] == (lstm2 or [None])
    assert wiring['predict'] == predict
    train = layer_testing.net_with_inputs('prototxt/lrcn.prototxt', caffe.TRAIN, stages,
                                          CAPTION_INPUTS)
    static = 'lstm1' if 'unfactored' in stages else 'lstm2'
    assert len(train.params[static]) == 4                        # W_x, b, W_h, W_static
    assert re.match('fc_image', train.bottom_names[static][-1])


def test_lrcn_fc7_puts_a_second_fully_connected_layer_before_the_lstm():
    net = layer_testing.net_with_inputs(
        'prototxt/activity_lstm_fc7.prototxt', caffe.TEST, ['rgb'],
        {'data': (32, 3, 32, 32), 'clip_markers': (16, 2)}, drop=('Silence',))
    assert net.bottom_names['fc7'] == ['fc6']
    assert net.bottom_names['lstm1'][0] == 'fc7_tnd'
    assert net.params['fc7'][0].data.shape == (128, 128)


def test_reduced_budget_scales_the_schedule_and_names_its_weights():
    path = 'prototxt/activity_lstm_rgb_solver.prototxt'
    sp = training.solver_param(path, 1000)                  # 2500 iterations, stepsize 1800
    assert (sp.max_iter, sp.stepsize) == (1000, 720)
    assert training.final_weights(path, 1000) == \
        'snapshots/activity_lstm_rgb_1000it_iter_1000.caffemodel'
    assert training.final_weights(path) == 'snapshots/activity_lstm_rgb_iter_2500.caffemodel'
