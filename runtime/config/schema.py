"""The records an io_map file is made of. Field names are the TOML keys (see docs/io_map.md)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal

import attrs
from attrs import validators as v

from plc.tags import TagSpec

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[Any, attrs.Attribute[str], str], None]:
    def check(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what} (pattern {pattern.pattern})")

    return check


@attrs.frozen
class SiteConfig:
    id: str = attrs.field(validator=_matches(_ID, "site id"))
    name: str = ""
    description: str = ""
    # At least 1 ms: below that a scan (read, programs, write) cannot finish in its period and the
    # real clock spins a core at 100 %; at most 10 s, beyond which the supervisor and the devices'
    # stale_after_s no longer protect anything.
    scan_period_s: float = attrs.field(default=0.1, validator=[v.ge(0.001), v.le(10.0)])
    data_dir: str = "var"
    timezone: str = "UTC"
    # Run the scan thread as SCHED_FIFO at this priority (1..99) on the real clock; needs root or
    # CAP_SYS_NICE, else a warning and normal priority. A PLC's scan is not at the mercy of a busy core.
    realtime_priority: int | None = attrs.field(default=None, validator=v.optional([v.ge(1), v.le(99)]))
    # Run when the site state machine enters Reboot (after the site has stopped), e.g.
    # ["systemctl", "reboot"]; without it `ems run` exits with code 4 and leaves the reboot to its caller.
    reboot_command: tuple[str, ...] = ()
    # A site with outputs must run a `safety` program after every program that writes them. Only a
    # bench test rig without a battery may run without it, saying so here (a warning at every start).
    bench_rig_without_safety: bool = False


@attrs.frozen
class SupervisorConfig:
    enabled: bool = True
    missed_scans: int = attrs.field(default=5, validator=v.ge(1))
    recover_s: float = attrs.field(default=5.0, validator=[v.ge(0.0), v.le(3600.0)])


@attrs.frozen
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str = "ems.log"
    max_bytes: int = attrs.field(default=5_000_000, validator=v.ge(10_000))
    backups: int = attrs.field(default=5, validator=v.ge(0))


# A server's clients take one file descriptor each: 1..256 keeps two servers well inside the 1024 of a
# systemd service (runtime/servers/host.py also lowers it to what the process's limit allows).
_MAX_CONNECTIONS = [v.ge(1), v.le(256)]
_IDLE_TIMEOUT = [v.ge(0.5), v.le(3600.0)]  # seconds without a complete request


def _write_allow(_instance: Any, _attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for item in value:
        if item == "rtu":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address, a network (10.0.0.0/24) or \"rtu\"") from None


def _ascii(limit: int) -> Callable[[Any, attrs.Attribute[str], str], None]:
    def check(_instance: Any, _attribute: attrs.Attribute, value: str) -> None:
        if not value.isascii() or len(value) > limit:
            raise ValueError(f"{value!r} must be ASCII text of at most {limit} characters")

    return check


_UNIT_IDS = v.deep_iterable(v.and_(v.ge(0), v.le(247)))
_PORT = [v.ge(0), v.le(65535)]  # 0: any free port (tests)
_ADDRESS = v.optional([v.ge(0), v.le(65535)])


@attrs.frozen
class SerialPortConfig:
    """An RS-485 line on which a server also answers Modbus RTU (`[modbus_server.serial]`)."""

    port: str  # device path, e.g. /dev/ttyUSB0
    baudrate: int = attrs.field(default=19200, validator=v.in_((1200, 2400, 4800, 9600, 19200, 38400, 57600,
                                                                    115200)))
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = attrs.field(default=1, validator=v.in_((1, 2)))
    bytesize: int = attrs.field(default=8, validator=v.in_((7, 8)))


@attrs.frozen
class ModbusServerConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = attrs.field(default=502, validator=_PORT)
    unit_ids: tuple[int, ...] = attrs.field(default=(1,), validator=_UNIT_IDS)
    word_order: Literal["high_first", "low_first"] = "high_first"
    writes_enabled: bool = False
    write_allow: tuple[str, ...] = attrs.field(default=("127.0.0.1",), validator=_write_allow)
    runtime_base: int = attrs.field(default=9000, validator=[v.ge(0), v.le(65000)])  # the runtime's own tags
    serial: SerialPortConfig | None = None
    # the longest a write waits for its scan and commit before it is answered 06 (docs/modbus.md)
    write_timeout_s: float = attrs.field(default=1.0, validator=[v.ge(0.05), v.le(10.0)])
    # TCP clients held at once, and how long one may stay without completing a request (docs/modbus.md)
    max_connections: int = attrs.field(default=16, validator=_MAX_CONNECTIONS)
    max_connections_per_client: int = attrs.field(default=4, validator=_MAX_CONNECTIONS)  # per address
    idle_timeout_s: float = attrs.field(default=60.0, validator=_IDLE_TIMEOUT)


@attrs.frozen
class MeterGatewayConfig:
    """Re-exposes the site meter in a standard meter's register layout (docs/meter_gateway.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = attrs.field(default=1502, validator=_PORT)
    unit_ids: tuple[int, ...] = attrs.field(default=(1,), validator=_UNIT_IDS)
    layout: Literal["em24_e1", "em24_din"] = "em24_e1"
    serial_number: str = attrs.field(default="EMS0000000001", validator=_ascii(13))
    quantities: dict[str, str] = attrs.field(factory=dict)  # layout quantity -> tag name
    serial: SerialPortConfig | None = None
    max_connections: int = attrs.field(default=16, validator=_MAX_CONNECTIONS)
    max_connections_per_client: int = attrs.field(default=4, validator=_MAX_CONNECTIONS)  # per address
    idle_timeout_s: float = attrs.field(default=60.0, validator=_IDLE_TIMEOUT)


