"""Background batch loading (Caffe's BasePrefetchingDataLayer).

A data layer describes its input as a *batch source*: an object whose ``next_batch()`` returns
the next batch (a tuple of host NumPy arrays, one per top) and which owns every piece of state
that loading touches (file cursor, shuffle order, its own seeded ``numpy.random.Generator``).
:class:`Prefetcher` calls ``next_batch`` on a daemon thread and keeps up to ``depth`` finished
batches in a bounded queue while the net computes.

Because one thread produces the batches in order from state that only it touches, the
sequence is exactly the one ``next_batch`` gives when called directly (``depth=0``), so
prefetching never changes results.

An exception in the thread is handed to the main thread on the next ``next()`` call, as a
:class:`~caffelite.errors.LayerError` carrying the thread's message (which names the file
being read), and the thread stops.
"""
import atexit
import queue
import threading
import weakref

from ..errors import CaffeliteError, LayerError

#: Batches prefetched by a data layer unless it says otherwise; 0 loads in the main thread.
DEFAULT_DEPTH = 3
_settings = {'depth': DEFAULT_DEPTH}


def set_default_depth(depth):
    """Queue depth for data layers set up from now on (0 turns prefetching off)."""
    if depth < 0:
        raise ValueError('prefetch depth must be >= 0')
    _settings['depth'] = int(depth)


def default_depth():
    return _settings['depth']


# Every running Prefetcher, stopped at interpreter exit: a daemon thread frozen by the exit
# inside an h5py call would keep h5py's lock and deadlock the module teardown.
_live = weakref.WeakSet()


@atexit.register
def _stop_all():
    for prefetcher in list(_live):
        prefetcher.stop()


class _Failure:
    """What the thread leaves in the queue when ``next_batch`` raised."""

    def __init__(self, error):
        self.error = error


def _describe(error):
    if isinstance(error, CaffeliteError):
        return str(error)
    return f'{type(error).__name__}: {error}'


class Prefetcher:
    """Runs ``source.next_batch()`` ahead of time on a daemon thread.

    ``depth == 0`` makes :meth:`next` call ``next_batch`` synchronously (same batches, no
    thread). ``stop()`` ends the thread; it is also called when the Prefetcher is collected.
    """

    _POLL_S = 0.1

    def __init__(self, source, depth=None, name='prefetch'):
        self.source = source
        self.depth = default_depth() if depth is None else int(depth)
        self._queue = None
        self._thread = None
        self._stop = threading.Event()
        self._failed = None
        if self.depth > 0:
            self._queue = queue.Queue(maxsize=self.depth)
            self._thread = threading.Thread(target=self._run, name=name, daemon=True,
                                            args=(source, self._queue, self._stop))
            # The thread holds no reference to self, so collecting the Prefetcher stops it.
            self._finalizer = weakref.finalize(self, self._stop.set)
            self._thread.start()
            _live.add(self)

    @staticmethod
    def _run(source, out, stop):
        while not stop.is_set():
            try:
                item = source.next_batch()
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                item = _Failure(err)
            while not stop.is_set():
                try:
                    out.put(item, timeout=Prefetcher._POLL_S)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return

    def next(self):
        """The next batch; re-raises (as LayerError) an error of the loading thread."""
        if self._failed is not None:
            raise LayerError(f'data loading stopped after an earlier error: {self._failed}')
        if self._thread is None:
            return self.source.next_batch()
        if self._stop.is_set():
            raise LayerError('the prefetch thread was stopped')
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise LayerError('the prefetch thread died without a batch') from None
        if isinstance(item, _Failure):
            self._failed = _describe(item.error)
            raise LayerError(f'error while loading data in the prefetch thread: '
                             f'{self._failed}') from item.error
        return item

    def stop(self, timeout=5.0):
        """Stop the thread (it finishes the batch it is loading) and drop queued batches."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()
