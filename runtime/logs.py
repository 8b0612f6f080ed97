"""Logging to the console and to a rotating file under the site's data directory.

The scan thread logs, and neither a console write (stderr is a pipe to journald under systemd:
a stalled journald fills it) nor a file write (an SD card that stalls) may make it wait. So the
root logger only puts records on a bounded queue (`QueueHandler`, never blocks: a record that
does not fit is dropped and counted) and one `log-writer` thread (`QueueListener`) writes them to
the console and the file. `stop_logging` (also at exit) writes what is queued.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
QUEUE_SIZE = 10_000


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Puts records on the queue without waiting; counts those a full queue has no room for."""

    def __init__(self, q: queue.Queue[logging.LogRecord]):
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


_listener: logging.handlers.QueueListener | None = None


def setup_logging(level: str, log_file: Path | None, max_bytes: int = 5_000_000, backups: int = 5) -> None:
    """Configure the root logger once: console always, rotating file when `log_file` is given,
    both written by the log-writer thread."""
    global _listener
    stop_logging()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(FORMAT))
    writers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups)
        rotating.setFormatter(logging.Formatter(FORMAT))
        writers.append(rotating)
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_SIZE)
    root.addHandler(DroppingQueueHandler(records))
    _listener = logging.handlers.QueueListener(records, *writers, respect_handler_level=True)
    _listener.start()
    for noisy in ("pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def stop_logging(timeout_s: float = 2.0) -> None:
    """Write what is queued and stop the log-writer thread (waits at most `timeout_s`)."""
    global _listener
    listener, _listener = _listener, None
    if listener is None:
        return
    thread = listener._thread
    try:
        listener.queue.put_nowait(listener._sentinel)  # type: ignore[attr-defined]
    except queue.Full:
        return
    if thread is not None:
        thread.join(timeout_s)
    listener._thread = None
    for handler in listener.handlers:
        handler.flush()


atexit.register(stop_logging)
