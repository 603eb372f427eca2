"""pycaffe's NetSpec: write nets in Python, get a NetParameter (prototxt).

    from caffelite import layers as L, params as P, NetSpec
    n = NetSpec()
    n.data, n.label = L.Data(source='train_lmdb', backend=P.Data.LMDB, batch_size=64, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.loss = L.SoftmaxWithLoss(n.pool1, n.label)
    print(n.to_proto())

Naming rules (pycaffe's): a top is named by the NetSpec attribute it is assigned to,
otherwise ``<Type><k>`` (k counting that type's unnamed tops and layers from 1); a layer is
named after its first top (or ``<Type><k>`` when it has none). Keyword arguments: ``ntop``
(number of tops, default 1; 0 returns the Function itself), ``in_place`` (tops = bottoms),
names ending in ``param`` set that LayerParameter field, any other name goes to the layer's
own ``<type>_param`` when that message has the field, else to the LayerParameter. Values:
scalars, lists (repeated fields), dicts (messages), lists of dicts (repeated messages).
"""
from collections import Counter, OrderedDict

from .proto import caffelite_pb2 as pb


def param_name_dict():
    """{layer type name: its parameter field prefix}, from the schema: every
    ``<name>_param`` field of LayerParameter whose message is ``<Type>Parameter`` gives
    Type -> name (e.g. 'InnerProduct' -> 'inner_product')."""
    result = {}
    for field in pb.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith('_param') and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith('Parameter'):
                result[type_name[:-len('Parameter')]] = field.name[:-len('_param')]
    return result


def to_proto(*tops):
    """A NetParameter holding every layer needed to compute ``tops``."""
    layers = OrderedDict()
    autonames = Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = pb.NetParameter()
    net.layer.extend(layers.values())
    return net


def assign_proto(proto, name, val):
    """Set field ``name`` of message ``proto`` from a Python value (recursively for dicts)."""
    field = getattr(proto, name)
    is_repeated = hasattr(field, 'extend')
    if is_repeated and not isinstance(val, (list, tuple)):
        val = [val]
    if isinstance(val, (list, tuple)):
        if val and isinstance(val[0], dict):
            for item in val:
                message = field.add()
                for key, value in item.items():
                    assign_proto(message, key, value)
        else:
            field.extend(val)
    elif isinstance(val, dict):
        for key, value in val.items():
            assign_proto(field, key, value)
    else:
        setattr(proto, name, val)


class Top:
    """One output of a layer Function (the ``n``-th top)."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """A NetParameter with every layer this top depends on."""
        return to_proto(self)

    def _update(self, params):
        self.fn._update(params)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function:
    """A layer: its type, its input Tops, its keyword parameters, and its output Tops."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for index, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError(f'{type_name} input {index} is not a Top '
                                f'(type is {type(inp)})')
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop('ntop', 1)
        self.in_place = self.params.pop('in_place', False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames):
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] += 1
            names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _update(self, params):
        self.params.update(params)

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottom_names = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottom_names.append(layers[inp.fn].top[inp.n])
        layer = pb.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)

        own_field = _param_names.get(self.type_name, '') + '_param'
        own = getattr(layer, own_field) if self.type_name in _param_names else None
        for key, value in self.params.items():
            if key.endswith('param'):          # param, convolution_param, transform_param...
                assign_proto(layer, key, value)
            elif own is not None and key in own.DESCRIPTOR.fields_by_name:
                assign_proto(own, key, value)
            elif key in layer.DESCRIPTOR.fields_by_name:
                assign_proto(layer, key, value)
            else:
                where = f'{own_field} or ' if own is not None else ''
                raise AttributeError(f'{self.type_name} layer "{layer.name}": "{key}" is '
                                     f'not a field of {where}LayerParameter')
        layers[self] = layer


class NetSpec:
    """Tops assigned as attributes (or items) are named by their attribute;
    :meth:`to_proto` writes every layer they need, in assignment order."""

    def __init__(self):
        super().__setattr__('tops', OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f'NetSpec has no top named "{name}"') from None

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def __getitem__(self, item):
        return self.tops[item]

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def update(self, name, params):
        self.tops[name]._update(params)

    def to_proto(self):
        names = {top: name for name, top in self.tops.items()}
        autonames = Counter()
        layers = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = pb.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """``L.Type(*bottoms, **params)`` makes a layer of that type; returns its Top (one
    top), a tuple of Tops (``ntop`` > 1) or the Function itself (``ntop=0``)."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        return layer_fn


class Parameters:
    """``P.Type.CONSTANT``: the enum values of ``<Type>Parameter`` (e.g. P.Pooling.MAX)."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)

        class Param:
            def __getattr__(self, param_name):
                return getattr(getattr(pb, name + 'Parameter'), param_name)
        return Param()


_param_names = param_name_dict()
layers = Layers()
params = Parameters()


def layers_package_getattr(name):
    """Module ``__getattr__`` for the ``caffelite.layers`` package, so that it doubles as
    pycaffe's ``caffe.layers``: ``caffe.layers.Convolution(...)`` (a capitalised name the
    package does not define) builds a NetSpec layer, while the package's own names
    (create_layer, Layer, the family modules) stay what they are."""
    if name[:1].isupper():
        return getattr(layers, name)
    raise AttributeError(f"module 'caffelite.layers' has no attribute '{name}'")
