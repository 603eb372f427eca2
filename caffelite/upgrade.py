"""Caffe's upgrade_proto: old NetParameter and SolverParameter formats, read and upgraded.

Caffe has written nets in three formats; it upgrades the old ones when it reads them, and so
does caffelite (:func:`upgrade_net_as_needed`, called by every Net):

- V0: ``layers { layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 ... }
  bottom: "data" top: "conv1" }`` -- lower-case type strings, the layer's settings flat in
  the inner ``layer`` message, and separate ``padding`` layers. The padding layers are
  folded into the pad of the convolution or pooling layer that reads them, then every layer
  becomes a V1 layer (Caffe's UpgradeV0Net).
- V1: ``layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 convolution_param { ... } }``
  -- a type enum and per-blob ``blobs_lr`` / ``weight_decay`` lists. The deprecated data
  fields ``scale``, ``mean_file``, ``crop_size``, ``mirror`` of Data, ImageData and
  WindowData move into ``transform_param`` (UpgradeNetDataTransformation); then each layer
  becomes a ``layer`` with the type string, ``param { lr_mult decay_mult name share_mode }``
  specs, and its per-type parameters, include/exclude rules, loss weights and blobs kept
  (UpgradeV1Net).
- BatchNorm layers that still declare their three statistics blobs as params get lr_mult
  and decay_mult 0 on them (UpgradeNetBatchNorm).

- The deprecated net-level ``input`` / ``input_shape`` / ``input_dim`` fields become a leading
  Input layer (UpgradeNetInput). This one upgrade warns of nothing, so that the many deploy
  nets written that way build quietly; the upgrade tools log it.

Every upgrade emits an :class:`UpgradeWarning` naming the file, worded as Caffe's log line
("Attempting to upgrade input file specified using deprecated V1LayerParameter: net.prototxt").
A problem Caffe logs as an error and continues past (a V0 parameter the layer type does not
have) is listed in a warning; one Caffe aborts on (an unknown V0 type, a padding layer in
front of a layer that cannot take a pad) raises :class:`~caffelite.errors.CaffeliteError`.

SolverParameter: the enum ``solver_type`` becomes the string ``type``
(:func:`upgrade_solver_param`).
"""
import warnings

from .errors import CaffeliteError
from .proto import caffelite_pb2 as pb


class UpgradeWarning(UserWarning):
    """An old-format prototxt or model was upgraded while it was read."""


def _warn(message):
    warnings.warn(message, UpgradeWarning, stacklevel=3)


# -- V0 -> V1 ---------------------------------------------------------------------------------

#: V0 type strings (V0LayerParameter.type) -> V1 type enum names (Caffe's UpgradeV0LayerType).
V0_LAYER_TYPES = {
    'accuracy': 'ACCURACY', 'bnll': 'BNLL', 'concat': 'CONCAT', 'conv': 'CONVOLUTION',
    'data': 'DATA', 'dropout': 'DROPOUT', 'euclidean_loss': 'EUCLIDEAN_LOSS',
    'flatten': 'FLATTEN', 'hdf5_data': 'HDF5_DATA', 'hdf5_output': 'HDF5_OUTPUT',
    'im2col': 'IM2COL', 'images': 'IMAGE_DATA', 'infogain_loss': 'INFOGAIN_LOSS',
    'innerproduct': 'INNER_PRODUCT', 'lrn': 'LRN',
    'multinomial_logistic_loss': 'MULTINOMIAL_LOGISTIC_LOSS', 'pool': 'POOLING',
    'relu': 'RELU', 'sigmoid': 'SIGMOID', 'softmax': 'SOFTMAX',
    'softmax_loss': 'SOFTMAX_LOSS', 'split': 'SPLIT', 'tanh': 'TANH',
    'window_data': 'WINDOW_DATA',
}

_CONV_IP = {'conv': 'convolution_param', 'innerproduct': 'inner_product_param'}
_DATA_SOURCES = {'data': 'data_param', 'hdf5_data': 'hdf5_data_param',
                 'images': 'image_data_param', 'window_data': 'window_data_param'}

