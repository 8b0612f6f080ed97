"""Benchmark: the cloud link draining a backlog to the local IoT Hub, and the scan meanwhile.

A home site (io_maps/sim_home.toml, real clock, 10 Hz) starts with `--backlog` messages in its
cloud queue (2 kB spot messages, as an outage of the hub would leave them) and the local stand-in
for Azure IoT Hub running (Mosquitto with TLS on 127.0.0.1:8883 and the hub emulator, ems/hubsim:
no real hub can run here). Measured in one run:

  - drain: messages per second from the link's start until its queue is empty, through the real
    azure-iot-device SDK, in batches of `batch_size`; next to a bare SDK client sending the same
    batches (the same payloads, one after the other): what the transport allows;
  - the scan's wake-up jitter (p99) over the scans while the link drains, next to the same site
    with the link off for as many scans.

Targets: drain >= 500 msg/s (the issue's), and the scan's p99 jitter while draining within 2x the
link-off run's (or 1 ms above it, whichever is more: sub-millisecond noise). Exit status 1 when
one is missed.

    .venv/bin/python bench/cloud_link.py [--backlog 50000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from _site import ROOT, percentile

from ems.hubsim.local import LocalHub
from runtime.clock import RealClock
from runtime.cloud import messages
from runtime.cloud.queue import MessageQueue
from runtime.config.io_map import load_io_map
from runtime.site import Site, build_site

BODY = b'{"type":"SC_Spot_10s","pad":"' + b"x" * 2000 + b'"}'
TARGET_MSG_S = 500.0
BATCH = 50


def site_with_cloud(work: Path, local: LocalHub, enabled: bool) -> Site:
    secret = work / "bench.connection"
    secret.write_text(local.connection_string("bench") + "\n")
    secret.chmod(0o600)
    text = (ROOT / "io_maps" / "sim_home.toml").read_text()
    text += (f'\n[cloud]\nenabled = {"true" if enabled else "false"}\nconnection_string_file = "{secret}"\n'
             f'ca_file = "{local.ca.cert_file}"\nbatch_size = {BATCH}\n')
    text = text.replace("[modbus_server]\nenabled = true\n", "[modbus_server]\nenabled = false\n", 1)
    path = work / "site.toml"
    path.write_text(text)
    return build_site(load_io_map(path), RealClock())


def fill(queue_file: Path, n: int) -> None:
    with MessageQueue(queue_file) as queue:
        for start in range(0, n, 1000):
            queue.put_many([(messages.SPOT, BODY, True)] * min(1000, n - start))


def run_site(site: Site, seconds: float, data: Path) -> list[float]:
    """Run the site for `seconds`; the wake-up lateness of each scan (s)."""
    site.attach_services(data)
    thread = threading.Thread(target=site.run, args=(seconds,), daemon=True)
    thread.start()
    thread.join()
    site.stop()
    stats = site.engine.stats
    return list(stats.jitters[: min(stats.count, len(stats.jitters))])


def drained_at(site: Site, done: threading.Event, out: list[float]) -> None:
    """Append (seconds from the first scan, scans run) to `out` once the link's queue is empty."""
    def watch() -> None:
        started = None
        while not done.is_set():
            if started is None and site.engine.stats.count:
                started = time.monotonic()
            if started is not None and site.image["cloud_state"].value == 2 and \
                    site.image["cloud_queue_depth"].value == 0:
                out.extend((time.monotonic() - started, site.engine.stats.count))
                return
            time.sleep(0.005)
    threading.Thread(target=watch, daemon=True).start()


def bare_sdk(local: LocalHub, n: int) -> float:
    """Messages per second of a bare SDK client sending the same batches, one after the other."""
    from azure.iot.device import IoTHubDeviceClient, Message

    client = IoTHubDeviceClient.create_from_connection_string(local.connection_string("bare"),
                                                              server_verification_cert=local.ca.cert_pem)
    entry = b'{"id":"x","type":"SC_Spot_10s","body":' + BODY + b"}"
    payload, encoding = messages.batch_body([entry] * BATCH, 4096)
    client.connect()
    try:
        started = time.perf_counter()
        for _ in range(n // BATCH):
            client.send_message(Message(payload, content_encoding=encoding, content_type="application/json"))
        return (n // BATCH) * BATCH / (time.perf_counter() - started)
    finally:
        client.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=50000, help="messages queued before the link starts")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each site runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK's ssl.PROTOCOL_TLSv1_2
    with tempfile.TemporaryDirectory(prefix="cloud-link-", dir=ROOT) as tmp, \
            LocalHub.start(Path(tmp) / "hub", websockets=False) as local:
        work = Path(tmp)
        off = run_site(site_with_cloud(work, local, False), args.seconds, work / "off")
        (work / "on").mkdir()
        fill(work / "on" / "cloud_queue.sqlite", args.backlog)
        site = site_with_cloud(work, local, True)
        done, drained = threading.Event(), []
        drained_at(site, done, drained)
        on = run_site(site, args.seconds, work / "on")
        done.set()
        bare = bare_sdk(local, args.backlog)
    rate = args.backlog / drained[0] if drained else 0.0
    scans = int(drained[1]) if drained else len(on)
    on, off = on[:scans], off[:scans]  # the scans while the link drained, and as many with it off
    p99_off, p99_on = percentile(off, 99) * 1e3, percentile(on, 99) * 1e3
    print(f"cloud link, {args.backlog} queued 2 kB spot messages, batches of {BATCH}, to the local hub "
          "(Mosquitto TLS + emulator)")
    print(f"  drain through the link     {rate:8.0f} msg/s   {rate / bare:5.2f}x a bare SDK client ({bare:.0f} msg/s)"
          if drained else f"  drain: not done within {args.seconds:g} s")
    print(f"  scan p99 jitter, draining  {p99_on:8.3f} ms      {p99_on / max(p99_off, 1e-6):5.2f}x the link off "
          f"({p99_off:.3f} ms), {len(on)} and {len(off)} scans")
    ok_rate = rate >= TARGET_MSG_S
    ok_jitter = p99_on <= max(2 * p99_off, p99_off + 1.0)
    print(f"  target drain >= {TARGET_MSG_S:.0f} msg/s: {'met' if ok_rate else 'MISSED'}; "
          f"scan p99 jitter within 2x (or +1 ms) of the link off: {'met' if ok_jitter else 'MISSED'}")
    return 0 if ok_rate and ok_jitter else 1


if __name__ == "__main__":
    sys.exit(main())
