"""caffelite: Caffe rebuilt in Python on NumPy (CPU) and CuPy (GPU).

pycaffe's API: ``import caffelite as caffe; net = caffe.Net('deploy.prototxt', caffe.TEST)``.
"""
from .backend import set_device, set_mode_cpu, set_mode_gpu, set_random_seed
from .blob import Blob
from .errors import CaffeliteError
from .layers import Layer, layer_type_list
from .proto import caffelite_pb2
from .net import Net
from . import coord_map, draw, io  # noqa: F401  (pycaffe's caffe.io, caffe.draw, ...)
from .classifier import Classifier, Detector
from .net_spec import NetSpec, params, to_proto
from .pycaffe_net import attach as _attach_pycaffe
from .pycaffe_runtime import (NCCL, Timer, has_nccl, init_log, log, set_multiprocess,  # noqa
                              set_solver_count, set_solver_rank, solver_count, solver_rank)
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                     SGDSolver, Solver, get_solver)

_attach_pycaffe(Net)

TRAIN = caffelite_pb2.TRAIN
TEST = caffelite_pb2.TEST

__version__ = '0.1.0'
