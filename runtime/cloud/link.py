"""The cloud link: the site's telemetry and events to Azure IoT Hub, lossless, off the scan.

The scan hands over and goes on: after each scan the image's publish channel gives the link its
snapshot (kept when a spot message is due, by the injected wall clock: one per `spot_interval_s`,
on the interval's boundaries), and the event log gives it each event once committed. Both go to
an in-memory inbox; the link's own thread puts them into the store-and-forward queue
(runtime/cloud/queue.py: durable before anything is sent) and sends the queue's oldest
messages, one at a time or, when several wait, as batches of up to `batch_size` (gzip above
`gzip_above_bytes`). A message leaves the queue only once the hub acknowledged it.

Connection: connect, and after any failure close the client and wait `backoff_base_s * 2^n`
(n failures in a row, at most `backoff_cap_s`) times a random factor of 0.5..1 (jitter, so a
fleet that lost its hub does not come back all at once). Every SDK call is bounded by
`call_timeout_s` (runtime/cloud/hub.py). The link's state, last error, queue depth, oldest
queued age, messages sent, evicted and reconnects are tags (`cloud_*`), copied in after each scan.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from plc.program import ScanContext
from plc.tags import TagSpec
from runtime.cloud import hub, messages
from runtime.cloud.methods import Methods
from runtime.cloud.queue import Message, MessageQueue, Put
from runtime.cloud.twin import Twin
from runtime.config.schema import CloudConfig
from runtime.events import Event
from runtime.image import ProcessImage, Snapshot

log = logging.getLogger(__name__)

ERROR_CHARS = 64  # the cloud_last_error tag's length


class LinkState(enum.IntEnum):
    """The `cloud_state` tag's values (its labels in runtime/scan_stats.py)."""

    OFF = 0
    CONNECTING = 1
    CONNECTED = 2
    RETRYING = 3



@attrs.frozen
class LinkStatus:
    """What the link's tags show; replaced whole by the link's thread, read by the scan's."""

    state: LinkState = LinkState.OFF
    last_error: str = ""
    depth: int = 0
    oldest_s: float = 0.0
    sent: int = 0  # messages the hub acknowledged since start
    evicted: int = 0  # messages the byte cap evicted, over the queue file's life
    reconnects: int = 0


