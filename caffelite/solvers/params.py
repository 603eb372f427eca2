"""Reading a SolverParameter and finding its nets, with Caffe's rules.

Paths in a solver file (``net``, ``train_net``, ``test_net``, ``snapshot_prefix``, ``weights``)
are relative to the working directory, as in Caffe; a path that does not exist there is looked
up relative to the solver file's folder, and when neither exists the error names both.
"""
import os

from ..errors import CaffeliteError
from ..prototxt import read_prototxt
from ..proto import caffelite_pb2 as pb
from ..upgrade import upgrade_solver_param


def read_solver_param(path):
    """A SolverParameter from a text file, upgraded (legacy solver_type, default
    snapshot_prefix) as Caffe's ReadSolverParamsFromTextFileOrDie does."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeliteError(f'solver file {path} does not exist')
    param = read_prototxt(path, pb.SolverParameter())
    upgrade_solver_param(param, path)
    upgrade_snapshot_prefix(param, path)
    return param


def upgrade_snapshot_prefix(param, solver_path):
    """Caffe's UpgradeSnapshotPrefixProperty: no prefix -> the solver file's path without its
    extension; a prefix naming a folder -> that folder / the solver file's stem."""
    stem = os.path.splitext(solver_path)[0]
    if not param.HasField('snapshot_prefix'):
        param.snapshot_prefix = stem
    elif os.path.isdir(resolve_output_prefix(param.snapshot_prefix, os.path.dirname(solver_path))):
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, os.path.basename(stem))


def resolve_input(path, base_dir, what):
    """``path`` if it exists (relative to the working directory), else ``base_dir/path``;
    a CaffeliteError naming both places when neither exists."""
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    if base_dir is not None and not os.path.isabs(path):
        alternative = os.path.join(base_dir, path)
        if os.path.exists(alternative):
            return alternative
        raise CaffeliteError(
            f'{what} "{path}" not found: looked for {os.path.abspath(path)} (relative to the '
            f'working directory) and {os.path.abspath(alternative)} (relative to the solver '
            f'file)')
    raise CaffeliteError(f'{what} "{path}" not found ({os.path.abspath(path)})')


def resolve_output_prefix(prefix, base_dir):
    """Where snapshots go: ``prefix`` as given when its folder exists relative to the working
    directory (or is the working directory), else relative to the solver file when the folder
    exists there, else as given (the folder is created at the first snapshot)."""
    folder = os.path.dirname(prefix)
    if not folder or os.path.isdir(folder) or base_dir is None or os.path.isabs(prefix):
        return prefix
    if os.path.isdir(os.path.join(base_dir, folder)):
        return os.path.join(base_dir, prefix)
    return prefix


def _read_net(path, base_dir, what):
    path = resolve_input(path, base_dir, what)
    return read_prototxt(path, pb.NetParameter()), path


def _with_state(net_param, phase, extra_state):
    """Caffe's NetState precedence: the phase default, then the net's own ``state``, then
    the solver's train_state/test_state."""
    state = pb.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if extra_state is not None:
        state.MergeFrom(extra_state)
    return state


def _content_error(solver_source, message):
    """A CaffeliteError about the solver's content, naming the solver file when known."""
    return CaffeliteError(f'{solver_source}: {message}' if solver_source else message)


def train_net_spec(param, base_dir, solver_source=None):
    """(NetParameter, NetState, source) of the train net (Caffe's InitTrainNet);
    ``solver_source``, the solver file, is named in errors."""
    fields = ('net', 'net_param', 'train_net', 'train_net_param')
    given = [f for f in fields if param.HasField(f)]
    if not given:
        raise _content_error(solver_source, 'the solver must name a train net with one of: ' +
                             ', '.join(fields))
    if len(given) > 1:
        raise _content_error(solver_source, 'the solver names more than one train net (' +
                             ', '.join(given) + '); give exactly one of: ' + ', '.join(fields))
    field = given[0]
    if field == 'train_net_param':
        net_param, source = param.train_net_param, 'train_net_param'
    elif field == 'net_param':
        net_param, source = param.net_param, 'net_param'
    else:
        net_param, source = _read_net(getattr(param, field), base_dir, f'{field} file')
    copy = pb.NetParameter()
    copy.CopyFrom(net_param)
    return copy, _with_state(copy, pb.TRAIN, param.train_state), source


def test_net_specs(param, base_dir, solver_source=None):
    """[(NetParameter, NetState, source)] of the test nets (Caffe's InitTestNets): the
    test_net_params, then the test_net files, then one instance of the generic ``net`` /
    ``net_param`` for each remaining test_iter."""
    has_generic = param.HasField('net') or param.HasField('net_param')
    if param.HasField('net') and param.HasField('net_param'):
        raise _content_error(solver_source, 'the solver gives both net and net_param; give one')
    num_specific = len(param.test_net_param) + len(param.test_net)
    num_iter = len(param.test_iter)
    if (num_iter < num_specific) if has_generic else (num_iter != num_specific):
        raise _content_error(
            solver_source,
            f'test_iter must be given once for each test net: {num_specific} test net(s) '
            f'from test_net/test_net_param{" plus the generic net" if has_generic else ""}, '
            f'but {num_iter} test_iter value(s)')
    num_instances = num_iter
    if param.test_state and len(param.test_state) != num_instances:
        raise _content_error(
            solver_source, f'test_state must be left out or given once per test net: '
                           f'{num_instances} test net(s), {len(param.test_state)} test_state(s)')
    if num_instances and param.test_interval <= 0:
        raise _content_error(
            solver_source, f'the solver has {num_instances} test net(s) (test_iter) but no '
                           f'test_interval > 0')
    specs = [(p, 'test_net_param') for p in param.test_net_param]
    specs += [_read_net(path, base_dir, 'test_net file') for path in param.test_net]
    if has_generic:
        if param.HasField('net_param'):
            generic = (param.net_param, 'net_param')
        else:
            generic = _read_net(param.net, base_dir, 'net file')
        specs += [generic] * (num_instances - num_specific)
    result = []
    for i, (net_param, source) in enumerate(specs):
        copy = pb.NetParameter()
        copy.CopyFrom(net_param)
        extra = param.test_state[i] if param.test_state else None
        result.append((copy, _with_state(copy, pb.TEST, extra), source))
    return result
