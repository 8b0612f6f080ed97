"""A local stand-in for Azure IoT Hub: Mosquitto with TLS (the transport) and an emulator of the hub's topics.

`certs` makes a CA, the broker's certificate and device certificates; `broker` runs mosquitto on the
ports the Azure IoT device SDK uses (8883 TLS, 443 WebSockets); `hub` answers the IoT Hub topics
(telemetry, twin, direct methods). `python -m ems.hubsim` runs both and prints the telemetry received.
"""
