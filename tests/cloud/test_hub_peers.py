"""The real azure-iot-device SDK against the local stand-in for Azure IoT Hub (tests/cloud/conftest.py).

In every test here Mosquitto (TLS on 127.0.0.1:8883, WebSockets on :443) and the hub emulator stand
in for Azure IoT Hub: no real hub can run on this machine. The client is the SDK's own
IoTHubDeviceClient, unchanged, so what passes here is what the cloud link can build on; the last tests
pin the SDK behaviours it must handle itself (a message sent while disconnected is lost).
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.iot.device import X509, IoTHubDeviceClient, Message, MethodRequest, MethodResponse
from azure.iot.device.exceptions import ClientError, ConnectionFailedError
from testkit.waiting import wait_until

from ems.hubsim.broker import Broker, BrokerError
from ems.hubsim.certs import CertificateAuthority
from ems.hubsim.hub import Hub, decode_telemetry_topic, merge_patch
from ems.hubsim.local import HOSTNAME, LocalHub

pytestmark = [
    pytest.mark.timeout(60),
    # the SDK's own TLS setup (ssl.PROTOCOL_TLSv1_2); nothing the cloud link can change
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLSv1_2 is deprecated:DeprecationWarning"),
]

CALL_TIMEOUT_S = 10.0  # SDK calls block without a bound of their own (get_twin can wait forever)


def within(call: Callable[[], Any], timeout_s: float = CALL_TIMEOUT_S) -> Any:
    """Run a blocking SDK call with a deadline: a hang fails the test instead of stalling it."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"SDK call did not return within {timeout_s} s: {call}") from None
    finally:
        pool.shutdown(wait=False)


def telemetry_message(device_id: str) -> Message:
    message = Message(json.dumps({"device": device_id, "soc_pct": 61.5}), message_id=f"{device_id}-1",
                      content_type="application/json", content_encoding="utf-8")
    message.custom_properties["site"] = "home a+b/c"  # '+', '/' and ' ' survive the topic's URL encoding
    return message


def assert_recorded(hub: Hub, device_id: str) -> None:
    """The emulator got `telemetry_message(device_id)` with every property decoded."""
    [got] = hub.wait_telemetry(device_id)
    assert got.message_id == f"{device_id}-1"
    assert got.content_type == "application/json"
    assert got.content_encoding == "utf-8"
    assert got.custom_properties == {"site": "home a+b/c"}
    assert got.json() == {"device": device_id, "soc_pct": 61.5}


def sas_client(local: LocalHub, device_id: str, **options: Any) -> IoTHubDeviceClient:
    return IoTHubDeviceClient.create_from_connection_string(
        local.connection_string(device_id), server_verification_cert=local.ca.cert_pem, **options)


# ---- telemetry over both transports and both kinds of authentication


def test_sas_over_mqtt_tls_sends_telemetry_with_its_properties(local: LocalHub, device_id: str, clients: Any) -> None:
    """SAS connection string, MQTT over TLS (8883). Stand-in for Azure IoT Hub: Mosquitto + emulator."""
    client = clients(sas_client(local, device_id))
    within(client.connect)
    within(lambda: client.send_message(telemetry_message(device_id)))
    assert_recorded(local.hub, device_id)


def test_x509_device_certificate_over_tls_sends_telemetry(local: LocalHub, device_id: str, clients: Any,
                                                          device_certificates_required: Broker) -> None:
    """X.509 device certificate, MQTT over TLS, the broker demanding a certificate from the CA.
    Stand-in for Azure IoT Hub: Mosquitto + emulator."""
    cert = local.device_cert(device_id)
    client = clients(IoTHubDeviceClient.create_from_x509_certificate(
        X509(str(cert.cert_file), str(cert.key_file)), hostname=HOSTNAME, device_id=device_id,
        server_verification_cert=local.ca.cert_pem))
    within(client.connect)
    within(lambda: client.send_message(telemetry_message(device_id)))
    assert_recorded(local.hub, device_id)


def test_a_device_certificate_from_another_ca_is_refused(local: LocalHub, device_id: str, clients: Any,
                                                        other_ca: CertificateAuthority,
                                                        device_certificates_required: Broker) -> None:
    """The broker checks device certificates (so the X.509 test above proves something).
    Stand-in for Azure IoT Hub: Mosquitto + emulator."""
    cert = other_ca.device_cert(device_id)
    client = clients(IoTHubDeviceClient.create_from_x509_certificate(
        X509(str(cert.cert_file), str(cert.key_file)), hostname=HOSTNAME, device_id=device_id,
        server_verification_cert=local.ca.cert_pem, connection_retry=False))
    with pytest.raises(ConnectionFailedError):
        within(client.connect)
    assert not client.connected