#: V0 field -> {V0 type: (V1 per-type message, field)}; a field set on a type not listed is
#: dropped with a warning, as Caffe's UpgradeV0LayerParameter does.
V0_LAYER_FIELDS = {
    'num_output': {t: (m, 'num_output') for t, m in _CONV_IP.items()},
    'biasterm': {t: (m, 'bias_term') for t, m in _CONV_IP.items()},
    'weight_filler': {t: (m, 'weight_filler') for t, m in _CONV_IP.items()},
    'bias_filler': {t: (m, 'bias_filler') for t, m in _CONV_IP.items()},
    'pad': {'conv': ('convolution_param', 'pad'), 'pool': ('pooling_param', 'pad')},
    'kernelsize': {'conv': ('convolution_param', 'kernel_size'),
                   'pool': ('pooling_param', 'kernel_size')},
    'group': {'conv': ('convolution_param', 'group')},
    'stride': {'conv': ('convolution_param', 'stride'), 'pool': ('pooling_param', 'stride')},
    'pool': {'pool': ('pooling_param', 'pool')},
    'dropout_ratio': {'dropout': ('dropout_param', 'dropout_ratio')},
    'local_size': {'lrn': ('lrn_param', 'local_size')},
    'alpha': {'lrn': ('lrn_param', 'alpha')},
    'beta': {'lrn': ('lrn_param', 'beta')},
    'k': {'lrn': ('lrn_param', 'k')},
    'source': dict({t: (m, 'source') for t, m in _DATA_SOURCES.items()},
                   infogain_loss=('infogain_loss_param', 'source')),
    'batchsize': {t: (m, 'batch_size') for t, m in _DATA_SOURCES.items()},
    'rand_skip': {'data': ('data_param', 'rand_skip'),
                  'images': ('image_data_param', 'rand_skip')},
    'shuffle_images': {'images': ('image_data_param', 'shuffle')},
    'new_height': {'images': ('image_data_param', 'new_height')},
    'new_width': {'images': ('image_data_param', 'new_width')},
    'concat_dim': {'concat': ('concat_param', 'concat_dim')},
    'det_fg_threshold': {'window_data': ('window_data_param', 'fg_threshold')},
    'det_bg_threshold': {'window_data': ('window_data_param', 'bg_threshold')},
    'det_fg_fraction': {'window_data': ('window_data_param', 'fg_fraction')},
    'det_context_pad': {'window_data': ('window_data_param', 'context_pad')},
    'det_crop_mode': {'window_data': ('window_data_param', 'crop_mode')},
    'hdf5_output_param': {'hdf5_output': (None, 'hdf5_output_param')},
}

#: V0 fields that go to transform_param whatever the layer type (as in Caffe).
V0_TRANSFORM_FIELDS = {'scale': 'scale', 'meanfile': 'mean_file', 'cropsize': 'crop_size',
                       'mirror': 'mirror'}


def _assign(message, field, value):
    """message.field = value: appended for a repeated field, copied for a message field."""
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    if descriptor.is_repeated:
        getattr(message, field).append(value)
    elif descriptor.message_type is not None:
        getattr(message, field).CopyFrom(value)
    else:
        setattr(message, field, value)


def net_needs_v0_upgrade(param):
    return any(layer.HasField('layer') for layer in param.layers)


def net_needs_v1_upgrade(param):
    return len(param.layers) > 0


