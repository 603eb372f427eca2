"""Caffe's log lines: the ``caffelite`` logger, glog's line prefix, and C++'s number format.

Caffe logs through glog (``I1125 12:34:56.789012  4321 solver.cpp:218] Iteration 100 ...``);
Caffe's log parsers (tools/extra/parse_log.py) read that prefix for the time stamp and search
the message for ``Iteration N``, ``lr = X``, ``Train net output #i: name = v`` and
``Test net output #i: name = v``. The library only logs to the ``caffelite`` logger; the
``caffelite`` command installs :func:`glog_handler` on stdout.
"""
import logging
import os
import time

logger = logging.getLogger('caffelite')


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
    progress display on the same terminal can erase itself first."""

    def __init__(self, stream):
        super().__init__(stream)
        self.setFormatter(GlogFormatter())
        self.before_emit = None

    def emit(self, record):
        if self.before_emit is not None:
            self.before_emit()
        super().emit(record)
        self.flush()


def glog_handler(stream, level=logging.INFO):
    """Send the ``caffelite`` logger's records at ``level`` and above to ``stream``."""
    handler = GlogHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
