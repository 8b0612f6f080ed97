"""`python -m ems.hubsim`: run the local Azure IoT Hub stand-in and print every message the hub receives.

It prints where the CA is and a connection string to put in a site's [cloud] section, then one line per
telemetry message (device, properties, payload) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ems.hubsim.broker import BrokerError
from ems.hubsim.hub import Telemetry
from ems.hubsim.local import HOSTNAME, LocalHub


def _line(t: Telemetry) -> str:
    props = {k: v for k, v in (("mid", t.message_id), ("ct", t.content_type), ("ce", t.content_encoding)) if v}
    props.update({k: v or "" for k, v in t.custom_properties.items()})
    shown = " ".join(f"{k}={v}" for k, v in props.items())
    body = (gzip.decompress(t.payload) if t.content_encoding == "gzip" else t.payload).decode(errors="replace")
    clock = time.strftime("%H:%M:%S", time.localtime(t.received_at))
    return f"{clock} {t.device_id} {shown} {body}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ems.hubsim", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--dir", type=Path, default=Path("var/hubsim"), help="certificates, broker config and log")
    parser.add_argument("--device", default="dev1", help="the device id to print a connection string for")
    parser.add_argument("--no-websockets", action="store_true", help="no listener on 443")
    parser.add_argument("--require-certificate", action="store_true", help="devices must present an X.509 cert")
    args = parser.parse_args(argv)
    try:
        local = LocalHub.start(args.dir, websockets=not args.no_websockets,
                               require_certificate=args.require_certificate)
    except BrokerError as exc:
        print(f"hubsim: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with local:
        cert = local.device_cert(args.device)
        ports = ", ".join(map(str, local.broker.listeners()[1:]))
        print(f"hubsim: broker on {HOSTNAME} ({ports}); emulator on 127.0.0.1:{local.broker.plain_port}")
        print(f"hubsim: CA (server_verification_cert): {local.ca.cert_file}")
        connection, secret = local.connection_string(args.device), args.dir / f"{args.device}.connection"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(connection + "\n")
        print(f"hubsim: connection string: {connection}")
        print(f"hubsim: connection_string_file (mode 0600): {secret.resolve()}")
        print(f"hubsim: X.509 device cert: {cert.cert_file} key: {cert.key_file}", flush=True)
        local.hub.on_telemetry(lambda t: print(_line(t), flush=True))
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