def upgrade_v0_padding_layers(param, source='<net>'):
    """A copy of the V0 ``param`` without padding layers: each padding layer's pad moves to
    the conv/pool layer that reads its output, which then reads the padding layer's input
    (Caffe's UpgradeV0PaddingLayers)."""
    out = pb.NetParameter()
    out.CopyFrom(param)
    del out.layers[:]
    last_producer = {name: None for name in param.input}   # blob -> index in param.layers
    for i, connection in enumerate(param.layers):
        v0 = connection.layer
        if v0.type != 'padding':
            out.layers.add().CopyFrom(connection)
        for j, blob in enumerate(connection.bottom):
            if blob not in last_producer:
                raise CaffeliteError(f'{source}: V0 layer "{v0.name}" reads blob "{blob}", which '
                                     f'no earlier layer or input produces')
            producer = last_producer[blob]
            if producer is None or param.layers[producer].layer.type != 'padding':
                continue
            padding = param.layers[producer]
            if v0.type not in ('conv', 'pool'):
                raise CaffeliteError(f'{source}: V0 padding layer "{padding.layer.name}" feeds '
                                     f'layer "{v0.name}" of type "{v0.type}"; only conv and '
                                     f'pool layers can take its pad')
            if len(connection.bottom) != 1 or len(padding.bottom) != 1 or \
                    len(padding.top) != 1:
                raise CaffeliteError(f'{source}: V0 padding layer "{padding.layer.name}" and '
                                     f'layer "{v0.name}" must each have exactly one bottom '
                                     f'(and the padding layer one top)')
            upgraded = out.layers[-1]
            upgraded.layer.pad = padding.layer.pad
            upgraded.bottom[j] = padding.bottom[0]
        for blob in connection.top:
            last_producer[blob] = i
    return out


def upgrade_v0_layer(connection, problems):
    """One V0 layer (a V1LayerParameter holding a V0 ``layer``) as a V1LayerParameter;
    settings its type cannot take are reported in ``problems`` and dropped."""
    out = pb.V1LayerParameter()
    out.bottom.extend(connection.bottom)
    out.top.extend(connection.top)
    if not connection.HasField('layer'):
        return out
    v0 = connection.layer
    if v0.HasField('name'):
        out.name = v0.name
    kind = v0.type
    if v0.HasField('type'):
        if kind not in V0_LAYER_TYPES:
            raise CaffeliteError(f'unknown V0 layer type "{kind}" (layer "{v0.name}"); known: '
                                 f'{", ".join(sorted(V0_LAYER_TYPES))}')
        out.type = pb.V1LayerParameter.LayerType.Value(V0_LAYER_TYPES[kind])
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, targets in V0_LAYER_FIELDS.items():
        if not v0.HasField(field):
            continue
        if kind not in targets:
            problems.append(f'layer "{v0.name}": V0 parameter {field} does not apply to type '
                            f'"{kind}" and was dropped')
            continue
        message_name, target = targets[kind]
        message = out if message_name is None else getattr(out, message_name)
        _assign(message, target, getattr(v0, field))
    for field, target in V0_TRANSFORM_FIELDS.items():
        if v0.HasField(field):
            setattr(out.transform_param, target, getattr(v0, field))
    return out


def upgrade_v0_net(param, source='<net>'):
    """A V1 NetParameter from a V0 one: padding layers folded, every layer upgraded; only the
    name, inputs and force_backward are carried over (as in Caffe's UpgradeV0Net).
    Returns (net, problems)."""
    padded = upgrade_v0_padding_layers(param, source)
    out = pb.NetParameter()
    if padded.HasField('name'):
        out.name = padded.name
    problems = []
    for connection in padded.layers:
        try:
            out.layers.add().CopyFrom(upgrade_v0_layer(connection, problems))
        except CaffeliteError as err:
            raise CaffeliteError(f'{source}: {err}') from None
    out.input.extend(padded.input)
    out.input_dim.extend(padded.input_dim)
    if padded.HasField('force_backward'):
        out.force_backward = padded.force_backward
    return out, problems


# -- V1 data transformation fields ------------------------------------------------------------

_V1_TRANSFORM_LAYERS = {'DATA': 'data_param', 'IMAGE_DATA': 'image_data_param',
                        'WINDOW_DATA': 'window_data_param'}
_TRANSFORM_FIELDS = ('scale', 'mean_file', 'crop_size', 'mirror')


def _transform_holder(layer):
    """The per-type message of a V1 data layer that may carry transformation fields."""
    name = pb.V1LayerParameter.LayerType.Name(layer.type) if layer.HasField('type') else None
    return getattr(layer, _V1_TRANSFORM_LAYERS[name]) if name in _V1_TRANSFORM_LAYERS else None