class CloudLink:
    """See the module docstring. `start` opens the queue and checks the credentials (OSError,
    one line, when they are unusable); `stop` queues what the inbox holds and closes."""

    def __init__(self, cfg: CloudConfig, queue_path: Path, make_client: Callable[[], hub.HubClient],
                 site_id: str, telemetry: Sequence[TagSpec], wall: Callable[[], float],
                 methods: Methods | None = None, twin: Twin | None = None, rng: random.Random | None = None):
        self.cfg = cfg
        self.queue_path = queue_path
        self.make_client = make_client
        self.site_id = site_id
        self.telemetry = tuple(telemetry)
        self.wall = wall
        self.methods = methods  # the direct methods' answers (None: the link takes no method)
        self.twin = twin  # the device twin's parameters and reports (None: no twin)
        self._reported_at = -math.inf
        self.rng = rng or random.Random()
        self.status = LinkStatus()
        self.queue: MessageQueue | None = None
        self._inbox: deque[Snapshot | Event] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: hub.HubClient | None = None
        self._online = False  # connected, and nothing failed since
        self._next_spot = -math.inf
        self._failures = 0
        self._retry_at = 0.0
        self._sent = 0
        self._reconnects = 0
        self._error = ""
        self.event_sink: Callable[[Event], None] | None = None  # the event log, for the evictions
        self.cancel = threading.Event()  # set by stop: the SDK call in progress is given up

    # --- scan side (the scan's thread; never blocks) ----------------------------------------------
    def on_snapshot(self, snapshot: Snapshot) -> None:
        """After each scan: keep the snapshot when a spot message is due."""
        if snapshot.wall_s < self._next_spot:
            return
        interval = self.cfg.spot_interval_s
        self._next_spot = (math.floor(snapshot.wall_s / interval) + 1) * interval
        self._inbox.append(snapshot)
        self._wake.set()

    def on_event(self, event: Event) -> None:
        """An event the event log committed (its writer's thread)."""
        self._inbox.append(event)
        self._wake.set()

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.queue = MessageQueue(self.queue_path, self.cfg.queue_max_bytes, self.wall)
        self._client = self.make_client()  # the credentials are read now: a bad file stops the start
        self._publish(LinkState.CONNECTING)
        self._thread = threading.Thread(target=self._run, name="cloud-link", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self.cancel.set()  # an SDK call in progress is given up at once
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("cloud link: its thread did not stop within %.1f s", timeout_s)
                return
        if self.queue is not None:
            self._take_inbox()  # nothing handed over is lost: it waits in the queue for the next start
            self.queue.close()
        self._drop_client()

    # --- the link's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._take_inbox()
            if self._online and self._client is not None and not self._client.connected:
                self._failed("connection", ConnectionError("lost"))
            if not self._online and time.monotonic() >= self._retry_at:
                self._connect()
            busy = self._online and self._send_some()
            if self._online and not busy:
                self._report_if_due()
            self._publish(self._state())
            if not busy:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        if self._online:
            return 1.0
        return max(0.0, min(1.0, self._retry_at - time.monotonic()))

    def _take_inbox(self) -> None:
        """Move what the scan and the event log handed over into the queue (durable)."""
        assert self.queue is not None
        items: list[tuple[str, bytes, bool]] = []
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, Snapshot):
                items.append((messages.SPOT, messages.spot_body(item, self.telemetry, self.site_id), True))
            else:
                kind, body = messages.event_body(item, self.site_id)
                items.append((kind, body, False))
        if items:
            self._evictions(self.queue.put_many(items))

    def _evictions(self, put: Put) -> None:
        if not put.evicted:
            return
        text = (f"cloud queue full ({self.cfg.queue_max_bytes} bytes): {put.spot_evicted} spot and "
                f"{put.events_evicted} event messages evicted, oldest first")
        log.warning("%s", text)
        if self.event_sink is not None:
            self.event_sink(Event(self.wall(), time.monotonic(), "service", 1, "cloud", 0, "cloud_queue_evicted", text))

    def _state(self) -> LinkState:
        if self._online:
            return LinkState.CONNECTED
        return LinkState.RETRYING if self._failures else LinkState.CONNECTING

    def _connect(self) -> None:
        try:
            if self._client is None:
                self._client = self.make_client()
            self._client.connect()
            if self.methods is not None:
                methods = self.methods
                self._client.on_method(lambda name, payload: methods.answer(name, payload).pair)
            if self.twin is not None:
                self._client.on_desired(self.twin.desired)
                came = self.twin.desired(self._client.get_twin().get("desired", {}))  # what changed while away
                self._client.report({**self.twin.reported(self._link_report()), **came})
                self._reported_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - any failure of the SDK or the network: back off
            self._failed("connect", exc)
            return
        if self._failures:
            self._reconnects += 1
            log.info("cloud link: connected again after %d failed attempt(s)", self._failures)
        else:
            log.info("cloud link: connected")
        self._failures, self._error, self._online = 0, "", True

    def _send_some(self) -> bool:
        """Send the oldest queued message, or a batch of them; True when more may be waiting."""
        assert self.queue is not None and self._client is not None
        batch = self.queue.peek(self.cfg.batch_size)
        if not batch:
            return False
        payload, encoding, message_id, properties = self._transmission(batch)
        try:
            self._client.send(payload, message_id, encoding, properties)
        except Exception as exc:  # noqa: BLE001 - not acknowledged: it stays queued, sent again later
            self._failed("send", exc)
            return False
        self.queue.ack(m.seq for m in batch)
        self._sent += len(batch)
        return True

    def _report_if_due(self) -> None:
        """The twin's reported properties, once per spot interval."""
        if self.twin is None or time.monotonic() - self._reported_at < self.cfg.spot_interval_s:
            return
        assert self._client is not None
        self._reported_at = time.monotonic()
        try:
            self._client.report(self.twin.reported(self._link_report()))
        except Exception as exc:  # noqa: BLE001 - the connection went: back off as for a send
            self._failed("report", exc)

    def _link_report(self) -> dict[str, Any]:
        status = self.status
        return {"state": status.state.name.lower(), "queue_depth": status.depth, "sent": status.sent,
                "evicted": status.evicted, "reconnects": status.reconnects}

    def _transmission(self, batch: Sequence[Message]) -> tuple[bytes, str, str, dict[str, str]]:
        """(payload, content encoding, message id, properties) of one hub message."""
        common = {"site_id": self.site_id, "schema": str(messages.SCHEMA_VERSION)}
        if len(batch) == 1:
            message = batch[0]
            return message.body, "utf-8", message.message_id, {"type": message.kind, **common}
        bodies = [b'{"id":"' + m.message_id.encode() + b'","type":"' + m.kind.encode() + b'","body":' + m.body + b"}"
                  for m in batch]
        payload, encoding = messages.batch_body(bodies, self.cfg.gzip_above_bytes)
        message_id = f"{batch[0].message_id}-{batch[-1].seq}"
        return payload, encoding, message_id, {"type": messages.BATCH, "count": str(len(batch)), **common}

    def _failed(self, what: str, exc: BaseException) -> None:
        self._online = False
        self._failures += 1
        delay = min(self.cfg.backoff_cap_s, self.cfg.backoff_base_s * 2 ** (self._failures - 1))
        delay *= self.rng.uniform(0.5, 1.0)
        self._retry_at = time.monotonic() + delay
        error = f"{what}: {type(exc).__name__}: {exc}".strip()
        if error != self._error:
            log.warning("cloud link: %s; retrying in %.1f s (attempt %d)", error, delay, self._failures)
            self._error = error
        self._drop_client()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _publish(self, state: LinkState) -> None:
        queue = self.queue
        oldest = queue.oldest_age_s() if queue is not None else None
        self.status = LinkStatus(
            state=state, last_error=self._error[:ERROR_CHARS], depth=queue.depth if queue is not None else 0,
            oldest_s=oldest or 0.0, sent=self._sent, reconnects=self._reconnects,
            evicted=(queue.evicted_spot + queue.evicted_events) if queue is not None else 0)


