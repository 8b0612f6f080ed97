"""Scan statistics: duration and wake-up jitter, kept cheap enough to update every scan.

Percentiles come from a ring buffer of the last `window` scans, recomputed every
`refresh_every` scans, so that a scan pays one store and a few additions.
"""

from __future__ import annotations

from array import array
from typing import Any

from plc.tags import Access, Area, DType, TagSpec

STATS_TAGS = (
    ("scan_count", DType.UINT32, "", "Scans completed since start"),
    ("scan_overruns", DType.UINT32, "", "Scans that ran past their next deadline"),
    ("scan_missed_deadlines", DType.UINT32, "", "Deadlines skipped by re-basing after overruns"),
    ("scan_duration_last_s", DType.FLOAT32, "s", "Duration of the last scan"),
    ("scan_duration_mean_s", DType.FLOAT32, "s", "Mean scan duration over the recent window"),
    ("scan_duration_max_s", DType.FLOAT32, "s", "Longest scan since start"),
    ("scan_duration_p99_s", DType.FLOAT32, "s", "99th percentile scan duration over the recent window"),
    ("scan_jitter_last_s", DType.FLOAT32, "s", "Wake-up lateness of the last scan"),
    ("scan_jitter_p99_s", DType.FLOAT32, "s", "99th percentile wake-up lateness over the recent window"),
    ("scan_jitter_max_s", DType.FLOAT32, "s", "Largest wake-up lateness since start"),
    ("scan_period_s", DType.FLOAT32, "s", "Configured scan period"),
    ("scan_program_faults", DType.UINT32, "", "Program exceptions caught by the scan since start"),
    ("supervisor_tripped", DType.BOOL, "", "Supervisor has forced every output to its safe value"),
    ("watchdog_pings_dropped", DType.UINT32, "", "sd_notify messages dropped because they could not be sent at once"),
    ("scan_sched_policy", DType.UINT16, "",
     "Scheduling policy the scan thread got (0 SCHED_OTHER, 1 SCHED_FIFO, 2 SCHED_RR, 3 BATCH, 5 IDLE)"),
    ("scan_sched_priority", DType.UINT16, "", "Real-time priority the scan thread got (0 at normal priority)"),
    ("clock_synced", DType.BOOL, "", "The kernel has the wall clock synchronized (NTP): error bounded"),
    ("clock_offset_s", DType.FLOAT32, "s", "Offset of the wall clock from its time source, still being slewed"),
    ("clock_max_error_s", DType.FLOAT32, "s", "The kernel's bound on the wall clock's error (16 s: unsynchronized)"),
    ("clock_steps", DType.UINT32, "", "Steps of the wall clock seen since start (more than 1 s off the monotonic clock)"),
    ("clock_last_step_s", DType.FLOAT32, "s", "Size of the last wall clock step (+ forwards)"),
    ("storage_free_pct", DType.FLOAT32, "%", "Free space on the data directory's disk (runtime/storage.py)"),
    ("storage_near_full", DType.BOOL, "", "The data disk is nearly full (warning 411)"),
    ("storage_write_failed", DType.BOOL, "",
     "A write to the event log or retain store failed (error 412): client writes are refused until one succeeds"),
    ("storage_failed_writes", DType.UINT32, "", "Transactions of the event log and retain store that failed since start"),
    # 32-bit tags first: each starts at an even register
    ("cloud_queue_depth", DType.UINT32, "", "Messages queued for the fleet back end, not yet acknowledged"),
    ("cloud_queue_oldest_s", DType.FLOAT32, "s", "Age of the oldest queued message (0 when none)"),
    ("cloud_sent", DType.UINT32, "", "Messages the hub acknowledged since start"),
    ("cloud_evicted", DType.UINT32, "", "Messages evicted by the queue's byte cap (spot telemetry first), ever"),
    ("cloud_reconnects", DType.UINT32, "", "Connections made again after a failure, since start"),
    ("cloud_last_error", DType.STRING, "", "The cloud link's last failure (empty while connected)"),
    ("cloud_state", DType.ENUM, "", "The cloud link (runtime/cloud): off, connecting, connected, retrying"),
)
# the extra declarations of the tags above that are not plain numbers
STATS_TAG_EXTRAS: dict[str, dict[str, Any]] = {
    "cloud_state": {"enum_labels": ("off", "connecting", "connected", "retrying")},
    "cloud_last_error": {"length": 64, "initial": ""},
}


def stats_tag_specs() -> list[TagSpec]:
    """Declarations of the runtime's own status tags."""
    specs = []
    for name, dtype, unit, description in STATS_TAGS:
        initial = False if dtype is DType.BOOL else (0.0 if dtype is DType.FLOAT32 else 0)
        extras = {"initial": initial, **STATS_TAG_EXTRAS.get(name, {})}
        specs.append(TagSpec(name=name, dtype=dtype, area=Area.MEMORY, unit=unit, access=Access.RO,
                             description=description, **extras))
    return specs


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


class ScanStats:
    """Accumulates per-scan figures; `summary()` gives p50/p99/max for benchmarks and logs."""

    def __init__(self, window: int = 1000, refresh_every: int = 100):
        self.window = window
        self.refresh_every = refresh_every
        self.durations = array("d", [0.0] * window)
        self.jitters = array("d", [0.0] * window)
        self.count = 0
        self.overruns = 0
        self.missed = 0
        self.program_faults = 0
        self.duration_max = 0.0
        self.jitter_max = 0.0
        self.duration_mean = 0.0
        self.duration_p99 = 0.0
        self.jitter_p99 = 0.0
        self.last_duration = 0.0
        self.last_jitter = 0.0

    def record(self, duration_s: float, jitter_s: float) -> None:
        i = self.count % self.window
        self.durations[i] = duration_s
        self.jitters[i] = jitter_s
        self.count += 1
        self.last_duration = duration_s
        self.last_jitter = jitter_s
        if duration_s > self.duration_max:
            self.duration_max = duration_s
        if jitter_s > self.jitter_max:
            self.jitter_max = jitter_s
        if self.count % self.refresh_every == 0 or self.count < self.refresh_every:
            self._refresh()

    def _refresh(self) -> None:
        n = min(self.count, self.window)
        durations = sorted(self.durations[:n])
        self.duration_mean = sum(durations) / n
        self.duration_p99 = percentile(durations, 99)
        self.jitter_p99 = percentile(sorted(self.jitters[:n]), 99)

    def summary(self) -> dict[str, float]:
        """Percentiles over the recent window, for reports."""
        n = min(self.count, self.window)
        durations = sorted(self.durations[:n])
        jitters = sorted(self.jitters[:n])
        return {
            "scans": self.count,
            "overruns": self.overruns,
            "missed_deadlines": self.missed,
            "duration_p50_s": percentile(durations, 50),
            "duration_p99_s": percentile(durations, 99),
            "duration_max_s": self.duration_max,
            "jitter_p50_s": percentile(jitters, 50),
            "jitter_p99_s": percentile(jitters, 99),
            "jitter_max_s": self.jitter_max,
        }
