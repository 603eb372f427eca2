"""The caffelite command's stderr in tests: glog's log lines (a record may run over several
lines, as the solver's parameter dump does) and the one error line a failure prints last,
``caffelite train: error: ...`` (``convert_imageset: error: ...`` for the tools)."""
import re

#: ``I1202 01:23:45.678901  4321 base.py:210] message``: glog's prefix (solvers/log.py).
GLOG_LINE = re.compile(r'[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] ')
ERROR_LINE = re.compile(r'[\w.-]+( [\w.-]+)?: error: ')


def log_lines(text):
    return [line for line in text.splitlines() if GLOG_LINE.match(line)]


def error_lines(text):
    """The error lines of ``text``; a failure must print exactly one, as its last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    if errors and lines[-1] != errors[-1]:
        return errors + ['(the error is not the last line)']
    return errors
