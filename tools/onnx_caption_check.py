#!/usr/bin/env python3
"""Export LRCN's captioner (image net + word-by-word net) to ONNX and check that greedy
captions under onnxruntime equal caffelite's.

    python tools/onnx_caption_check.py --weights snapshots/lrcn_iter_5000.caffemodel \\
        [--captions data/shapes_captions/captions_val.json] [--limit 500] [--out-dir onnx/]

Both decoders run the same greedy loop (word ids: 0 = <EOS>, also the start word; cont 0 at
the first step, 1 after; the LSTM state carried by expose_hidden): one over caffelite Nets
(prototxt/lrcn_deploy_image.prototxt, prototxt/lrcn_deploy_word.prototxt), one over the two
exported ONNX models in caffelite.onnx.runtime.OnnxNet. Prints the number of images whose
captions agree, the largest difference of the word logits seen, and the timings.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import caffelite
from caffelite.data.images import read_image as load_image
from caffelite.onnx import export
from caffelite.onnx.runtime import OnnxNet

IMAGE_NET = 'prototxt/lrcn_deploy_image.prototxt'
WORD_NET = 'prototxt/lrcn_deploy_word.prototxt'
STATES = [('lstm1_h0', 'lstm1_hT'), ('lstm1_c0', 'lstm1_cT'),
          ('lstm2_h0', 'lstm2_hT'), ('lstm2_c0', 'lstm2_cT')]
EOS = 0


def greedy(run_word, features, max_length, hidden=128):
    """Greedy captions of B images: ``run_word(inputs) -> outputs`` runs one word-net step
    (inputs and outputs by blob name). Returns (B lists of word ids, every step's logits)."""
    b = features.shape[0]
    words = np.zeros(b, np.float32)
    state = {name: np.zeros((1, b, hidden), np.float32) for name, _ in STATES}
    captions, done, logits = [[] for _ in range(b)], np.zeros(b, bool), []
    for t in range(max_length):
        out = run_word(dict(input_sentence=words.reshape(1, b), image_features=features,
                            cont_sentence=np.full((1, b), float(t > 0), np.float32), **state))
        z = np.asarray(out['predict']).reshape(b, -1)
        logits.append(z.copy())
        words = z.argmax(axis=1).astype(np.float32)
        for i in np.flatnonzero(~done):
            if words[i] != EOS:
                captions[i].append(int(words[i]))
        done |= words == EOS
        state = {name: np.asarray(out[top]).copy() for name, top in STATES}
        if done.all():
            break
    return captions, logits


def caffelite_captioner(weights, batch):
    image = caffelite.Net(IMAGE_NET, caffelite.TEST, weights=weights)
    word = caffelite.Net(WORD_NET, caffelite.TEST, weights=weights)
    image.blobs['data'].reshape((batch, 3, 64, 64))
    image.reshape()
    features = lambda images: image.feed(data=images).forward()['fc_image'].copy()  # noqa: E731
    run_word = lambda inputs: {k: v.copy() for k, v in                         # noqa: E731
                               word.feed(**inputs).forward(blobs=['predict']).items()}
    return image, word, features, run_word


def onnx_captioner(image, word, batch, out_dir):
    """Export both nets (for ``batch`` streams) and wrap them in onnxruntime sessions."""
    shapes = {'input_sentence': (1, batch), 'cont_sentence': (1, batch),
              'image_features': (batch, 128), **{s: (1, batch, 128) for s, _ in STATES}}
    image_path = os.path.join(out_dir, 'lrcn_image.onnx')
    word_path = os.path.join(out_dir, 'lrcn_word.onnx')
    export(image, image_path, input_shapes={'data': (batch, 3, 64, 64)})
    export(word, word_path, input_shapes=shapes, outputs=['predict'])   # logits besides probs
    image_session, word_session = OnnxNet(image_path), OnnxNet(word_path)
    features = lambda images: image_session.forward(data=images)['fc_image']  # noqa: E731
    run_word = lambda inputs: word_session.forward(**inputs)                 # noqa: E731
    return features, run_word, (image_path, word_path)


def load_images(folder, files):
    images = np.stack([load_image(os.path.join(folder, f), True, 64, 64) for f in files])
    return ((images.astype(np.float32) - 128.0) * 0.0078125).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', required=True)
    parser.add_argument('--captions', default='data/shapes_captions/captions_val.json')
    parser.add_argument('--images', default='data/shapes_captions/images')
    parser.add_argument('--vocab', default='data/shapes_captions/h5_train/vocabulary.txt')
    parser.add_argument('--limit', type=int, default=500)
    parser.add_argument('--batch', type=int, default=50)
    parser.add_argument('--max-length', type=int, default=19)
    parser.add_argument('--out-dir', default='.')
    args = parser.parse_args(argv)
    with open(args.captions) as f:
        files = [im['file_name'] for im in json.load(f)['images']][:args.limit]
    with open(args.vocab) as f:
        vocab = ['<EOS>'] + [line.strip() for line in f if line.strip()]
    image, word, cl_features, cl_word = caffelite_captioner(args.weights, args.batch)
    ox_features, ox_word, paths = onnx_captioner(image, word, args.batch, args.out_dir)
    same, worst, timing, examples = 0, 0.0, {'caffelite': 0.0, 'onnxruntime': 0.0}, []
    for start in range(0, len(files), args.batch):
        chunk = files[start:start + args.batch]
        images = load_images(args.images, chunk)
        if len(chunk) < args.batch:       # the exported graphs have a fixed batch
            images = np.concatenate([images, np.zeros((args.batch - len(chunk),) +
                                                      images.shape[1:], np.float32)])
        results = {}
        for name, features, run_word in (('caffelite', cl_features, cl_word),
                                         ('onnxruntime', ox_features, ox_word)):
            begin = time.perf_counter()
            results[name] = greedy(run_word, features(images), args.max_length)
            timing[name] += time.perf_counter() - begin
        (ref, ref_logits), (got, got_logits) = results['caffelite'], results['onnxruntime']
        same += sum(a == b for a, b in zip(ref[:len(chunk)], got[:len(chunk)]))
        for a, b in zip(ref_logits, got_logits):
            worst = max(worst, float(np.abs(a - b).max()))
        examples += [' '.join(vocab[w] for w in c) for c in got[:len(chunk)]][:2]
    print(f'exported {paths[0]} and {paths[1]}')
    print(f'greedy captions equal on {same} of {len(files)} images; largest logit '
          f'difference {worst:.3g}')
    print(f'decoding time: caffelite {timing["caffelite"]:.2f} s, onnxruntime '
          f'{timing["onnxruntime"]:.2f} s')
    print('examples (onnxruntime):', '; '.join(examples[:4]))
    return 0 if same == len(files) else 1


if __name__ == '__main__':
    sys.exit(main())
