"""SunSpec model chains: the driver finds where a device puts its models (a SolarEdge's model 103
at 40069, not 40070; a map from 50000) and reads them there; a device lacking a model the
profile reads is refused naming what it has. pysunspec2, the SunSpec Alliance's own client,
scans the simulated inverter and finds the chain and sensible values."""

from __future__ import annotations

import pytest
from io_kit import GOOD, modbus_driver, point, profile, value_of, wait_until
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from ems.devsim.modbus_device import DeviceServer
from runtime.clock import RealClock
from runtime.io.driver import DriverSettings
from runtime.io.modbus.client import ModbusDriver
from runtime.io.modbus.config import ModbusConfig, ModbusOptions
from runtime.io.modbus.sunspec import Chain, ChainError, Model, discover, rebase

STANDARD = Chain(40000, (Model(1, 40002, 66), Model(103, 40070, 50), Model(123, 40122, 24), Model(124, 40148, 24)))
SOLAREDGE = Chain(40000, (Model(1, 40002, 65), Model(103, 40069, 50), Model(123, 40121, 24), Model(124, 40147, 24)))


def reader(chain: Chain, extra: dict[int, list[int]] | None = None):  # type: ignore[no-untyped-def]
    """A device map holding only the chain's marker and model headers."""
    words = {chain.base: 0x5375, chain.base + 1: 0x6E53}
    for m in chain.models:
        words[m.start], words[m.start + 1] = m.id, m.length
    end = chain.models[-1].start + 2 + chain.models[-1].length
    words[end], words[end + 1] = 0xFFFF, 0
    words.update({a: w for a, ws in (extra or {}).items() for a, w in ((a + i, w) for i, w in enumerate(ws))})

    def read(address: int, count: int) -> list[int]:
        if address not in words:
            raise ValueError(f"exception 2 at {address}")
        return [words.get(a, 0) for a in range(address, address + count)]
    return read


def test_the_chain_is_walked_from_the_marker_to_the_end() -> None:
    assert discover(reader(SOLAREDGE)) == SOLAREDGE


def test_a_map_that_starts_at_50000_is_found_there() -> None:
    at_50000 = Chain(50000, tuple(Model(m.id, m.start + 10000, m.length) for m in STANDARD.models))
    chain = discover(reader(at_50000))
    rebased = rebase(profile("sunspec_inverter_storage"), chain, ["p_ac"])
    assert rebased.registers["p_ac"].address == 40084 + 10000
    assert rebased.registers["sunspec_id"].address == 50000


def test_a_solaredge_layout_moves_model_103_and_after_by_one_register() -> None:
    prof = profile("sunspec_inverter_storage")
    rebased = rebase(prof, SOLAREDGE, ["p_ac", "out_w_rate_pct"])
    assert rebased.registers["inverter_model_id"].address == 40069
    assert rebased.registers["p_ac"].address == prof.registers["p_ac"].address - 1
    assert rebased.registers["out_w_rate_pct"].address == prof.registers["out_w_rate_pct"].address - 1
    assert rebased.registers["manufacturer"].address == 40004  # model 1 stays where it was
    assert "common_pad" not in rebased.registers  # past the end of a 65-register model 1
    assert rebased.registers["end_model_id"].address == 40173


def test_a_device_without_the_storage_model_is_refused_naming_what_it_has() -> None:
    no_storage = Chain(40000, STANDARD.models[:3])
    with pytest.raises(ChainError, match=r"^SunSpec model 124 is not in the device's chain; found 1 at 40002 \(66\), "
                                         r"103 at 40070 \(50\), 123 at 40122 \(24\)$"):
        rebase(profile("sunspec_inverter_storage"), no_storage, [])


def test_a_float_inverter_model_is_named_as_such() -> None:
    floats = Chain(40000, (Model(1, 40002, 66), Model(113, 40070, 60), Model(123, 40132, 24), Model(124, 40158, 24)))
    with pytest.raises(ChainError, match="the device has the float model 113; this profile reads 103"):
        rebase(profile("sunspec_inverter_storage"), floats, [])


def test_a_bound_register_past_its_models_end_refuses_the_device() -> None:
    with pytest.raises(ChainError, match="register.s. common_pad lie past the end of their model"):
        rebase(profile("sunspec_inverter_storage"), SOLAREDGE, ["common_pad"])


