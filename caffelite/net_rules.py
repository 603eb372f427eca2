"""Caffe's NetParameter transforms, applied before a Net is built (after the format upgrades
of ``caffelite.upgrade``):

- ``filter_net``: keep the layers whose include/exclude rules match a NetState.
- ``insert_splits``: where a blob feeds several layers (or feeds one and is a weighted loss),
  insert a Split layer so each consumer has its own copy and gradients are summed.
"""
from collections import defaultdict

from .errors import CaffeliteError, layer_context
from .proto import caffelite_pb2 as pb


def state_meets_rule(state, rule):
    """Caffe's StateMeetsRule: phase, level range, required stages, forbidden stages."""
    if rule.HasField('phase') and rule.phase != state.phase:
        return False
    if rule.HasField('min_level') and state.level < rule.min_level:
        return False
    if rule.HasField('max_level') and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def filter_net(param, state, source='<net>'):
    """A copy of ``param`` holding only the layers that ``state`` includes."""
    filtered = pb.NetParameter()
    filtered.CopyFrom(param)
    del filtered.layer[:]
    for layer in param.layer:
        if layer.include and layer.exclude:
            raise CaffeliteError(f'{source}: layer "{layer.name}" has both include and exclude '
                                 f'rules; give one or the other')
        if layer.include:
            keep = any(state_meets_rule(state, r) for r in layer.include)
        else:
            keep = not any(state_meets_rule(state, r) for r in layer.exclude)
        if keep:
            filtered.layer.add().CopyFrom(layer)
    return filtered


# Layers that read files and take no bottoms: replace_data_layers swaps them for Input.
DATA_LAYER_TYPES = ('Data', 'ImageData', 'HDF5Data', 'VideoData', 'WindowData', 'MemoryData')


def replace_data_layers(param, inputs, drop=()):
    """``param`` with its data layers (and the layers of the types in ``drop``) removed and
    one Input layer first whose tops have the shapes ``inputs`` {top: shape}: the same net,
    fed by the caller instead of by files (benchmarks, tests, export of a train net)."""
    layers = [l for l in param.layer if l.type not in DATA_LAYER_TYPES + tuple(drop)]
    del param.layer[:]
    feed = param.layer.add(name='input', type='Input')
    for top, shape in inputs.items():
        feed.top.append(top)
        feed.input_param.shape.add().dim.extend(shape)
    param.layer.extend(layers)
    return param


def split_layer_name(layer_name, blob_name, top_index):
    return f'{blob_name}_{layer_name}_{top_index}_split'


def split_blob_name(layer_name, blob_name, top_index, split_index):
    return f'{blob_name}_{layer_name}_{top_index}_split_{split_index}'


def insert_splits(param, source='<net>'):
    """Caffe's InsertSplits: a Split layer after every top consumed more than once."""
    last_producer = {}                   # blob name -> (layer index, top index)
    source_of_bottom = {}                # (layer, bottom index) -> (layer, top index)
    consumers = defaultdict(int)         # (layer, top index) -> number of uses
    loss_weight_of_top = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_producer:
                raise CaffeliteError(f'{layer_context(layer, source)}: reads bottom "{name}", '
                                     f'which no earlier layer produces')
            source_of_bottom[(i, j)] = last_producer[name]
            consumers[last_producer[name]] += 1
        for j, name in enumerate(layer.top):
            last_producer[name] = (i, j)
        for j, weight in enumerate(layer.loss_weight[:len(layer.top)]):
            if weight:
                loss_weight_of_top[(i, j)] = weight
                consumers[(i, j)] += 1

    result = pb.NetParameter()
    result.CopyFrom(param)
    del result.layer[:]
    next_split = defaultdict(int)
    for i, original in enumerate(param.layer):
        layer = result.layer.add()
        layer.CopyFrom(original)
        for j in range(len(layer.bottom)):
            top_id = source_of_bottom[(i, j)]
            if consumers[top_id] > 1:
                producer = param.layer[top_id[0]].name
                layer.bottom[j] = split_blob_name(producer, layer.bottom[j], top_id[1],
                                                  next_split[top_id])
                next_split[top_id] += 1
        for j, blob_name in enumerate(original.top):
            count = consumers[(i, j)]
            if count <= 1:
                continue
            split = result.layer.add(name=split_layer_name(original.name, blob_name, j),
                                     type='Split')
            split.bottom.append(blob_name)
            split.top.extend(split_blob_name(original.name, blob_name, j, k) for k in range(count))
            weight = loss_weight_of_top.get((i, j), 0)
            if weight:
                # The first split output carries the loss; the producer's weights move there.
                del layer.loss_weight[:]
                split.loss_weight.extend([weight] + [0] * (count - 1))
                next_split[(i, j)] += 1
    return result
