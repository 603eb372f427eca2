"""pycaffe's caffe.draw: a NetParameter as a Graphviz graph, through pydot.

Layers are boxes (Convolution/Deconvolution red, Pooling orange, InnerProduct purple,
others blue; in-place neuron layers green), blobs are grey octagons, edges run
bottom blob -> layer -> top blob; the edge out of a layer carries its output size
(num_output, or a Data layer's batch size).

Needs ``pip install caffelite[draw]`` (pydot) and, to render PNG/SVG/PDF, Graphviz's ``dot``
program. ``.dot``/``.gv`` output is the graph's source and needs only pydot.
"""
import errno

from .errors import CaffeliteError
from .proto import caffelite_pb2 as pb

LAYER_STYLE_DEFAULT = {'shape': 'record', 'fillcolor': '#6495ED', 'style': 'filled'}
NEURON_LAYER_STYLE = {'shape': 'record', 'fillcolor': '#90EE90', 'style': 'filled'}
BLOB_STYLE = {'shape': 'octagon', 'fillcolor': '#E0E0E0', 'style': 'filled'}

_SOURCE_FORMATS = ('dot', 'gv')


def _pydot():
    try:
        import pydot
    except ImportError:
        raise CaffeliteError('drawing nets needs pydot: pip install caffelite[draw] (and, '
                             'to render images, Graphviz\'s `dot` program, e.g. '
                             'apt-get install graphviz)') from None
    return pydot


def _net_param(caffe_net):
    """Accept a NetParameter (pycaffe's argument) or a caffelite Net (its built param)."""
    if isinstance(caffe_net, pb.NetParameter):
        return caffe_net
    param = getattr(caffe_net, 'param', None)
    if isinstance(param, pb.NetParameter):
        return param
    raise TypeError(f'draw needs a NetParameter (or a Net), got {type(caffe_net).__name__}')


def get_pooling_types_dict():
    """{PoolingParameter.PoolMethod value: its name}."""
    enum = pb.PoolingParameter.DESCRIPTOR.enum_types_by_name['PoolMethod']
    return {value.number: value.name for value in enum.values}


def get_edge_label(layer):
    """The label of the edges out of ``layer``: its output size where one is known."""
    if layer.type == 'Data':
        return 'Batch ' + str(layer.data_param.batch_size)
    if layer.type in ('Convolution', 'Deconvolution'):
        return str(layer.convolution_param.num_output)
    if layer.type == 'InnerProduct':
        return str(layer.inner_product_param.num_output)
    return '""'


LEARNING_LAYERS = ('Convolution', 'Deconvolution', 'InnerProduct')


def get_layer_lr_mult(layer):
    """(weight lr_mult, bias lr_mult) of a Convolution, Deconvolution or InnerProduct layer;
    1.0 where no ``param`` gives one."""
    if layer.type not in LEARNING_LAYERS:
        raise ValueError(f'{layer.type} layers do not have a learning rate multiplier')
    if len(layer.param) > 2:
        raise ValueError('Could not parse the learning rate multiplier')
    mults = [spec.lr_mult for spec in layer.param]
    return tuple(mults + [1.0] * (2 - len(mults)))


def get_layer_label(layer, rankdir, display_lrm=False):
    """'name (type)' plus kernel size, stride and pad for convolutions and poolings (and,
    with ``display_lrm``, the lr multipliers of learning layers, unless both are 0); the parts
    stacked vertically when the graph runs left-right."""
    sep = ' ' if rankdir in ('TB', 'BT') else '\\n'
    parts = [layer.name]
    if layer.type in ('Convolution', 'Deconvolution'):
        conv = layer.convolution_param
        parts += [f'({layer.type})',
                  f'kernel size: {conv.kernel_size[0] if len(conv.kernel_size) else 1}',
                  f'stride: {conv.stride[0] if len(conv.stride) else 1}',
                  f'pad: {conv.pad[0] if len(conv.pad) else 0}']
    elif layer.type == 'Pooling':
        pool = layer.pooling_param
        parts += [f'({get_pooling_types_dict()[pool.pool]} {layer.type})',
                  f'kernel size: {pool.kernel_size}', f'stride: {pool.stride}',
                  f'pad: {pool.pad}']
    else:
        parts.append(f'({layer.type})')
    if display_lrm and layer.type in LEARNING_LAYERS:
        weight_mult, bias_mult = get_layer_lr_mult(layer)
        if weight_mult or bias_mult:
            parts.append(f'lr mult: {weight_mult:.1f}, {bias_mult:.1f}')
    return '"' + sep.join(parts) + '"'


def choose_color_by_layertype(layertype):
    if layertype in ('Convolution', 'Deconvolution'):
        return '#FF5050'
    if layertype == 'Pooling':
        return '#FF9900'
    if layertype == 'InnerProduct':
        return '#CC33FF'
    return '#6495ED'


def _included(layer, phase):
    """pycaffe's phase filter: included unless an include rule names another phase or an
    exclude rule names this one."""
    if phase is None:
        return True
    if len(layer.include) and len(layer.exclude):
        raise ValueError(f'layer {layer.name} has both include and exclude specified.')
    included = not len(layer.include)
    for rule in layer.include:
        included = included or rule.phase == phase
    for rule in layer.exclude:
        included = included and rule.phase != phase
    return included


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """A pydot.Dot digraph of the net (layers of ``phase`` only, all when None; learning
    layers labelled with their lr multipliers with ``display_lrm``)."""
    pydot = _pydot()
    net = _net_param(caffe_net)
    graph = pydot.Dot(net.name or 'Net', graph_type='digraph', rankdir=rankdir)
    nodes, edges = {}, []
    for layer in net.layer:
        if not _included(layer, phase):
            continue
        node_name = f'{layer.name}_{layer.type}'
        in_place = (len(layer.bottom) == 1 and len(layer.top) == 1
                    and layer.bottom[0] == layer.top[0])
        style = dict(NEURON_LAYER_STYLE) if in_place else \
            dict(LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type))
        nodes[node_name] = pydot.Node(get_layer_label(layer, rankdir, display_lrm), **style)
        for bottom in layer.bottom:
            nodes[bottom + '_blob'] = pydot.Node(bottom, **BLOB_STYLE)
            edges.append((bottom + '_blob', node_name, '""'))
        for top in layer.top:
            nodes[top + '_blob'] = pydot.Node(top)
            edges.append((node_name, top + '_blob',
                          get_edge_label(layer) if label_edges else '""'))
    for node in nodes.values():
        graph.add_node(node)
    for src, dst, label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=label))
    return graph


def draw_net(caffe_net, rankdir, ext='png', phase=None, display_lrm=False):
    """The drawing as bytes in format ``ext`` (png, svg, pdf, ... through Graphviz; dot/gv
    give the graph source without Graphviz)."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    if ext in _SOURCE_FORMATS:
        return graph.to_string().encode('utf-8')
    try:
        return graph.create(format=ext)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise
        raise CaffeliteError(f'rendering a .{ext} drawing needs Graphviz\'s `dot` program, '
                             f'which is not installed (e.g. apt-get install graphviz); '
                             f'a .dot file needs only pydot') from None
    except AssertionError as err:      # pydot's report of a Graphviz failure
        raise CaffeliteError(f'Graphviz could not render the net as .{ext}: {err}') from None


def draw_net_to_file(caffe_net, filename, rankdir='LR', phase=None, display_lrm=False):
    """Draw the net into ``filename``; its extension picks the format."""
    filename = str(filename)
    ext = filename[filename.rfind('.') + 1:] if '.' in filename else 'png'
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, 'wb') as f:
        f.write(data)
