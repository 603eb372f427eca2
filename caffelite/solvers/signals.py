"""Caffe's SignalHandler: SIGINT and SIGHUP become requests the solver polls between
iterations (and between test batches), each mapped to an action: ``stop`` (leave the training
loop; Solve then writes the final snapshot), ``snapshot`` (write one and go on) or ``none``.

Caffe's defaults (its tool's flags ``-sigint_effect`` and ``-sighup_effect``) are SIGINT ->
stop and SIGHUP -> snapshot. One addition: a second SIGINT while a stop is still pending
aborts at once (KeyboardInterrupt), for an iteration that takes too long to finish.
"""
import signal

from ..errors import CaffeliteError

NONE, STOP, SNAPSHOT = 'none', 'stop', 'snapshot'
ACTIONS = (STOP, SNAPSHOT, NONE)


def check_action(name, flag):
    if name not in ACTIONS:
        raise CaffeliteError(f'invalid {flag} "{name}"; use one of: {", ".join(ACTIONS)}')
    return name


class SignalHandler:
    """Install with ``with SignalHandler(...) as handler: solver.set_action_function(
    handler.requested_action)``; the previous handlers come back on exit."""

    def __init__(self, sigint_effect=STOP, sighup_effect=SNAPSHOT):
        self.effects = {signal.SIGINT: check_action(sigint_effect, 'sigint_effect')}
        if hasattr(signal, 'SIGHUP'):
            self.effects[signal.SIGHUP] = check_action(sighup_effect, 'sighup_effect')
        self._pending = {signum: False for signum in self.effects}
        self._previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self._pending[signum] and \
                self.effects[signum] == STOP:
            raise KeyboardInterrupt
        self._pending[signum] = True

    def __enter__(self):
        for signum in self.effects:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:          # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def requested_action(self):
        """The action of the first pending signal (SIGINT before SIGHUP), clearing it."""
        for signum, effect in self.effects.items():
            if self._pending[signum]:
                self._pending[signum] = False
                return effect
        return NONE
