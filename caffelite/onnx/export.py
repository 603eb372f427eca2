"""Export a caffelite Net (a deploy net: Input layers, TEST phase) to an ONNX model.

    model = export(net, 'model.onnx', opset=17, input_shapes={'data': (1, 3, 227, 227)})

The graph keeps Caffe's blob names as tensor names: the Input layers' tops are the graph
inputs, the net's outputs (blobs no layer consumes) the graph outputs, and a blob written in
place by several layers is named after its last writer (earlier versions are
``blob/layer``). Shapes are static: the net's current blob shapes (``input_shapes`` reshapes
the inputs first). Each layer is converted by the function registered for its type
(caffelite/onnx/*_ops.py); any other layer stops the export with an UnsupportedLayer error
that names it and says why.
"""
import json

import onnx
from onnx import helper

from .. import __version__
from ..errors import CaffeliteError
from .graph import GraphBuilder, value_info
from .registry import CONVERTERS, LayerContext, UnsupportedLayer
from . import common_ops, neuron_ops, recurrent_ops, vision_ops  # noqa: F401 (register)

DEFAULT_OPSET = 17
MIN_OPSET = 13
METADATA_KEY = 'caffelite.recurrent'

_DATA_TYPES = {'Data', 'ImageData', 'HDF5Data', 'HDF5Output', 'MemoryData', 'WindowData',
               'VideoData', 'DummyData'}


def _refusal(layer, lp):
    """Why a layer type without a converter cannot be exported."""
    if lp.type in _DATA_TYPES:
        why = ('a data layer reads its own files or memory; a deploy net takes its data as an '
               'Input layer')
    elif layer.is_loss or lp.type.endswith('Loss'):
        why = 'a loss layer belongs to training; export the deploy net'
    elif lp.type == 'Accuracy':
        why = 'Accuracy scores predictions against labels; export the deploy net'
    elif lp.type == 'Python':
        why = 'a Python layer runs Python code, which an ONNX graph cannot hold'
    else:
        why = 'caffelite\'s exporter has no converter for this layer type'
    return UnsupportedLayer(f'layer "{lp.name}" (type {lp.type}) cannot be exported to ONNX: '
                            f'{why}')


def _check_opset(opset):
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise CaffeliteError(f'opset {opset} is not supported: give {MIN_OPSET} to {newest} '
                             f'(default {DEFAULT_OPSET})')


def _reshape_inputs(net, input_shapes):
    for name, shape in (input_shapes or {}).items():
        if name not in net.inputs:
            raise CaffeliteError(f'{net.source}: "{name}" is not an input of this net (inputs: '
                                 f'{", ".join(net.inputs) or "none"})')
        net.blobs[name].reshape(tuple(int(d) for d in shape))
    if input_shapes:
        net.reshape()


def _top_names(net, g):
    """Per layer, the ONNX names of its tops: the blob name for the last writer of a blob
    (an Input's tops always keep theirs), ``blob/layer`` for earlier in-place versions."""
    last_writer = {}
    for i, lp in enumerate(net.param.layer):
        for top in lp.top:
            last_writer[top] = i
    inputs = set(net.inputs)
    for name in net.inputs:
        g.reserve(name)
    for name in last_writer:
        g.reserve(name)
    names = []
    for i, lp in enumerate(net.param.layer):
        names.append([top if lp.type == 'Input' or (last_writer[top] == i and top not in inputs)
                      else g.unique(f'{top}/{lp.name}') for top in lp.top])
    return names


def build_graph(net, opset, extra_outputs=()):
    """(GraphBuilder with every layer converted, graph inputs, graph outputs): the net's
    outputs, then the blobs named in ``extra_outputs``."""
    g = GraphBuilder(opset)
    tops_by_layer = _top_names(net, g)
    current, graph_inputs = {}, []
    for i, (layer, lp) in enumerate(zip(net.layers, net.param.layer)):
        tops = tops_by_layer[i]
        if lp.type == 'Input':
            graph_inputs += [value_info(t, net.blobs[t].shape) for t in lp.top]
        else:
            convert = CONVERTERS.get(lp.type)
            if convert is None:
                raise _refusal(layer, lp)
            ctx = LayerContext(layer, lp, [current[b] for b in lp.bottom],
                               [b.shape for b in net.bottom_vecs[i]], tops,
                               [t.shape for t in net.top_vecs[i]])
            convert(ctx, g)
        current.update(zip(lp.top, tops))
    unknown = [b for b in extra_outputs if b not in current]
    if unknown:
        raise CaffeliteError(f'{net.source}: no blob named {", ".join(unknown)} to output')
    names = list(net.outputs) + [b for b in extra_outputs if b not in net.outputs]
    graph_outputs = [value_info(current[b], net.blobs[b].shape) for b in names]
    return g, graph_inputs, graph_outputs


def _check_cont_inputs(g, graph_inputs):
    """A recurrent layer's cont must be a graph input, so that a runner can check it keeps
    every stream going through the pass (see recurrent_ops)."""
    names = {v.name for v in graph_inputs}
    for marker in g.cont_markers:
        if marker['cont'] not in names:
            raise UnsupportedLayer(
                f'layer "{marker["layer"]}" (type {marker["type"]}) cannot be exported to '
                f'ONNX: its cont markers ("{marker["cont"]}") are computed inside the net; the '
                f'exported recurrence is exact only when no stream restarts mid-pass, which '
                f'can be checked only on a cont that is a net input')


def export(net, path=None, opset=DEFAULT_OPSET, input_shapes=None, outputs=(), check=True):
    """Convert ``net`` to an ONNX ModelProto (saved to ``path`` if given) and return it.

    ``input_shapes``: {input name: shape} to reshape the net to first. ``outputs``: blobs to
    output besides the net's outputs (as ``Net.forward(blobs=...)``). ``check`` runs
    onnx.checker (with shape inference) on the result.
    """
    _check_opset(int(opset))
    _reshape_inputs(net, input_shapes)
    g, graph_inputs, graph_outputs = build_graph(net, int(opset), tuple(outputs))
    _check_cont_inputs(g, graph_inputs)
    graph = helper.make_graph(g.nodes, net.name or 'caffelite', graph_inputs, graph_outputs,
                              g.initializers)
    model = helper.make_model(graph, producer_name='caffelite', producer_version=__version__,
                              opset_imports=[helper.make_opsetid('', int(opset))],
                              ir_version=helper.OP_SET_ID_VERSION_MAP[('ai.onnx', int(opset))])
    model.doc_string = f'Exported by caffelite from {net.source}'
    if g.cont_markers:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(g.cont_markers)})
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, path)
    return model
