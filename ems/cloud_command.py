"""`ems cloud hub`: run the local stand-in for Azure IoT Hub and print what it receives (ems/hubsim)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register `ems cloud ...` on the `ems` parser's subparsers."""
    parser = sub.add_parser("cloud", help="the cloud link: a local IoT Hub to try it against")
    commands = parser.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND")
    hub = commands.add_parser("hub", help="run a local IoT Hub (Mosquitto with TLS and the hub emulator) and print "
                                          "every message it receives")
    hub.add_argument("--dir", type=Path, default=Path("var/hubsim"),
                     help="certificates, the broker's config and log, and the device's connection string file")
    hub.add_argument("--device", default="dev1", help="the device id to make a connection string for")
    hub.add_argument("--no-websockets", action="store_true", help="no WebSockets listener on 443")
    hub.add_argument("--require-certificate", action="store_true", help="devices must present an X.509 certificate")
    hub.set_defaults(handler=run_hub)


def run_hub(args: argparse.Namespace) -> int:
    from ems.hubsim.__main__ import main

    argv = ["--dir", str(args.dir), "--device", args.device]
    argv += ["--no-websockets"] * args.no_websockets + ["--require-certificate"] * args.require_certificate
    return main(argv)
