"""The runtime's own tags and their place in the reserved block of the register map.

Scan statistics (runtime/scan_stats.py) are declared without addresses; when the tag server
is enabled they get input registers from `runtime_base` upward, in the order of
`STATS_TAGS` (new statistics are appended there, so existing addresses never move). The
booleans get discrete inputs from the same base. (SCADA's heartbeat is the external-control
heartbeat `ext_heartbeat` of the site's mode manager, not a server register.)
"""

from __future__ import annotations

import attrs

from plc.tags import DType, ModbusAddress, ModbusTable, TagSpec
from runtime.config.schema import ModbusServerConfig
from runtime.scan_stats import stats_tag_specs


def runtime_tag_specs(cfg: ModbusServerConfig | None) -> list[TagSpec]:
    """The runtime's tags, addressed in the reserved block when the tag server is enabled."""
    specs = stats_tag_specs()
    if cfg is None or not cfg.enabled:
        return specs
    base = cfg.runtime_base
    next_address = {ModbusTable.INPUT: base, ModbusTable.DISCRETE: base}
    out = []
    for spec in specs:
        table = ModbusTable.DISCRETE if spec.dtype is DType.BOOL else ModbusTable.INPUT
        address = next_address[table]
        next_address[table] += 1 if spec.dtype is DType.BOOL else spec.words
        out.append(attrs.evolve(spec, modbus=ModbusAddress(table, address)))
    return out