def test_no_marker_anywhere_is_not_a_sunspec_device() -> None:
    with pytest.raises(ChainError, match='no SunSpec marker "SunS" at 40000, 50000, 0'):
        discover(lambda address, count: [0] * count)


def test_the_driver_reads_a_solaredge_layout_where_the_device_has_it(sim_loop, run) -> None:  # type: ignore[no-untyped-def]
    prof = profile("sunspec_inverter_storage")
    device = DeviceServer(rebase(prof, SOLAREDGE, []))
    sim_loop.run(device.start())
    try:
        device.device.set("common_length", 65)
        device.device.set("w_sf", 0)
        device.device.set("p_ac", -1234.0)
        config = ModbusConfig(ModbusOptions(model="sunspec_inverter_storage", port=device.port, timeout_s=0.2,
                                            retries=0), prof)
        settings = DriverSettings(poll_period_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.5, hang_timeout_s=5.0)
        driver = run(ModbusDriver("inverter", [point("p", register="p_ac")], [], RealClock(), settings, config))
        wait_until(lambda: driver.latest[0][1] is GOOD, 5.0, "the inverter read")
        assert value_of(driver, "p") == pytest.approx(-1234.0)
        assert driver.profile.registers["p_ac"].address == 40083
    finally:
        sim_loop.run(device.stop())


def test_pysunspec2_scans_the_simulated_inverter_and_finds_the_chain_and_sensible_values(serve) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    inverter.device.set("w_sf", 0)
    inverter.device.set("p_ac", 2500.0)
    inverter.device.set("hz_sf", -2)
    inverter.device.set("frequency", 50.02)
    client = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=inverter.port, timeout=2)
    try:
        client.scan()
        assert {1, 103, 123, 124} <= {m for m in client.models if isinstance(m, int)}
        common = client.models[1][0]
        assert common.Mn.value == "SunSpec Sim" and common.SN.value == "SSIM0001"
        inverter_model = client.models[103][0]
        inverter_model.read()
        assert inverter_model.W.cvalue == pytest.approx(2500.0)
        assert inverter_model.Hz.cvalue == pytest.approx(50.02)
    finally:
        client.close()


def test_pysunspec2_reads_the_window_charge_status_energy_and_line_voltages_of_a_discharging_inverter(  # type: ignore[no-untyped-def]
        serve_plant, run) -> None:
    inverter = serve_plant("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.server.port, [],
                               [point("p_set", register="out_w_rate_pct", percent_of="w_cha_max")]))
    scan = lambda: driver.stage(tuple([2000.0]))  # noqa: C409 - a new tuple each scan, as the scan stages them
    wait_until(lambda: scan() or inverter.server.device.get("energy_ac") >= 2_500_001, 8.0, "energy counted")
    client = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=inverter.server.port, timeout=2)
    try:
        client.scan()
        storage = client.models[124][0]
        storage.read()
        assert storage.StorCtl_Mod.value == 3
        assert storage.OutWRte.cvalue == pytest.approx(40.0) and storage.InWRte.cvalue == pytest.approx(-40.0)
        assert storage.ChaSt.value == 3  # DISCHARGING
        assert 45.0 < storage.ChaState.cvalue < 55.0  # the home plant starts at 50 %
        inverter_model = client.models[103][0]
        inverter_model.read()
        assert inverter_model.W.cvalue == pytest.approx(2000.0, abs=20.0)
        assert 2_500_001 <= inverter_model.WH.cvalue < 2_500_010  # from the 2.5 MWh it started at
        phase = inverter_model.PhVphA.cvalue
        assert 220.0 < phase < 240.0
        assert inverter_model.PPVphAB.cvalue == pytest.approx(3 ** 0.5 * phase, rel=0.01)
        assert inverter_model.PPVphBC.cvalue == pytest.approx(3 ** 0.5 * inverter_model.PhVphB.cvalue, rel=0.01)
        assert inverter_model.PPVphCA.cvalue == pytest.approx(3 ** 0.5 * inverter_model.PhVphC.cvalue, rel=0.01)
    finally:
        client.close()
