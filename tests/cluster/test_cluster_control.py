"""`cluster_control`: the site program (mode manager) for the whole cluster, on cluster tags."""

from __future__ import annotations

import attrs
import pytest
from node_kit import ScriptedLink, peer_state
from testkit.harness import memory

from plc.program import ScanContext
from plc.tags import DType
from programs.cluster.control import ClusterControl, ControlParams
from programs.enums import SiteState
from programs.site_control import SiteControl
from runtime.image import ProcessImage

CLUSTER_INPUTS = [
    memory("grid_power_w", initial=6000.0), memory("cluster_p_w", initial=0.0), memory("cluster_soc_pct", initial=50.0),
    memory("cluster_limit_charge_w", initial=15000.0), memory("cluster_limit_discharge_w", initial=15000.0),
    memory("cluster_site_state", DType.ENUM, int(SiteState.RUN), enum_labels=tuple(s.name.lower() for s in SiteState)),
]


def control(**params: object) -> tuple[ClusterControl, ProcessImage]:
    program = ClusterControl("cluster_control", ControlParams(battery_capacity_wh=3072.0, **params))
    image = ProcessImage(CLUSTER_INPUTS + program.declare())
    program.bind(image)
    return program, image


def test_it_holds_the_site_meter_with_the_cluster_as_its_battery() -> None:
    program, image = control(ramp_w_per_s=5000.0)
    ctx = ScanContext(period_s=0.1)
    for n in range(100):  # the plant: the cluster delivers what it was asked one scan ago
        ctx.scan, ctx.t_s, ctx.dt_s = n + 1, (n + 1) * 0.1, 0.1
        image.begin_scan(ctx.t_s)
        delivered = image["cluster_baseline_p_w"].value
        image["cluster_p_w"].set(delivered)
        image["grid_power_w"].set(6000.0 - delivered)
        program.execute(ctx)
    assert image["cluster_baseline_p_w"].value == pytest.approx(6000.0, abs=50.0)
    assert image["cluster_net_load_w"].value == pytest.approx(6000.0, abs=1.0)


def test_it_holds_0_w_while_no_node_is_eligible() -> None:
    program, image = control()
    image["cluster_site_state"].set(int(SiteState.INIT))
    ctx = ScanContext(period_s=0.1, t_s=0.1, dt_s=0.1, scan=1)
    program.execute(ctx)
    assert image["cluster_baseline_p_w"].value == 0.0 and image["cluster_control_hold"].value is True


def test_its_tags_are_the_site_programs_with_the_cluster_prefix_elsewhere_in_the_register_map() -> None:
    program, _ = control()
    site = {spec.name: spec for spec in SiteControl("control", ControlParams()).declare()}
    cluster = {spec.name: spec for spec in program.declare()}
    assert set(cluster) == {f"cluster_{name}" for name in site}
    site_addresses = {(s.modbus.table, s.modbus.address) for s in SiteControl("c", SiteControl.params_type()).declare()
                      if s.modbus is not None}
    assert all((s.modbus.table, s.modbus.address) not in site_addresses for s in cluster.values() if s.modbus)


def test_a_new_leader_carries_on_from_what_the_nodes_apply() -> None:
    program, image = control(ramp_w_per_s=1000.0)
    link = ScriptedLink("node1")
    program.attach_cluster(link)  # type: ignore[arg-type]
    for node, applied in (("node1", 2500.0), ("node2", 2000.0), ("node3", 1500.0)):
        link.membership.receive(attrs.evolve(peer_state(node, 50.0), setpoint_w=applied), 0.1)
    link.membership.update(0.1, {"node2": True, "node3": True})
    image["cluster_p_w"].set(6000.0)
    image["grid_power_w"].set(0.0)
    link.leader(term=4)
    link.refresh()  # as the cluster program does at the start of each scan
    ctx = ScanContext(period_s=0.1, t_s=0.2, dt_s=0.1, scan=1)
    program.execute(ctx)
    assert image["cluster_baseline_p_w"].value == pytest.approx(6000.0, abs=1.0)  # not ramping up from 0


def test_a_new_leader_counts_the_dead_leaders_inverter_until_it_reverts() -> None:
    program, image = control(ramp_w_per_s=1000.0)
    link = ScriptedLink("node2")
    program.attach_cluster(link)  # type: ignore[arg-type]
    dead = attrs.evolve(peer_state("node1", 50.0), p_w=2500.0, setpoint_w=2500.0, revert_s=5.0)
    link.membership.receive(dead, 0.1)  # the old leader's last report
    for node, applied in (("node2", 2000.0), ("node3", 1500.0)):
        link.membership.receive(attrs.evolve(peer_state(node, 50.0), setpoint_w=applied), 2.0)
    link.membership.update(2.0, {"node1": False, "node3": True})  # 1.9 s later: node1 offline, its inverter on
    image["cluster_p_w"].set(6000.0)
    image["grid_power_w"].set(0.0)
    link.leader(term=4)
    link.refresh()
    program.execute(ScanContext(period_s=0.1, t_s=2.0, dt_s=0.1, scan=1))
    assert image["cluster_baseline_p_w"].value == pytest.approx(6000.0, abs=1.0)  # 2000 + 1500 + the dead 2500
