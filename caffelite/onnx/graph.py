"""GraphBuilder: the ONNX graph under construction (nodes, initializers, unique names).

Built with ``onnx.helper`` / ``onnx.numpy_helper``. Every tensor is float32 unless a helper
says otherwise; shapes are static (the exporter knows every blob's shape from the Net).
Helpers that differ between opsets (axes as an attribute or as an input) live here, so the
per-layer converters are written once for every supported opset (13 and later: Softmax over
one axis, Split/Squeeze sizes and axes as inputs).
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Collects nodes and initializers; ``unique(hint)`` hands out tensor names never used."""

    def __init__(self, opset):
        self.opset = int(opset)
        self.nodes, self.initializers = [], []
        self.cont_markers = []      # recurrent layers and their cont inputs (model metadata)
        self.aliases = {}           # tensor name -> the tensor it is an Identity copy of
        self._used = set()

    # -- names --------------------------------------------------------------------------------
    def reserve(self, name):
        """Claim ``name`` exactly (a Caffe blob name); False if it was taken already."""
        if name in self._used:
            return False
        self._used.add(name)
        return True

    def unique(self, hint):
        """``hint``, or ``hint_1``, ``hint_2``, ... : a tensor name not used before."""
        name, k = hint, 0
        while name in self._used:
            k += 1
            name = f'{hint}_{k}'
        self._used.add(name)
        return name

    def source(self, name):
        """The tensor ``name`` copies through Identity nodes (itself if none)."""
        return self.aliases.get(name, name)

    # -- graph pieces --------------------------------------------------------------------------
    def const(self, array, hint, dtype=np.float32):
        """An initializer holding ``array`` (cast to ``dtype``); returns its name."""
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def ints(self, values, hint):
        """A 1-D int64 initializer (shapes, axes, pads given as inputs)."""
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint, np.int64)

    def node(self, op, inputs, outputs, name, **attrs):
        """Append one node; ``outputs`` are names (str) or a count of fresh ones from
        ``name``. Returns the output name (one output) or the list of them."""
        if isinstance(outputs, int):
            outputs = [self.unique(f'{name}/{op}' if k == 0 else f'{name}/{op}{k}')
                       for k in range(outputs)]
        elif isinstance(outputs, str):
            outputs = [outputs]
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs),
                                           name=self.unique(f'{name}:{op}'), **attrs))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def op(self, op, inputs, name, out=None, **attrs):
        """One node with one output: ``out`` if given, else a fresh name."""
        return self.node(op, inputs, out if out is not None else 1, name, **attrs)

    # -- opset-dependent helpers ---------------------------------------------------------------
    def reshape(self, x, shape, name, out=None):
        return self.op('Reshape', [x, self.ints(shape, f'{name}/shape')], name, out)

    def squeeze(self, x, axes, name, out=None):
        return self.op('Squeeze', [x, self.ints(axes, f'{name}/axes')], name, out)

    def reduce(self, op, x, axes, name, out=None, keepdims=0):
        """ReduceSum/ReduceL1/ReduceSumSquare/ReduceMean over ``axes``: axes became an input
        in opset 13 for ReduceSum and in opset 18 for the others."""
        since = 13 if op == 'ReduceSum' else 18
        if self.opset >= since:
            return self.op(op, [x, self.ints(axes, f'{name}/axes')], name, out,
                           keepdims=keepdims)
        return self.op(op, [x], name, out, axes=list(axes), keepdims=keepdims)

    def split(self, x, axis, sizes, name, outs):
        """Split ``x`` along ``axis`` into parts of ``sizes``."""
        return self.node('Split', [x, self.ints(sizes, f'{name}/split')], outs, name, axis=axis)

    def scale_shift(self, x, scale, shift, name, out=None):
        """scale * x + shift with Python floats, skipping the identity steps; the last node
        writes ``out`` (an Identity when both steps are skipped)."""
        steps = [('Mul', scale)] if scale != 1 else []
        if shift != 0:
            steps.append(('Add', shift))
        if not steps:
            return self.op('Identity', [x], name, out)
        for k, (op, value) in enumerate(steps):
            last = k == len(steps) - 1
            x = self.op(op, [x, self.const(value, f'{name}/{op.lower()}')], name,
                        out if last else None)
        return x


def value_info(name, shape, elem_type=TensorProto.FLOAT):
    """A graph input/output declaration with a static shape."""
    return helper.make_tensor_value_info(name, elem_type, list(shape))
