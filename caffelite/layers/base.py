"""The layer contract (Caffe's) and the registry of layer types.

A layer is a class registered under its prototxt ``type`` string::

    @register('ReLU')
    class ReLULayer(Layer):
        def reshape(self, bottom, top): top[0].reshape(bottom[0].shape)
        def forward(self, bottom, top): ...
        def backward(self, top, propagate_down, bottom): ...

``setup`` runs once (read parameters, create ``self.blobs`` with their fillers), ``reshape``
before every forward, ``forward`` writes top data, ``backward`` writes bottom diffs where
``propagate_down[i]`` and ACCUMULATES into ``self.blobs[j].xdiff`` (the solver clears them).
Layers compute on ``xp = get_array_module(bottom[0].xdata)`` so one code path serves NumPy
and CuPy.
"""
import numpy as np

from .. import backend
from ..blob import Blob
from ..errors import CaffeliteError, LayerError
from ..filler import fill
from ..proto import caffelite_pb2 as pb
from ..worker import WorkerAttribute

LAYER_REGISTRY = {}


def register(type_name):
    """Class decorator: make the layer available under its Caffe type string."""
    def decorate(cls):
        if type_name in LAYER_REGISTRY:
            raise ValueError(f'layer type {type_name} registered twice')
        cls.type = type_name
        LAYER_REGISTRY[type_name] = cls
        return cls
    return decorate


def layer_type_list():
    return sorted(LAYER_REGISTRY)


def create_layer(layer_param, phase=pb.TRAIN, dtype=np.float32):
    """Instantiate the registered class for ``layer_param.type``."""
    try:
        cls = LAYER_REGISTRY[layer_param.type]
    except KeyError:
        raise CaffeliteError(f'unknown layer type "{layer_param.type}"') from None
    return cls(layer_param, phase=phase, dtype=dtype)


class Layer:
    type = None
    # Blob-count constraints checked before setup (None = unconstrained).
    exact_num_bottom = None
    min_bottom = None
    max_bottom = None
    exact_num_top = None
    min_top = None
    max_top = None
    # Loss layers weigh their first top by 1 unless the prototxt says otherwise, and get an
    # anonymous top when the prototxt gives none (Caffe's AutoTopBlobs).
    is_loss = False
    auto_top_blobs = False
    # Which of how many data-parallel workers runs this layer (caffelite.worker.current(),
    # unless assigned): data layers, Python layers included, deal out their records by them.
    solver_rank = WorkerAttribute('rank')
    solver_count = WorkerAttribute('size')
    # True for data layers that give each worker its own share of the records at TRAIN.
    deals_records = False

    def __init__(self, layer_param, phase=pb.TRAIN, dtype=np.float32):
        self.layer_param = layer_param
        self.phase = layer_param.phase if layer_param.HasField('phase') else phase
        self.dtype = np.dtype(dtype)
        self.blobs = []
        # Set by the Net: where parameter gradients are wanted (lr_mult != 0).
        self.param_propagate_down = []

    # -- the contract ------------------------------------------------------------------------
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        raise NotImplementedError

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError(f'{self.type} has no backward')

    def allow_force_backward(self, bottom_index):
        return True

    # -- the set-up template (Caffe's Layer::SetUp) -------------------------------------------
    def set_up(self, bottom, top):
        """Check the bottom/top counts, ``setup`` once, then ``reshape`` the tops; the one
        set-up sequence for the Net, the gradient checker and the tests. (The Net, not the
        layer, records the loss weights of the tops.)"""
        self.check_blob_counts(bottom, top)
        self.setup(bottom, top)
        self.reshape(bottom, top)

    # -- helpers for subclasses ----------------------------------------------------------------
    @property
    def name(self):
        return self.layer_param.name

    def check_blob_counts(self, bottom, top):
        def check(what, n, exact, lo, hi):
            if exact is not None and n != exact:
                raise LayerError(f'takes exactly {exact} {what} blob(s), got {n}')
            if lo is not None and n < lo:
                raise LayerError(f'takes at least {lo} {what} blob(s), got {n}')
            if hi is not None and n > hi:
                raise LayerError(f'takes at most {hi} {what} blob(s), got {n}')
        check('bottom', len(bottom), self.exact_num_bottom, self.min_bottom, self.max_bottom)
        check('top', len(top), self.exact_num_top, self.min_top, self.max_top)

    def make_param_blob(self, shape, filler_param=None):
        """A parameter Blob of ``shape`` in this layer's dtype, filled by ``filler_param``."""
        blob = Blob(shape, self.dtype)
        if filler_param is not None:
            blob.xdata = backend.to_device(fill(filler_param, shape, self.dtype))
        return blob

    def param_needs_grad(self, index):
        """True unless the Net said this parameter blob needs no gradient."""
        return index >= len(self.param_propagate_down) or self.param_propagate_down[index]