def test_websockets_over_tls_sends_telemetry_with_its_properties(local: LocalHub, device_id: str,
                                                                 clients: Any) -> None:
    """SAS, MQTT over WebSockets over TLS (443, path /$iothub/websocket). Stand-in for Azure IoT Hub."""
    client = clients(sas_client(local, device_id, websockets=True))
    within(client.connect)
    within(lambda: client.send_message(telemetry_message(device_id)))
    assert_recorded(local.hub, device_id)


def test_a_server_certificate_from_another_ca_fails_the_connection(local: LocalHub, device_id: str, clients: Any,
                                                                   other_ca: CertificateAuthority) -> None:
    """The SDK verifies the server: trusting another CA, connect raises a TLS error at once, and nothing
    is sent. Stand-in for Azure IoT Hub: Mosquitto + emulator."""
    client = clients(IoTHubDeviceClient.create_from_connection_string(
        local.connection_string(device_id), server_verification_cert=other_ca.cert_pem, connection_retry=False))
    with pytest.raises(ClientError, match="TLS") as raised:
        within(client.connect)
    assert type(raised.value.__cause__).__name__ == "TlsExchangeAuthError"
    assert not client.connected
    assert local.hub.telemetry(device_id) == []


# ---- twin and direct methods


def test_twin_get_reported_patch_and_desired_patch(local: LocalHub, device_id: str, clients: Any) -> None:
    """get_twin returns what the hub holds, a reported patch updates it, a desired patch reaches the
    handler. Stand-in for Azure IoT Hub: Mosquitto + emulator (one twin per device, by the broker's log)."""
    hub = local.hub
    hub.set_twin(device_id, desired={"export_limit_kw": 5.0, "mode": "auto"})
    client = clients(sas_client(local, device_id))
    within(client.connect)

    twin = within(client.get_twin)
    assert twin == hub.twin(device_id)
    assert twin["desired"]["export_limit_kw"] == 5.0
    assert twin["desired"]["$version"] == 2

    within(lambda: client.patch_twin_reported_properties({"soc_pct": 61.5, "firmware": {"ems": "0.1.0"}}))
    reported = hub.twin(device_id)["reported"]
    assert reported["soc_pct"] == 61.5 and reported["firmware"] == {"ems": "0.1.0"}
    within(lambda: client.patch_twin_reported_properties({"firmware": None}))  # null deletes
    assert "firmware" not in hub.twin(device_id)["reported"]
    assert hub.twin(device_id)["reported"]["$version"] == 3

    patches: list[dict[str, Any]] = []
    client.on_twin_desired_properties_patch_received = patches.append  # subscribes before it returns
    assert local.broker.wait_subscribed(device_id, "$iothub/twin/PATCH/properties/desired/#")
    version = hub.patch_desired(device_id, {"export_limit_kw": 3.5})
    wait_until(lambda: patches, what="the desired patch at the device's handler")
    assert patches == [{"export_limit_kw": 3.5, "$version": version}]
    assert within(client.get_twin)["desired"] == {"export_limit_kw": 3.5, "mode": "auto", "$version": version}
    assert hub.errors == []


def test_direct_methods_reach_the_handler_and_its_answer_comes_back(local: LocalHub, device_id: str,
                                                                    clients: Any) -> None:
    """A method invoked by the hub reaches on_method_request_received; the device's MethodResponse
    (200, and 400 for a method it does not know) returns to the hub. Stand-in for Azure IoT Hub."""
    client = clients(sas_client(local, device_id))
    requests: list[MethodRequest] = []

    def answer(request: MethodRequest) -> None:
        requests.append(request)
        if request.name == "set_power":
            response = MethodResponse.create_from_method_request(request, 200, {"accepted": request.payload})
        else:
            response = MethodResponse.create_from_method_request(request, 400, {"error": f"no {request.name}"})
        client.send_method_response(response)

    client.on_method_request_received = answer  # connects, and subscribes before it returns
    ok = local.hub.invoke_method(device_id, "set_power", {"kw": -2.5}, timeout_s=CALL_TIMEOUT_S)
    assert (ok.status, ok.payload, ok.device_id) == (200, {"accepted": {"kw": -2.5}}, device_id)
    refused = local.hub.invoke_method(device_id, "reboot", None, timeout_s=CALL_TIMEOUT_S)
    assert (refused.status, refused.payload) == (400, {"error": "no reboot"})
    assert [(r.name, r.payload) for r in requests] == [("set_power", {"kw": -2.5}), ("reboot", None)]