@attrs.frozen
class DeviceConfig:
    """One device and its driver. The driver's own settings sit in a sub-table named after it."""

    name: str = attrs.field(validator=_matches(_NAME, "device name"))
    driver: str
    # Durations end within a day (an hour for a poll): a longer one is a typo, and a sleep that long
    # overflows the clock. stale_after_s is at least poll_period_s (checked by the loader).
    poll_period_s: float = attrs.field(default=0.1, validator=[v.gt(0.0), v.le(3600.0)])
    stale_after_s: float = attrs.field(default=1.0, validator=[v.gt(0.0), v.le(86400.0)])
    hang_timeout_s: float = attrs.field(default=5.0, validator=[v.gt(0.0), v.le(3600.0)])
    backoff_max_s: float = attrs.field(default=30.0, validator=[v.gt(0.0), v.le(86400.0)])
    description: str = ""


@attrs.frozen
class IoConfig:
    """Where a tag's value comes from or goes to; driver-specific keys are checked by the driver."""

    device: str
    scale: float = 1.0
    offset: float = 0.0


@attrs.frozen
class ProgramConfig:
    name: str = attrs.field(validator=_matches(_NAME, "program name"))
    kind: str
    enabled: bool = True


def _duration(default: float, most_s: float) -> Any:
    """A positive duration of at most `most_s`: beyond it no site works (a lease of a day)."""
    return attrs.field(default=default, validator=[v.gt(0.0), v.le(most_s)])


MINUTE, HOUR = 60.0, 3600.0
QUEUE_MAX_BYTES = 192 * 2**20  # the cloud queue's message bytes: a week of spot messages (runtime/cloud/queue.py)


@attrs.frozen
class EventLogConfig:
    """The event log: state and mode changes, errors, writes (SQLite under data_dir)."""

    enabled: bool = True
    file: str = "events.sqlite"
    max_rows: int = attrs.field(default=200_000, validator=[v.ge(100), v.le(100_000_000)])
    max_age_days: float = attrs.field(default=365.0, validator=[v.gt(0.0), v.le(36500.0)])
    ignore_writes: tuple[str, ...] = ("ext_heartbeat", "local_heartbeat", "modbus_heartbeat")


@attrs.frozen
class RetainConfig:
    """Retained tags and system information (SQLite under data_dir)."""

    enabled: bool = True
    file: str = "retain.sqlite"
    save_interval_s: float = _duration(10.0, HOUR)


@attrs.frozen
class WatchdogConfig:
    """systemd notification (READY/WATCHDOG) and an optional hardware watchdog."""

    systemd: bool = True
    hardware_device: str = ""
    hardware_timeout_s: int = attrs.field(default=15, validator=[v.ge(1), v.le(600)])


