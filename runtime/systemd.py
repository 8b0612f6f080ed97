"""systemd integration and the hardware watchdog.

`SdNotifier` speaks the sd_notify protocol: one datagram of `KEY=value` lines to the Unix socket
named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). The socket is
non-blocking: the scan thread sends, and a service manager that stops reading (a stalled systemd
or a full queue) must not stop the scan, so a message that cannot be sent at once is dropped and
counted (`watchdog_pings_dropped`); READY=1 is tried again until it goes out.

`ServiceWatchdog`, hooked after each scan, sends `READY=1` once the first scan has completed and
`WATCHDOG=1` after healthy scans, so that with `Type=notify` and `WatchdogSec=` systemd restarts
a process whose scan hangs or keeps failing. A scan is healthy when it completed and no program
raised in it; while the supervisor holds the outputs safe (its recovery window after a stall) a
scan is healthy when it also came within the supervisor's limit of the one before, so pings
resume with the first on-time scan after a stall (the outputs stay safe until the supervisor
releases them) and a hung or chronically late scan still gets no ping. Pings are spaced at half
the watchdog interval systemd asks for (`$WATCHDOG_USEC`), at least once a second: a datagram per
10 ms scan would cost more than the scan. The optional hardware watchdog (`/dev/watchdog`) is fed
on the same beat, so a frozen machine reboots too; a clean stop disarms it (magic close).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import time
from typing import Any

from plc.program import ScanContext
from runtime.config.schema import WatchdogConfig

log = logging.getLogger(__name__)

WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)
MAX_PING_INTERVAL_S = 1.0
DROP_LOG_EVERY_S = 60.0  # a message that could not be sent is logged at most this often


class SdNotifier:
    """Sends sd_notify messages; does nothing when not started by systemd (no $NOTIFY_SOCKET)."""

    def __init__(self, address: str | None = None):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address = address or None
        self.sock: socket.socket | None = None
        self.dropped = 0  # messages that could not be sent at once (never waited for)
        self._drop_logged_at = -DROP_LOG_EVERY_S
        if self.address:
            target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
            self._target = target
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def notify(self, *lines: str) -> bool:
        """Send `KEY=value` lines as one datagram, without waiting: False (counted in `dropped`,
        logged at most once a minute) when it could not be sent at once."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(lines).encode(), self._target)
            return True
        except OSError as exc:  # BlockingIOError: the receiver's queue is full; others: it is gone
            self.dropped += 1
            now = time.monotonic()
            if now - self._drop_logged_at >= DROP_LOG_EVERY_S:
                self._drop_logged_at = now
                log.warning("sd_notify to %s: %s not sent (%s); %d message(s) dropped so far", self.address,
                            lines[0] if lines else "message", exc.strerror or exc, self.dropped)
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """The ping interval systemd asks for (half of `$WATCHDOG_USEC`), or None without a watchdog."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return int(usec) / 1e6 / 2.0
    except ValueError:
        return None


class HardwareWatchdog:
    """`/dev/watchdog`: each write keeps the machine alive for the timeout; 'V' then close disarms it."""

    def __init__(self, device: str, timeout_s: int):
        self.device = device
        self.fd: int | None = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.fd, WDIOC_SETTIMEOUT, struct.pack("i", timeout_s))
        except OSError as exc:  # not every driver (or a plain file in tests) takes a timeout
            log.info("hardware watchdog %s keeps its own timeout (%s)", device, exc.strerror)

    def kick(self) -> None:
        if self.fd is not None:
            os.write(self.fd, b"\0")

    def disarm(self) -> None:
        if self.fd is not None:
            os.write(self.fd, b"V")
            os.close(self.fd)
            self.fd = None


class ServiceWatchdog:
    """After each scan: READY=1 once, then WATCHDOG=1 (and a hardware kick) while scans are healthy."""

    def __init__(self, engine: Any, notifier: SdNotifier, hardware: HardwareWatchdog | None = None,
                 interval_s: float | None = None, late_s: float | None = None):
        self.engine = engine
        self.notifier = notifier
        self.hardware = hardware
        asked = watchdog_interval_s() if interval_s is None else interval_s
        self.interval_s = MAX_PING_INTERVAL_S if asked is None else min(asked, MAX_PING_INTERVAL_S)
        # while the outputs are held safe, a scan further than this from the one before is no
        # sign of health (the supervisor's limit: missed_scans periods)
        self.late_s = 5 * engine.period_s if late_s is None else late_s
        self.ready = False
        self.pings = 0  # WATCHDOG=1 sent
        self._faults = engine.stats.program_faults
        self._next = 0.0
        self._last_scan: float | None = None
        self._dropped_tag = engine.image.get("watchdog_pings_dropped")

    def __call__(self, ctx: ScanContext) -> None:
        now = time.monotonic()
        previous, self._last_scan = self._last_scan, now
        faults = self.engine.stats.program_faults
        healthy = faults == self._faults
        self._faults = faults
        if healthy and self.engine.safe_mode:  # the supervisor's recovery: on time again?
            healthy = previous is not None and now - previous <= self.late_s
        if not healthy:
            return
        notifier = self.notifier
        if not self.ready and (self._next <= now or not notifier.enabled):
            self.ready = notifier.notify("READY=1", f"STATUS=scanning every {self.engine.period_s * 1000:.0f} ms",
                                         f"MAINPID={os.getpid()}") or not notifier.enabled
            if self.ready:
                log.info("first scan complete%s", ": READY=1 sent to systemd" if notifier.enabled else "")
        if now >= self._next:
            self._next = now + self.interval_s
            if notifier.notify("WATCHDOG=1"):
                self.pings += 1
            if self.hardware is not None:
                self.hardware.kick()
            if self._dropped_tag is not None:
                self._dropped_tag.value = notifier.dropped

    def stop(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping: outputs to their safe values")
        if self.hardware is not None:
            self.hardware.disarm()
        self.notifier.close()


def attach(site: Any, cfg: WatchdogConfig) -> ServiceWatchdog | None:
    """Hook systemd notification (when started by systemd) and the hardware watchdog (when configured)."""
    notifier = SdNotifier() if cfg.systemd else SdNotifier("")
    hardware = HardwareWatchdog(cfg.hardware_device, cfg.hardware_timeout_s) if cfg.hardware_device else None
    if not notifier.enabled and hardware is None:
        return None
    watchdog = ServiceWatchdog(site.engine, notifier, hardware,
                               late_s=site.io_map.supervisor.missed_scans * site.engine.period_s)
    site.engine.after_scan.append(watchdog)
    log.info("watchdog: %s%s, ping every %.2f s", "systemd" if notifier.enabled else "",
             f" + hardware {cfg.hardware_device}" if hardware else "", watchdog.interval_s)
    return watchdog
