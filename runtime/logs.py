"""Logging to the console and to a rotating file under the site's data directory.

The scan thread logs, and neither a console write (stderr is a pipe to journald under systemd:
a stalled journald fills it) nor a file write (an SD card that stalls) may make it wait. So the
root logger only puts records on a bounded queue (`QueueHandler`, never blocks: a record that
does not fit is dropped and counted) and one `log-writer` thread (`QueueListener`) writes them to
the console and the file. `stop_logging` (also at exit) writes what is queued.

A network client controls what the Modbus servers (and pymodbus below them) log, so its input
must not flood the log and rotate the controller's history away:

- one record is at most MAX_RECORD_CHARS characters (a hex dump of a receive buffer is cut);
- `LogLimiter` logs at most one record per source and kind a minute and counts what it held
  back; records of the `pymodbus` and `asyncio` loggers are limited the same way by `RepeatFilter`;
- warnings and errors of the controller itself also go to `<file>-errors.log`, which never takes
  the records that a client's input causes (those carry `client_input`, see `LogLimiter`), nor
  pymodbus's or asyncio's.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
QUEUE_SIZE = 10_000
MAX_RECORD_CHARS = 2_000  # one record, traceback included
CLIENT_INPUT = "client_input"  # a LogRecord attribute: the record is caused by a network client's input
NETWORK_LOGGERS = ("pymodbus", "asyncio")


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

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record formatted (traceback included) and cut to MAX_RECORD_CHARS."""
        prepared = super().prepare(record)
        text = prepared.msg
        if isinstance(text, str) and len(text) > MAX_RECORD_CHARS:
            prepared.msg = f"{text[:MAX_RECORD_CHARS]}... ({len(text) - MAX_RECORD_CHARS} characters cut)"
        return prepared


class LogLimiter:
    """Logs at most `burst` records per key within `window_s`, and counts those it holds back.

    The count is said with the next record of that key, or by `flush()` once the window has
    passed. At most `max_keys` keys are tracked; further keys share one. Records are marked
    `client_input` (kept out of the errors file)."""

    OTHERS = ("others",)

    def __init__(self, logger: logging.Logger, window_s: float = 60.0, burst: int = 1, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.window_s = window_s
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[Hashable, list[Any]] = {}  # key -> [window start, logged, held back, last message]
        self.suppressed = 0  # held back since start

    def log(self, level: int, key: Hashable, msg: str, *args: Any) -> bool:
        """Log `msg % args` unless this key has had its `burst` in the window; True if logged."""
        now = self.clock()
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self.max_keys:
                self._expire(now)
            if len(self._keys) >= self.max_keys:
                key = self.OTHERS
                state = self._keys.get(key)
            if state is None:
                state = self._keys[key] = [now, 0, 0, ""]
        if now - state[0] >= self.window_s:
            state[0], state[1] = now, 0  # a new window: what was held back is said with this record
        if state[1] >= self.burst:
            state[2] += 1
            state[3] = msg % args if args else msg
            self.suppressed += 1
            return False
        state[1] += 1
        text = msg % args if args else msg
        if state[2]:
            text += f" ({state[2]} similar held back before)"
            state[2] = 0
        self.logger.log(level, "%s", text, extra={CLIENT_INPUT: True})
        return True

    def flush(self) -> None:
        """Say the counts held back in windows that have passed, and forget idle keys."""
        self._expire(self.clock())

    def _expire(self, now: float) -> None:
        for key, state in list(self._keys.items()):
            if now - state[0] >= self.window_s:
                self._summary(key, state)
                del self._keys[key]

    def _summary(self, key: Hashable, state: list[Any]) -> None:
        if state[2]:
            self.logger.warning("%d more like this held back in %.0f s, the last: %s", state[2], self.window_s,
                                state[3], extra={CLIENT_INPUT: True})
            state[2] = 0


class RepeatFilter(logging.Filter):
    """Lets through at most `burst` records a minute per logger and message start, for the loggers
    named in `names` (and their children); counts the rest and says the count with the next one."""

    def __init__(self, names: tuple[str, ...] = NETWORK_LOGGERS, window_s: float = 60.0, burst: int = 5,
                 max_keys: int = 256, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.names = names
        self.window_s = window_s
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[tuple[str, int, str], list[float]] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not any(name == n or name.startswith(n + ".") for n in self.names):
            return True
        now = self.clock()
        key = (name, record.levelno, str(record.msg)[:40])
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self.max_keys:
                self._keys = {k: s for k, s in self._keys.items() if now - s[0] < self.window_s}
                if len(self._keys) >= self.max_keys:
                    key = ("", 0, "")
            state = self._keys.setdefault(key, [now, 0, 0])
        if now - state[0] >= self.window_s:
            state[0], state[1] = now, 0
        if state[1] >= self.burst:
            state[2] += 1
            self.suppressed += 1
            return False
        state[1] += 1
        setattr(record, CLIENT_INPUT, True)
        if state[2]:
            record.msg = f"{record.getMessage()} ({int(state[2])} similar held back before)"
            record.args = None
            state[2] = 0
        return True


class OwnErrors(logging.Filter):
    """Warnings and errors of the controller itself: not those a network client's input causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, CLIENT_INPUT, False):
            return False
        return not any(record.name == n or record.name.startswith(n + ".") for n in NETWORK_LOGGERS)


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
        errors = logging.handlers.RotatingFileHandler(errors_file(log_file), maxBytes=max_bytes,
                                                      backupCount=backups)
        errors.setLevel(logging.WARNING)
        errors.addFilter(OwnErrors())
        errors.setFormatter(logging.Formatter(FORMAT))
        writers.append(errors)
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_SIZE)
    queued = DroppingQueueHandler(records)
    queued.addFilter(RepeatFilter())
    root.addHandler(queued)
    _listener = logging.handlers.QueueListener(records, *writers, respect_handler_level=True)
    _listener.start()
    for noisy in ("pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def errors_file(log_file: Path) -> Path:
    """Where the controller's own warnings and errors are kept: `ems.log` -> `ems-errors.log`."""
    return log_file.with_name(f"{log_file.stem}-errors{log_file.suffix or '.log'}")


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
