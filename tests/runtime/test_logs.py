"""Logging from the scan thread never waits on a console or a file that stalls."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from runtime import logs


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs.stop_logging()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class StalledStream:
    """A console whose reader has stopped (a full pipe to journald): every write waits."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, text: str) -> None:
        self.release.wait(30.0)

    def flush(self) -> None:
        pass


def test_a_stalled_console_does_not_make_the_logging_thread_wait(tmp_path: Path):
    log_file = tmp_path / "log" / "ems.log"
    logs.setup_logging("INFO", log_file)
    try:
        listener = logs._listener
        assert listener is not None
        console = next(h for h in listener.handlers if type(h) is logging.StreamHandler)
        stalled = StalledStream()
        console.setStream(stalled)  # type: ignore[arg-type]
        started = time.perf_counter()
        for n in range(200):
            logging.getLogger("runtime.scan").warning("scan overrun %d", n)
        assert time.perf_counter() - started < 0.5  # queued, not written by this thread
        stalled.release.set()
    finally:
        logs.stop_logging()
    assert log_file.read_text().count("scan overrun") == 200


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(logs, "QUEUE_SIZE", 5)
    logs.setup_logging("INFO", None)
    try:
        listener = logs._listener
        assert listener is not None
        stalled = StalledStream()
        listener.handlers[0].setStream(stalled)  # type: ignore[attr-defined]
        handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs.DroppingQueueHandler))
        started = time.perf_counter()
        for n in range(50):
            logging.getLogger("runtime.scan").warning("line %d", n)
        assert time.perf_counter() - started < 0.5
        assert handler.dropped >= 40
        stalled.release.set()
    finally:
        logs.stop_logging()
