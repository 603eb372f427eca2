"""Run an exported model under onnxruntime the way caffelite's Net.forward runs:
``OnnxNet(path).forward(data=array) -> {output name: array}``.

Before each run it applies the rule of the exported recurrent layers (recorded in the
model's metadata by the exporter; see recurrent_ops): every stream runs through the whole
pass (cont = 1 for t >= 1), and without expose_hidden a pass starts every stream afresh
(cont[0] = 0). A feed that breaks it is refused with a CaffeliteError naming the layer,
instead of a silently different result.
"""
import json

import numpy as np

from ..errors import CaffeliteError
from .export import METADATA_KEY


def check_cont(marker, cont):
    """Raise CaffeliteError if the cont feed ``cont`` (T x N) breaks the exported rule."""
    cont = np.asarray(cont)
    where = f'layer "{marker["layer"]}" (type {marker["type"]}), cont input "{marker["cont"]}"'
    restart = np.argwhere(cont[1:] != 1)
    if restart.size:
        t, n = restart[0]
        raise CaffeliteError(f'{where}: stream {n} restarts at t = {t + 1}; the exported ONNX '
                             f'{marker["type"]} runs every stream through the whole pass '
                             f'(cont = 1 for t >= 1). Run a restarted sequence as a pass of '
                             f'its own.')
    if not marker['expose_hidden'] and np.any(cont[:1] != 0):
        n = int(np.argwhere(cont[0] != 0)[0][0])
        raise CaffeliteError(f'{where}: stream {n} continues the previous pass (cont[0] = 1), '
                             f'but without expose_hidden the state between passes is not part '
                             f'of the model; set expose_hidden to carry it explicitly.')


class OnnxNet:
    """An ONNX model (path or bytes) in an onnxruntime CPU session."""

    def __init__(self, model, threads=None):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, options,
                                                    providers=['CPUExecutionProvider'])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.recurrent = json.loads(meta.get(METADATA_KEY, '[]'))

    def forward(self, **inputs):
        missing = [name for name in self.inputs if name not in inputs]
        unknown = [name for name in inputs if name not in self.inputs]
        if missing or unknown:
            raise CaffeliteError(f'ONNX model inputs are {", ".join(self.inputs)}; missing: '
                                 f'{", ".join(missing) or "none"}, unknown: '
                                 f'{", ".join(unknown) or "none"}')
        feeds = {name: np.asarray(value, dtype=np.float32) for name, value in inputs.items()}
        for marker in self.recurrent:
            check_cont(marker, feeds[marker['cont']])
        return dict(zip(self.outputs, self.session.run(None, feeds)))
