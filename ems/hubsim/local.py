"""The whole local stand-in for Azure IoT Hub in one object: certificates, mosquitto, the hub emulator.

    with LocalHub.start(Path("var/hubsim")) as local:
        client = IoTHubDeviceClient.create_from_connection_string(
            local.connection_string("dev1"), server_verification_cert=local.ca.cert_pem)
        ...
        local.hub.wait_telemetry("dev1")
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Self

import attrs

from ems.hubsim.broker import Broker
from ems.hubsim.certs import CertificateAuthority, KeyPair
from ems.hubsim.hub import Hub

HOSTNAME = "localhost"  # the name in the server certificate, and the one the devices connect to


@attrs.define
class LocalHub:
    directory: Path
    ca: CertificateAuthority
    broker: Broker
    hub: Hub

    @classmethod
    def start(cls, directory: Path, websockets: bool = True, require_certificate: bool = False) -> LocalHub:
        """Make the certificates in `directory`, start mosquitto and connect the emulator to it."""
        directory = directory.resolve()
        ca = CertificateAuthority.create(directory / "certs")
        broker = Broker(directory=directory / "broker", server=ca.server_cert(), ca_file=ca.cert_file,
                        websockets=websockets, require_certificate=require_certificate)
        broker.start()
        hub = Hub(broker.plain_port, sender_of=broker.sender_of)
        try:
            hub.start()
        except BaseException:
            broker.stop()
            raise
        return cls(directory=directory, ca=ca, broker=broker, hub=hub)

    def stop(self) -> None:
        self.hub.stop()
        self.broker.stop()

    def connection_string(self, device_id: str, shared_access_key: str | None = None) -> str:
        """A device connection string for this hub (the key is not checked: any base64 will do)."""
        key = shared_access_key or base64.b64encode(os.urandom(32)).decode()
        return f"HostName={HOSTNAME};DeviceId={device_id};SharedAccessKey={key}"

    def device_cert(self, device_id: str) -> KeyPair:
        """A device certificate (CN = device_id) signed by this hub's CA, for X.509 authentication."""
        return self.ca.device_cert(device_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