# ---- what the cloud link must handle itself


def test_a_message_sent_while_disconnected_raises_and_is_lost_then_the_client_reconnects(
        local: LocalHub, device_id: str, clients: Any) -> None:
    """The SDK reconnects by itself, but send_message while the hub is away raises at once and the
    message is gone: the cloud link needs its own store-and-forward queue. After the reconnect the
    device's subscriptions still work (the broker kept its session; the SDK does not resubscribe).
    Stand-in for Azure IoT Hub: Mosquitto + emulator, the broker stopped and started."""
    broker, hub = local.broker, local.hub
    client = clients(sas_client(local, device_id, connection_retry_interval=1))
    requests: list[str] = []

    def answer(request: MethodRequest) -> None:
        requests.append(request.name)
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, None))

    client.on_method_request_received = answer
    within(lambda: client.send_message("before"))
    hub.wait_telemetry(device_id, 1)
    try:
        broker.stop()
        wait_until(lambda: not client.connected, what="the client to see the broker gone")
        with pytest.raises(ConnectionFailedError):
            within(lambda: client.send_message("while down"))
    finally:
        broker.start()
        hub.wait_connected()
    wait_until(lambda: client.connected, timeout_s=15, what="the SDK to reconnect by itself")
    within(lambda: client.send_message("after"))
    wait_until(lambda: len(hub.telemetry(device_id)) == 2)
    assert [t.payload for t in hub.telemetry(device_id)] == [b"before", b"after"]
    assert hub.invoke_method(device_id, "ping", timeout_s=CALL_TIMEOUT_S).status == 200
    assert requests == ["ping"]


# ---- the emulator and the broker launcher themselves


def test_the_broker_says_which_port_is_taken(hubsim_dir: Any, ca: CertificateAuthority, broker: Broker) -> None:
    second = Broker(directory=hubsim_dir / "second", server=ca.server_cert("second"), ca_file=ca.cert_file)
    with pytest.raises(BrokerError, match=r"127\.0\.0\.1:.*8883.*already in use"):
        second.start()
    assert not second.running


def test_the_broker_log_names_who_subscribed_and_who_published(broker: Broker, hub: Hub) -> None:
    """The emulator's SUBSCRIBE has several filters in one packet: each is seen."""
    for topic_filter in ("devices/+/messages/events/#", "$iothub/twin/GET/#", "$iothub/methods/res/#"):
        assert broker.wait_subscribed(hub.client_id, topic_filter), topic_filter
    hub.patch_desired("nobody", {"x": 1})
    assert broker.sender_of("$iothub/twin/PATCH/properties/desired/?$version=2") == hub.client_id
    assert broker.sender_of("never/published", timeout_s=0.05) is None


def test_a_missing_mosquitto_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                               ca: CertificateAuthority) -> None:
    import ems.hubsim.broker as broker_module

    monkeypatch.setattr(broker_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(broker_module.os, "access", lambda path, mode: False)
    with pytest.raises(BrokerError, match="mosquitto not found.*install-system-deps") as raised:
        Broker(directory=tmp_path, server=ca.server_cert("unused"), ca_file=ca.cert_file).start()
    assert "\n" not in str(raised.value)


def test_telemetry_topic_properties_decode_as_the_sdk_encodes_them() -> None:
    got = decode_telemetry_topic(
        "devices/dev1/modules/m1/messages/events/%24.mid=a%2Fb&%24.ct=application%2Fjson&flag&k%20x=1+2&empty=",
        b"{}")
    assert got is not None
    assert (got.device_id, got.module_id, got.message_id, got.content_type) == ("dev1", "m1", "a/b", "application/json")
    assert got.custom_properties == {"flag": None, "k x": "1+2", "empty": ""}
    assert decode_telemetry_topic("$iothub/twin/GET/?$rid=1", b"") is None


def test_merge_patch_merges_nested_objects_and_null_deletes() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": 3}
    merge_patch(target, {"a": {"b": None, "e": [1]}, "d": None, "f": {"g": 1}})
    assert target == {"a": {"c": 2, "e": [1]}, "f": {"g": 1}}