class StatusTags:
    """After each scan: the link's status into its `cloud_*` tags (scan thread; a few stores)."""

    def __init__(self, link: CloudLink, image: ProcessImage):
        self.link = link
        self.tags = {name: image[name] for name in TAGS if name in image}

    def __call__(self, ctx: ScanContext) -> None:
        status, tags = self.link.status, self.tags
        for name, value in (("cloud_state", int(status.state)), ("cloud_last_error", status.last_error),
                            ("cloud_queue_depth", status.depth), ("cloud_queue_oldest_s", status.oldest_s),
                            ("cloud_sent", status.sent), ("cloud_evicted", status.evicted),
                            ("cloud_reconnects", status.reconnects)):
            tag = tags.get(name)
            if tag is not None:
                tag.value = value


TAGS = ("cloud_state", "cloud_last_error", "cloud_queue_depth", "cloud_queue_oldest_s", "cloud_sent",
        "cloud_evicted", "cloud_reconnects")


def attach(site: Any, data_dir: Path, cfg: CloudConfig, event_log: Any | None) -> CloudLink:
    """The link of a site, fed by its image and its event log (None: no events are sent)."""
    base = Path(site.io_map.path).parent
    telemetry = [tag.spec for tag in site.image if tag.spec.telemetry]

    link: CloudLink

    def make_client() -> hub.HubClient:
        return hub.HubClient(hub.create_client(cfg, base), cfg.call_timeout_s, link.cancel)

    link = CloudLink(cfg, data_dir / cfg.queue_file, make_client, site.io_map.site.id, telemetry, site.clock.wall,
                     Methods(site.image), Twin(site.image))
    site.image.subscribe(link.on_snapshot)
    if event_log is not None:
        event_log.listeners.append(link.on_event)
        link.event_sink = event_log.append
    site.engine.after_scan.append(StatusTags(link, site.image))
    site.mirrors.append(_StartedWithTheSite(link))
    return link


@attrs.frozen
class _StartedWithTheSite:
    """The link as a mirror: started with the others (a bad credential stops the start with one
    line), but stopped with the services, after the event log, whose last events it queues."""

    link: CloudLink

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        """Nothing yet: Site.stop closes the link after the event log (Site.attach_services)."""
