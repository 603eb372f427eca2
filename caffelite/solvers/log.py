"""Caffe's log lines: the ``caffelite`` logger, glog's line prefix, and C++'s number format.

Caffe logs through glog (``I1125 12:34:56.789012  4321 solver.cpp:218] Iteration 100 ...``);
Caffe's log parsers (tools/extra/parse_log.py) read that prefix for the time stamp and search
the message for ``Iteration N``, ``lr = X``, ``Train net output #i: name = v`` and
``Test net output #i: name = v``. The library only logs to the ``caffelite`` logger; the
``caffelite`` command installs :func:`glog_handler` on stderr, where Caffe's tools log
(``FLAGS_alsologtostderr``), at the level ``GLOG_minloglevel`` asks for (0 INFO, the
default, 1 WARNING, 2 ERROR, 3 FATAL), and so does ``caffelite.init_log``.
"""
import logging
import os
import sys
import time

logger = logging.getLogger('caffelite')

#: glog's severities 0-3 (INFO, WARNING, ERROR, FATAL) as logging levels.
GLOG_LEVELS = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def glog_min_level():
    """The logging level ``GLOG_minloglevel`` asks for (INFO when unset or not 0-3)."""
    value = os.environ.get('GLOG_minloglevel', '0').strip()
    return GLOG_LEVELS[int(value)] if value in ('0', '1', '2', '3') else logging.INFO


def fmt(value):
    """A number as C++'s ``ostream << float`` writes it (6 significant digits, %g)."""
    return f'{float(value):g}'


class GlogFormatter(logging.Formatter):
    """``I1125 12:34:56.789012  4321 base.py:123] message`` (severity, date, time, pid,
    file:line), glog's layout, so that Caffe's log tools can parse our logs."""

    def format(self, record):
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        prefix = (f'{record.levelname[0]}{t.tm_mon:02d}{t.tm_mday:02d} '
                  f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d} '
                  f'{os.getpid():5d} {record.filename}:{record.lineno}] ')
        text = prefix + record.getMessage()
        if record.exc_info:
            text += '\n' + self.formatException(record.exc_info)
        return text


class GlogHandler(logging.StreamHandler):
    """A stream handler in glog's format; ``before_emit`` (if set) runs before each line, so a
    progress display on the same terminal can erase itself first. Without a stream it writes
    to whatever ``sys.stderr`` is at each line (as logging's last-resort handler does)."""

    def __init__(self, stream=None):
        super().__init__(stream)
        self.follows_stderr = stream is None
        self.setFormatter(GlogFormatter())
        self.before_emit = None

    @property
    def stream(self):
        return sys.stderr if getattr(self, 'follows_stderr', False) else self._stream

    @stream.setter
    def stream(self, value):
        self._stream = value

    def emit(self, record):
        if self.before_emit is not None:
            self.before_emit()
        super().emit(record)
        self.flush()


def ensure_default_log():
    """pycaffe's default: with no logging set up (no handler here nor on the root logger),
    the solver's log lines go to stderr at GLOG_minloglevel, as glog's do before
    InitGoogleLogging; an application that configured logging gets the records instead."""
    if not logger.handlers and not logging.getLogger().handlers:
        logger.addHandler(GlogHandler())
        logger.setLevel(glog_min_level())


def glog_handler(stream, level=None):
    """Send the ``caffelite`` logger's records at ``level`` (default: glog_min_level()) and
    above to ``stream``."""
    handler = GlogHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(glog_min_level() if level is None else level)
    return handler
