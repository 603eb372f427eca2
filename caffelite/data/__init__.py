"""Data and I-O below the layers: what Caffe's data layers, its tools and pycaffe's caffe.io
share. Modules (import them by name; this package imports none of them eagerly, so that
:mod:`caffelite.io` can re-export pycaffe's helpers without an import cycle):

- :mod:`.images`: image decode / encode / resize, in Caffe's layout (uint8 C x H x W, BGR)
  and pycaffe's (float H x W x K in [0, 1]);
- :mod:`.datum`: Datum <-> array, database records -> (image, label);
- :mod:`.db`: LMDB / LevelDB readers and writers;
- :mod:`.listfile`: the ``source`` list files of ImageData / WindowData / VideoData / HDF5Data;
- :mod:`.transformer`: Caffe's DataTransformer (transform_param);
- :mod:`.pycaffe_transformer`: pycaffe's Transformer and oversample;
- :mod:`.prefetch`: background batch loading.

Imports only blob / backend / errors / proto / io-level code, never layers, net or solvers.
"""
