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


# --- a network client's input must not flood the log -------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def limited(caplog: pytest.LogCaptureFixture, **kw: float) -> tuple[logs.LogLimiter, FakeClock]:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="test.limiter")
    return logs.LogLimiter(logging.getLogger("test.limiter"), clock=clock, **kw), clock  # type: ignore[arg-type]


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.limiter"]


def test_the_limiter_logs_one_record_per_key_a_minute(caplog: pytest.LogCaptureFixture):
    limiter, clock = limited(caplog)
    for n in range(100):
        clock.t = n * 0.5  # 100 bad frames in 50 s
        limiter.log(logging.WARNING, ("10.0.0.9", "frame"), "bad frame %d", n)
    assert messages(caplog) == ["bad frame 0"]
    assert limiter.suppressed == 99


def test_the_next_record_after_the_window_says_how_many_were_held_back(caplog: pytest.LogCaptureFixture):
    limiter, clock = limited(caplog)
    for n in range(10):
        limiter.log(logging.WARNING, "k", "bad frame %d", n)
    clock.t = 60.0
    limiter.log(logging.WARNING, "k", "bad frame %d", 10)
    assert messages(caplog) == ["bad frame 0", "bad frame 10 (9 similar held back before)"]


def test_flush_reports_what_was_held_back_once_the_window_has_passed(caplog: pytest.LogCaptureFixture):
    limiter, clock = limited(caplog)
    for n in range(4):
        limiter.log(logging.WARNING, "k", "bad frame %d", n)
    limiter.flush()
    assert messages(caplog) == ["bad frame 0"]  # the window is still open
    clock.t = 61.0
    limiter.flush()
    assert messages(caplog) == ["bad frame 0", "3 more like this held back in 60 s, the last: bad frame 3"]


def test_each_key_has_its_own_budget(caplog: pytest.LogCaptureFixture):
    limiter, _ = limited(caplog)
    for client in ("10.0.0.1", "10.0.0.2"):
        for function in (3, 5):
            limiter.log(logging.WARNING, (client, function), "%s function %d", client, function)
            limiter.log(logging.WARNING, (client, function), "%s function %d", client, function)
    assert messages(caplog) == ["10.0.0.1 function 3", "10.0.0.1 function 5", "10.0.0.2 function 3",
                                "10.0.0.2 function 5"]


def test_keys_past_max_keys_share_one_budget(caplog: pytest.LogCaptureFixture):
    limiter, _ = limited(caplog, max_keys=3)
    for n in range(1000):  # a thousand clients
        limiter.log(logging.WARNING, f"10.0.{n // 256}.{n % 256}", "client %d", n)
    assert messages(caplog) == ["client 0", "client 1", "client 2", "client 3"]  # the 4th: the shared key's
    assert limiter.suppressed == 996


def test_limited_records_are_marked_as_client_input(caplog: pytest.LogCaptureFixture):
    limiter, _ = limited(caplog)
    limiter.log(logging.WARNING, "k", "bad frame")
    assert getattr(caplog.records[-1], logs.CLIENT_INPUT) is True


def test_the_repeat_filter_lets_five_pymodbus_records_a_minute_through():
    clock = FakeClock()
    repeat = logs.RepeatFilter(clock=clock)  # type: ignore[arg-type]
    record = logging.LogRecord("pymodbus.logging", logging.ERROR, __file__, 1, "Invalid Modbus protocol id: 515",
                               None, None)
    assert [repeat.filter(record) for _ in range(8)] == [True] * 5 + [False] * 3
    clock.t = 60.0
    assert repeat.filter(record)
    assert record.getMessage() == "Invalid Modbus protocol id: 515 (3 similar held back before)"


def test_the_repeat_filter_leaves_the_controllers_own_loggers_alone():
    repeat = logs.RepeatFilter()
    record = logging.LogRecord("runtime.scan", logging.WARNING, __file__, 1, "scan overrun", None, None)
    assert all(repeat.filter(record) for _ in range(100))


def test_one_record_is_cut_to_max_record_chars(tmp_path: Path):
    log_file = tmp_path / "ems.log"
    logs.setup_logging("INFO", log_file)
    try:
        logging.getLogger("runtime.servers.host").warning("dump: %s", "0x00 " * 100_000)  # 500 kB of hex
    finally:
        logs.stop_logging()
    line = log_file.read_text()
    assert len(line) < logs.MAX_RECORD_CHARS + 200
    assert f"({500_006 - logs.MAX_RECORD_CHARS} characters cut)" in line


def test_a_flood_of_pymodbus_hex_dumps_leaves_a_few_kilobytes(tmp_path: Path):
    log_file = tmp_path / "ems.log"
    logs.setup_logging("INFO", log_file, max_bytes=1_000_000, backups=5)
    try:
        garbage = " ".join(f"0x{b:x}" for b in range(256)) * 20  # what pymodbus appends: the last frames
        for n in range(2_000):  # 5 MB of garbage as pymodbus logs it
            logging.getLogger("pymodbus.logging").error("Invalid Modbus protocol id: %d\n%s", n % 7, garbage)
    finally:
        logs.stop_logging()
    written = sum(p.stat().st_size for p in tmp_path.glob("ems.log*"))
    assert written < 20 * logs.MAX_RECORD_CHARS  # 5 records, each cut
    assert not (tmp_path / "ems.log.1").exists()  # nothing rotated away


def test_the_errors_file_keeps_the_controllers_errors_and_none_of_a_clients(tmp_path: Path):
    log_file = tmp_path / "ems.log"
    logs.setup_logging("INFO", log_file)
    try:
        logging.getLogger("runtime.scan").error("scan overrun: 12 ms past its deadline")
        logging.getLogger("runtime.servers.host").info("modbus-server listening on tcp 127.0.0.1:502")
        logs.LogLimiter(logging.getLogger("runtime.servers.host")).log(logging.WARNING, "k", "bad frame from x")
        logging.getLogger("pymodbus.logging").error("Invalid Modbus protocol id: 515")
        logging.getLogger("asyncio").error("socket.accept() out of system resource")
    finally:
        logs.stop_logging()
    errors = logs.errors_file(log_file)
    assert errors == tmp_path / "ems-errors.log"
    kept = errors.read_text()
    assert "scan overrun" in kept
    assert all(s not in kept for s in ("listening", "bad frame", "protocol id", "accept"))
    assert "bad frame from x" in log_file.read_text()  # the main log has them all
