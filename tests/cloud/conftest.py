"""Real peers for the cloud link: Mosquitto with TLS and the hub emulator, standing in for Azure IoT Hub.

No real IoT Hub can run here, so `broker` (mosquitto on 127.0.0.1:8883 TLS and :443 WebSockets, the
SDK's fixed ports; see ems/hubsim/broker.py) and `hub` (ems/hubsim/hub.py, answering the IoT Hub
topics) play it for the real azure-iot-device SDK. Both are started once per session. The broker is
run from `mosquitto` (Debian package, installed by scripts/install-system-deps.sh through `make test`);
without it, or with its ports taken, the tests that use it fail with a one-line reason.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_kit import Running, site_io_map, started_site

from ems.hubsim.broker import Broker, BrokerError
from ems.hubsim.certs import CertificateAuthority
from ems.hubsim.hub import Hub
from ems.hubsim.local import LocalHub


@pytest.fixture(scope="session")
def hubsim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hubsim")


@pytest.fixture(scope="session")
def ca(hubsim_dir: Path) -> CertificateAuthority:
    """The CA the broker's certificate (localhost, 127.0.0.1) and the device certificates come from."""
    return CertificateAuthority.create(hubsim_dir / "certs")


@pytest.fixture(scope="session")
def other_ca(hubsim_dir: Path) -> CertificateAuthority:
    """A CA nobody here trusts: its certificates must be refused."""
    return CertificateAuthority.create(hubsim_dir / "other-certs", name="other-ca")


@pytest.fixture(scope="session")
def broker(hubsim_dir: Path, ca: CertificateAuthority) -> Iterator[Broker]:
    broker = Broker(directory=hubsim_dir / "broker", server=ca.server_cert(), ca_file=ca.cert_file, websockets=True)
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the local IoT Hub broker cannot start: {exc}", pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def hub(broker: Broker) -> Iterator[Hub]:
    hub = Hub(broker.plain_port, sender_of=broker.sender_of)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def local(hubsim_dir: Path, ca: CertificateAuthority, broker: Broker, hub: Hub) -> LocalHub:
    """The three together, for connection strings and device certificates."""
    return LocalHub(directory=hubsim_dir, ca=ca, broker=broker, hub=hub)


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    """A device id of this test alone: the broker keeps each device's session (the SDK asks it to), so a
    test reusing another's id could receive what was queued for it."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", request.node.name)[:40]
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def clients() -> Iterator[Callable[[Any], Any]]:
    """Register SDK clients to be shut down after the test (shutdown also stops their retry threads)."""
    made: list[Any] = []

    def keep(client: Any) -> Any:
        made.append(client)
        return client

    yield keep
    for client in made:
        client.shutdown()


@pytest.fixture
def device_certificates_required(broker: Broker, hub: Hub) -> Iterator[Broker]:
    """The broker restarted to demand a device certificate signed by the CA on its TLS listeners (one
    listener on 8883 cannot make it optional); restarted as it was afterwards."""
    broker.restart(require_certificate=True)
    hub.wait_connected()
    try:
        yield broker
    finally:
        broker.restart(require_certificate=False)
        hub.wait_connected()



@pytest.fixture
def running(tmp_path: Path, local: LocalHub, hub: Hub, device_id: str) -> Iterator[Running]:
    """The home site with [cloud] at the local hub, scanning in a thread of its own, connected."""
    data = tmp_path / "data"
    site = started_site(site_io_map(tmp_path, local, device_id), data)
    try:
        yield Running(site, hub, device_id, data)
    finally:
        site.stop()