def net_needs_data_upgrade(param):
    for layer in param.layers:
        holder = _transform_holder(layer)
        if holder is not None and any(holder.HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def upgrade_net_data_transformation(param):
    """Move scale / mean_file / crop_size / mirror of V1 Data, ImageData and WindowData
    layers into their transform_param (in place)."""
    for layer in param.layers:
        holder = _transform_holder(layer)
        if holder is None:
            continue
        for field in _TRANSFORM_FIELDS:
            if holder.HasField(field):
                setattr(layer.transform_param, field, getattr(holder, field))
                holder.ClearField(field)


# -- V1 -> V2 ---------------------------------------------------------------------------------

#: V1 type enum names -> the type strings layers register under (Caffe's UpgradeV1LayerType).
V1_LAYER_TYPES = {
    'NONE': '', 'ABSVAL': 'AbsVal', 'ACCURACY': 'Accuracy', 'ARGMAX': 'ArgMax', 'BNLL': 'BNLL',
    'CONCAT': 'Concat', 'CONTRASTIVE_LOSS': 'ContrastiveLoss', 'CONVOLUTION': 'Convolution',
    'DECONVOLUTION': 'Deconvolution', 'DATA': 'Data', 'DROPOUT': 'Dropout',
    'DUMMY_DATA': 'DummyData', 'EUCLIDEAN_LOSS': 'EuclideanLoss', 'ELTWISE': 'Eltwise',
    'EXP': 'Exp', 'FLATTEN': 'Flatten', 'HDF5_DATA': 'HDF5Data', 'HDF5_OUTPUT': 'HDF5Output',
    'HINGE_LOSS': 'HingeLoss', 'IM2COL': 'Im2col', 'IMAGE_DATA': 'ImageData',
    'INFOGAIN_LOSS': 'InfogainLoss', 'INNER_PRODUCT': 'InnerProduct', 'LRN': 'LRN',
    'MEMORY_DATA': 'MemoryData', 'MULTINOMIAL_LOGISTIC_LOSS': 'MultinomialLogisticLoss',
    'MVN': 'MVN', 'POOLING': 'Pooling', 'POWER': 'Power', 'RELU': 'ReLU', 'SIGMOID': 'Sigmoid',
    'SIGMOID_CROSS_ENTROPY_LOSS': 'SigmoidCrossEntropyLoss', 'SILENCE': 'Silence',
    'SOFTMAX': 'Softmax', 'SOFTMAX_LOSS': 'SoftmaxWithLoss', 'SPLIT': 'Split', 'SLICE': 'Slice',
    'TANH': 'TanH', 'WINDOW_DATA': 'WindowData', 'THRESHOLD': 'Threshold',
}

#: The per-type parameter messages a V1 layer can carry; each has the same name in
#: LayerParameter and is copied over unchanged.
V1_PARAM_FIELDS = tuple(f.name for f in pb.V1LayerParameter.DESCRIPTOR.fields
                        if f.name.endswith('_param')
                        and f.name in pb.LayerParameter.DESCRIPTOR.fields_by_name)


def _param_spec(layer, index):
    while len(layer.param) <= index:
        layer.param.add()
    return layer.param[index]


def upgrade_v1_layer(v1, problems):
    """One V1LayerParameter as a LayerParameter (Caffe's UpgradeV1LayerParameter)."""
    out = pb.LayerParameter()
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField('name'):
        out.name = v1.name
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    if v1.HasField('type'):
        out.type = V1_LAYER_TYPES[pb.V1LayerParameter.LayerType.Name(v1.type)]
    out.blobs.extend(v1.blobs)
    for i, name in enumerate(v1.param):
        _param_spec(out, i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        _param_spec(out, i).share_mode = pb.ParamSpec.DimCheckMode.Value(
            pb.V1LayerParameter.DimCheckMode.Name(mode))
    for i, lr in enumerate(v1.blobs_lr):
        _param_spec(out, i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        _param_spec(out, i).decay_mult = decay
    out.loss_weight.extend(v1.loss_weight)
    for field in V1_PARAM_FIELDS:
        if v1.HasField(field):
            getattr(out, field).CopyFrom(getattr(v1, field))
    if v1.HasField('layer'):
        problems.append(f'layer "{v1.name}" holds a V0 layer as well; it was ignored')
    return out


def upgrade_v1_net(param, source='<net>'):
    """A NetParameter with ``layer`` from one with V1 ``layers``; every other net field is
    kept. Returns (net, problems)."""
    if param.layer:
        raise CaffeliteError(f'{source}: the net has both "layer" fields and deprecated V1 '
                             f'"layers" fields; give all its layers in one format (upgrade '
                             f'the V1 part with `caffelite upgrade_net_proto_text`)')
    out = pb.NetParameter()
    out.CopyFrom(param)
    del out.layers[:]
    problems = []
    for v1 in param.layers:
        out.layer.add().CopyFrom(upgrade_v1_layer(v1, problems))
    return out, problems


# -- BatchNorm ----------------------------------------------------------------------------------

def net_needs_batch_norm_upgrade(param):
    """BatchNorm layers with three param specs, not all of them lr_mult 0 (Caffe 1.0 writes
    ``param { lr_mult: 0 }`` three times into every snapshot; with a zero rate the decay
    never reaches the blobs, so those need nothing)."""
    return any(layer.type == 'BatchNorm' and len(layer.param) == 3 and
               any(p.lr_mult != 0 for p in layer.param)
               for layer in param.layer)


def upgrade_net_batch_norm(param):
    """Set lr_mult and decay_mult 0 on the three param specs of BatchNorm layers (in place):
    its blobs are statistics, never learned (Caffe's UpgradeNetBatchNorm)."""
    for layer in param.layer:
        if layer.type == 'BatchNorm' and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0


# -- net-level input fields (UpgradeNetInput) -----------------------------------------------------

def net_needs_input_upgrade(param):
    return bool(param.input)


def upgrade_net_input(param, source='<net>'):
    """``param`` with its ``input`` fields (shapes from ``input_shape``, or 4 ``input_dim``
    per input) turned into a leading Input layer named "input"; a copy, or ``param`` itself
    when it has no input fields."""
    if not net_needs_input_upgrade(param):
        return param
    shapes = [list(s.dim) for s in param.input_shape]
    if not shapes and param.input_dim:
        if len(param.input_dim) != 4 * len(param.input):
            raise CaffeliteError(f'{source}: input_dim must give 4 dims for each of the '
                                 f'{len(param.input)} input(s), got {len(param.input_dim)}')
        dims = list(param.input_dim)
        shapes = [dims[4 * i:4 * i + 4] for i in range(len(param.input))]
    if len(shapes) != len(param.input):
        raise CaffeliteError(f'{source}: {len(param.input)} input(s) but {len(shapes)} '
                             f'input_shape/input_dim entries')
    upgraded = pb.NetParameter()
    upgraded.CopyFrom(param)
    for field in ('input', 'input_shape', 'input_dim', 'layer'):
        upgraded.ClearField(field)
    layer = upgraded.layer.add(name='input', type='Input')
    layer.top.extend(param.input)
    for shape in shapes:
        layer.input_param.shape.add().dim.extend(shape)
    upgraded.layer.extend(param.layer)
    return upgraded


# -- entry points -------------------------------------------------------------------------------

def net_needs_upgrade(param):
    """True when a layer-format upgrade (V0, V1, data transformation, BatchNorm) applies."""
    return (net_needs_v0_upgrade(param) or net_needs_v1_upgrade(param)
            or net_needs_data_upgrade(param) or net_needs_batch_norm_upgrade(param))


def _report(problems, what, source):
    if problems:
        _warn(f'{source}: had problems upgrading {what} (continuing, as Caffe does): '
              + '; '.join(problems))


def upgrade_net_param(param, source='<NetParameter>'):
    """``param`` with its layers in the current format (V0, V1, data transformation and
    BatchNorm upgrades; the input fields are left to :func:`upgrade_net_as_needed`).
    ``param`` itself is returned when it needs nothing, else an upgraded copy; every upgrade
    warns, naming ``source`` (the file the net was read from)."""
    if not net_needs_upgrade(param):
        return param
    if net_needs_v0_upgrade(param):
        _warn(f'Attempting to upgrade input file specified using deprecated V0LayerParameter: '
              f'{source} (padding layers folded into conv/pool pad; upgrade the file for good '
              f'with `caffelite upgrade_net_proto_text`)')
        param, problems = upgrade_v0_net(param, source)
        _report(problems, 'V0NetParameter', source)
    else:
        copy = pb.NetParameter()
        copy.CopyFrom(param)
        param = copy
    if net_needs_data_upgrade(param):
        _warn(f'Attempting to upgrade input file specified using deprecated transformation '
              f'parameters: {source} (data_param/image_data_param/window_data_param scale, '
              f'mean_file, crop_size, mirror moved to transform_param)')
        upgrade_net_data_transformation(param)
    if net_needs_v1_upgrade(param):
        _warn(f'Attempting to upgrade input file specified using deprecated V1LayerParameter: '
              f'{source} (layers {{ type: ENUM blobs_lr weight_decay }} -> layer {{ type: '
              f'"String" param {{ lr_mult decay_mult }} }}; upgrade the file for good with '
              f'`caffelite upgrade_net_proto_text`)')
        param, problems = upgrade_v1_net(param, source)
        _report(problems, 'V1LayerParameter', source)
    if net_needs_batch_norm_upgrade(param):
        _warn(f'Attempting to upgrade batch norm layers using deprecated params: {source} '
              f'(lr_mult and decay_mult of their three statistics blobs set to 0)')
        upgrade_net_batch_norm(param)
    return param


def upgrade_net_as_needed(param, source='<NetParameter>'):
    """``param`` in the current format (Caffe's UpgradeNetAsNeeded): the layer-format upgrades
    (:func:`upgrade_net_param`), then the input fields (:func:`upgrade_net_input`). The one
    upgrade entry point for nets, applied once to each net read (by Net and the upgrade
    tools); ``param`` itself when it needs nothing, else an upgraded copy."""
    return upgrade_net_input(upgrade_net_param(param, source), source)


SOLVER_TYPES = {'SGD': 'SGD', 'NESTEROV': 'Nesterov', 'ADAGRAD': 'AdaGrad',
                'RMSPROP': 'RMSProp', 'ADADELTA': 'AdaDelta', 'ADAM': 'Adam'}


def solver_needs_upgrade(param):
    return param.HasField('solver_type')


def solver_type(param):
    """The solver type ``param`` asks for: its ``type`` string, or the deprecated enum
    ``solver_type`` as the string it upgrades to."""
    if solver_needs_upgrade(param) and not param.HasField('type'):
        return SOLVER_TYPES[pb.SolverParameter.SolverType.Name(param.solver_type)]
    return param.type


def upgrade_solver_param(param, source='<SolverParameter>'):
    """``param`` with the deprecated enum ``solver_type`` turned into the string ``type``
    (Caffe's UpgradeSolverAsNeeded), in place; returns it. Giving both is an error. The one
    upgrade entry point for solvers: ``solvers.params.read_solver_param`` applies it once to
    each solver file read, ``Solver`` to a SolverParameter it is given."""
    if not solver_needs_upgrade(param):
        return param
    if param.HasField('type'):
        raise CaffeliteError(f'{source}: failed to upgrade solver: the deprecated solver_type '
                             f'(enum) and type (string) fields cannot both be given')
    name = pb.SolverParameter.SolverType.Name(param.solver_type)
    _warn(f"Attempting to upgrade input file specified using deprecated 'solver_type' field "
          f"(enum): {source} (solver_type: {name} -> type: \"{solver_type(param)}\")")
    param.type = solver_type(param)
    param.ClearField('solver_type')
    return param
