"""Protocol-buffer schema for caffelite (wire/text compatible with Caffe).

``caffelite.proto.caffelite_pb2`` is generated from ``caffelite.proto``;
``caffe_pb2`` is an alias so code written for pycaffe's
``caffe.proto.caffe_pb2`` works unchanged, both as
``from caffelite.proto import caffe_pb2`` and as
``import caffelite.proto.caffe_pb2``.
"""
import sys as _sys

from . import caffelite_pb2

caffe_pb2 = caffelite_pb2
_sys.modules.setdefault(__name__ + ".caffe_pb2", caffelite_pb2)

__all__ = ["caffelite_pb2", "caffe_pb2"]
