"""Schedule files for external control: TOML or JSON entries with ISO 8601 times.

```toml
[[entries]]
start = 2026-06-01T10:00:00Z
end = 2026-06-01T12:00:00Z
p_w = -3000.0            # charge 3 kW
q_var = 0.0

[[entries]]
start = 2026-06-01T17:00:00+02:00
end = 2026-06-01T21:00:00+02:00
soc_target_pct = 30.0    # discharge to 30 % by 21:00
```

The file is checked whole (times, overlaps); a bad file changes nothing and the error names
the file and entry. A running site reloads it when it changes.
"""

from __future__ import annotations

import json
import logging
import threading
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from programs.schedule import Schedule, ScheduleEntry

log = logging.getLogger(__name__)
KEYS = {"start", "end", "p_w", "q_var", "soc_target_pct"}


class ScheduleError(ValueError):
    """A schedule file that cannot be used; the message names the file and the entry."""


def load_schedule(path: str | Path) -> Schedule:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ScheduleError(f"{path}: {exc}") from None
    raw = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ScheduleError(f"{path}: expected a list of entries ([[entries]] in TOML, \"entries\": [...] in JSON)")
    entries = [_entry(path, i, item) for i, item in enumerate(raw)]
    try:
        return Schedule(tuple(entries))
    except ValueError as exc:
        raise ScheduleError(f"{path}: {exc}") from None


def _entry(path: Path, i: int, item: Any) -> ScheduleEntry:
    where = f"{path}: entries[{i}]"
    if not isinstance(item, dict):
        raise ScheduleError(f"{where}: expected a table")
    unknown = set(item) - KEYS
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; keys are {', '.join(sorted(KEYS))}")
    try:
        start, end = _time(item.get("start"), "start"), _time(item.get("end"), "end")
        numbers = {k: float(item[k]) for k in ("p_w", "q_var", "soc_target_pct") if k in item}
        return ScheduleEntry(start, end, **numbers)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"{where}: {exc}") from None


def _time(value: Any, key: str) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)  # Python 3.11 reads "Z" itself
    if not isinstance(value, datetime):
        raise ValueError(f"{key} must be a date-time (ISO 8601), got {value!r}")
    if value.tzinfo is None:
        raise ValueError(f"{key} {value.isoformat()} needs a time zone (Z or +hh:mm)")
    return value.astimezone(UTC).timestamp()


class ScheduleWatcher:
    """Loads a schedule file at start and again whenever it changes (a mirror-like companion)."""

    def __init__(self, path: str | Path, install: Callable[[Schedule], None], interval_s: float = 2.0):
        self.path = Path(path)
        self.install = install
        self.interval_s = interval_s
        self._mtime: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            if self._mtime is not None or self._thread is None:
                log.error("schedule %s: %s", self.path, exc.strerror)
            self._mtime = None
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            schedule = load_schedule(self.path)
        except ScheduleError as exc:
            log.error("schedule not loaded, the previous one stays: %s", exc)
            return
        self.install(schedule)
        log.info("schedule %s loaded: %d entries", self.path, len(schedule.entries))

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="schedule-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