@attrs.frozen
class ClusterNodeConfig:
    """One battery unit of a cluster (`[[cluster.nodes]]`): where its controller listens."""

    id: str = attrs.field(validator=_matches(_ID, "node id"))
    raft_port: int = attrs.field(validator=[v.ge(1), v.le(65535)])  # pysyncobj (Raft)
    pub_port: int = attrs.field(validator=[v.ge(1), v.le(65535)])  # ZeroMQ PUB: node state, setpoints
    rep_port: int = attrs.field(validator=[v.ge(1), v.le(65535)])  # ZeroMQ REP: commands, status
    host: str = "127.0.0.1"
    # A Raft voter (3 or 5 of them make a site's quorum) or a member that only follows: it hears
    # the leader through Raft (read-only), takes its setpoints and reports its state, never votes.
    voter: bool = True
    devices: tuple[str, ...] = ()  # simulate-devices only: this node's devices in a plant file
    plant: dict[str, Any] = attrs.field(factory=dict)  # simulate-devices only: its battery unit, as [devices.sim]


@attrs.frozen
class ClusterConfig:
    """Several battery units acting as one (docs/cluster.md): Raft, ZeroMQ, membership, discovery."""

    enabled: bool = False
    node_id: str = ""
    nodes: tuple[ClusterNodeConfig, ...] = ()
    raft_min_timeout_s: float = _duration(0.2, MINUTE)
    raft_max_timeout_s: float = _duration(0.4, MINUTE)
    append_entries_period_s: float = _duration(0.04, MINUTE)
    connection_timeout_s: float = _duration(0.5, MINUTE)
    connection_retry_s: float = _duration(0.5, MINUTE)
    leader_fallback_timeout_s: float = _duration(1.0, MINUTE)
    lease_s: float = _duration(0.15, MINUTE)
    lease_renew_s: float = _duration(0.04, MINUTE)
    stale_after_s: float = _duration(0.5, HOUR)
    offline_after_s: float = _duration(1.5, HOUR)
    discovery: bool = False
    discovery_group: str = "239.255.71.71"
    discovery_port: int = attrs.field(default=15199, validator=[v.ge(1), v.le(65535)])
    discovery_period_s: float = _duration(1.0, HOUR)
    applied_log: str = ""  # JSON lines of every setpoint sent and applied, under data_dir ("" = off)
    # Security (runtime/cluster/security.py): the Raft password file (mode 0600) and the CURVE keys,
    # both outside the io_map (paths relative to it); command_keys may command the cluster too.
    secret_file: str = ""
    keys_dir: str = ""
    command_keys: tuple[str, ...] = attrs.field(default=("cli",), validator=v.deep_iterable(
        _matches(_ID, "key name")))
    insecure_lab: bool = False  # no password, no CURVE: a lab on a private network only, logged at every start
    plant: dict[str, Any] = attrs.field(factory=dict)  # simulate-devices only: the shared site plant

    @property
    def voters(self) -> tuple[ClusterNodeConfig, ...]:
        """The nodes that vote in Raft elections; the others follow read-only."""
        return tuple(n for n in self.nodes if n.voter)

    def __attrs_post_init__(self) -> None:
        ids = [node.id for node in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node ids must be unique, got {ids}")
        if self.enabled and self.node_id not in ids:
            raise ValueError(f"node_id {self.node_id!r} is not one of the nodes {ids}")
        if self.nodes and not self.voters:
            raise ValueError("at least one node must be a Raft voter (voter = true); 3 or 5 make a site's quorum")
        if not self.raft_min_timeout_s < self.raft_max_timeout_s:
            raise ValueError("raft_min_timeout_s must be below raft_max_timeout_s")
        if not self.raft_min_timeout_s > 3 * self.append_entries_period_s:
            raise ValueError("raft_min_timeout_s must be more than 3 append_entries_period_s (heartbeats)")
        if not self.connection_timeout_s >= self.raft_max_timeout_s:
            raise ValueError("connection_timeout_s must be at least raft_max_timeout_s")
        if not self.leader_fallback_timeout_s > self.append_entries_period_s:
            raise ValueError("leader_fallback_timeout_s must be above append_entries_period_s")
        if not self.lease_s < self.raft_min_timeout_s:
            raise ValueError("lease_s must be below raft_min_timeout_s, or an old leader's lease could outlive "
                             "the election of the next one")
        if not self.lease_renew_s < self.lease_s:
            raise ValueError("lease_renew_s must be below lease_s")
        if not self.stale_after_s < self.offline_after_s:
            raise ValueError("stale_after_s must be below offline_after_s")
        if self.enabled and not self.insecure_lab and not (self.secret_file and self.keys_dir):
            raise ValueError("a cluster needs secret_file and keys_dir (make them with `ems cluster keys`); "
                             "only a lab may set insecure_lab = true")
        endpoints = [(n.host, port) for n in self.nodes for port in (n.raft_port, n.pub_port, n.rep_port)]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("every node needs its own raft, pub and rep ports")


CLOUD_AUTH = ("sas", "x509")
CLOUD_TRANSPORTS = ("mqtt", "websockets")


@attrs.frozen
class CloudConfig:
    """The link to the fleet back end (docs/cloud.md): Azure IoT Hub through azure-iot-device.

    Secrets stay outside the io_map (paths relative to it): the SAS connection string in a file
    of its own (mode 0600), or the device's X.509 certificate and key."""

    enabled: bool = False
    auth: str = attrs.field(default="sas", validator=v.in_(CLOUD_AUTH))
    connection_string_file: str = ""  # sas: "HostName=...;DeviceId=...;SharedAccessKey=..."
    host: str = ""  # x509: the hub's host name
    device_id: str = ""  # x509: the device id the certificate was issued for
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""  # the CA the hub's certificate must chain to ("" = the system's trust store)
    transport: str = attrs.field(default="mqtt", validator=v.in_(CLOUD_TRANSPORTS))  # TLS 8883 | WebSockets 443
    spot_interval_s: float = attrs.field(default=10.0, validator=[v.ge(1.0), v.le(HOUR)])  # SC_Spot_10s
    batch_size: int = attrs.field(default=50, validator=[v.ge(1), v.le(1000)])  # messages per send when draining
    gzip_above_bytes: int = attrs.field(default=4096, validator=[v.ge(256), v.le(256 * 1024)])
    queue_file: str = "cloud_queue.sqlite"  # store-and-forward, under data_dir
    # message bytes held (the file takes about twice that): the default holds a week of spot messages
    queue_max_bytes: int = attrs.field(default=QUEUE_MAX_BYTES, validator=[v.ge(1024 * 1024), v.le(64 * 1024 ** 3)])
    backoff_base_s: float = _duration(1.0, HOUR)  # reconnect: base * 2^n, with jitter, up to the cap
    backoff_cap_s: float = _duration(300.0, HOUR)
    call_timeout_s: float = _duration(15.0, MINUTE)  # any SDK call (get_twin can block forever)

    def __attrs_post_init__(self) -> None:
        if not self.backoff_base_s <= self.backoff_cap_s:
            raise ValueError("backoff_base_s must be at most backoff_cap_s")
        if not self.enabled:
            return
        if self.auth == "sas" and not self.connection_string_file:
            raise ValueError("auth = \"sas\" needs connection_string_file (a file of its own, mode 0600)")
        if self.auth == "x509":
            missing = [k for k in ("host", "device_id", "cert_file", "key_file") if not getattr(self, k)]
            if missing:
                raise ValueError(f"auth = \"x509\" needs {', '.join(missing)}")


@attrs.frozen
class IoMap:
    """A whole site, as loaded and checked from its io_map file."""

    path: str
    site: SiteConfig
    supervisor: SupervisorConfig
    logging: LoggingConfig
    modbus_server: ModbusServerConfig
    devices: tuple[DeviceConfig, ...]
    device_options: dict[str, Any]  # device name -> the driver's options record
    tags: tuple[TagSpec, ...]  # the [[tags]] entries, as declared (max_age_s not yet defaulted)
    tag_io: dict[str, tuple[IoConfig, Any]]  # tag name -> (binding, the driver's point record)
    programs: tuple[ProgramConfig, ...]
    program_params: dict[str, Any]  # program name -> the program's params record
    meter_gateway: MeterGatewayConfig = attrs.Factory(MeterGatewayConfig)
    event_log: EventLogConfig = attrs.Factory(EventLogConfig)
    retain: RetainConfig = attrs.Factory(RetainConfig)
    watchdog: WatchdogConfig = attrs.Factory(WatchdogConfig)
    cluster: ClusterConfig = attrs.Factory(ClusterConfig)
    cloud: CloudConfig = attrs.Factory(CloudConfig)
    key_lines: dict[tuple[str | int, ...], int] = attrs.field(factory=dict, repr=False, eq=False)  # key -> line
