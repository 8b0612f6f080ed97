"""Protocol servers that mirror the process image: the Modbus tag server and the meter gateway.

`build_site` calls `runtime_tag_specs` for the runtime's own tags (addressed when the tag
server is enabled) and `build_mirrors` for the servers an io_map enables. Nothing here opens
a socket until a mirror's `start()`.
"""

from __future__ import annotations

import logging
from typing import Any

from runtime.config.lines import Path
from runtime.config.schema import MeterGatewayConfig, ModbusServerConfig
from runtime.image import ProcessImage
from runtime.servers.runtime_tags import runtime_tag_specs

__all__ = ["build_mirrors", "runtime_tag_specs"]

log = logging.getLogger(__name__)


def build_mirrors(modbus: ModbusServerConfig, meter: MeterGatewayConfig, image: ProcessImage,
                  engine: Any) -> tuple[list[Any], list[tuple[Path, str]]]:
    """The enabled servers for a site, and every configuration problem found on the way.

    The register map is built from every tag in the image (io_map tags, program tags and the
    runtime's), so address clashes between them are reported here.
    """
    mirrors: list[Any] = []
    problems: list[tuple[Path, str]] = []
    if modbus.enabled:
        from runtime.servers.modbus_server import ModbusTagServer
        from runtime.servers.register_map import MapError, RegisterMap, range_warnings

        try:
            register_map = RegisterMap.from_specs(image.specs(), modbus.word_order)
        except MapError as exc:
            problems += [(("modbus_server",), f"tag {name!r}: {message}") for name, message in exc.problems]
        else:
            for name, message in range_warnings(register_map):
                log.warning("modbus_server: tag %r: %s", name, message)
            mirrors.append(ModbusTagServer(modbus, image, register_map))
    if meter.enabled:
        from runtime.servers.meter_gateway import MeterGateway, check_quantities

        sources, found = check_quantities(meter, image)
        if not meter.quantities:
            found.append((("meter_gateway", "quantities"), "map at least one layout quantity to a tag "
                                                              "(w_total = \"grid_power_w\")"))
        if modbus.enabled and (meter.host, meter.port) == (modbus.host, modbus.port) and meter.port != 0:
            found.append((("meter_gateway", "port"), f"port {meter.port} is the tag server's; the gateway "
                                                         "needs its own"))
        if modbus.enabled and meter.serial and modbus.serial and meter.serial.port == modbus.serial.port:
            found.append((("meter_gateway", "serial", "port"), f"{meter.serial.port} is the tag server's "
                                                                   "serial port"))
        problems += found
        if not found:
            mirrors.append(MeterGateway(meter, image, sources))
    return mirrors, problems
