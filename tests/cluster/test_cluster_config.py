"""The `[cluster]` io_map section: checked at load, documented key by key, shipped files valid."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from runtime.clock import VirtualClock
from runtime.config import schema
from runtime.config.io_map import load_io_map, parse_io_map
from runtime.config.structure import ConfigErrors
from runtime.site import build_site

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "io_map.md").read_text()
SHIPPED = sorted((ROOT / "io_maps" / "sim_cluster").glob("*.toml"))

NODES = """
[[cluster.nodes]]
id = "a"
raft_port = 17001
pub_port = 17011
rep_port = 17021
[[cluster.nodes]]
id = "b"
raft_port = 17002
pub_port = 17012
rep_port = 17022
"""


def errors_of(cluster: str, extra: str = "") -> list[str]:
    text = f'[site]\nid = "t"\n{extra}\n[cluster]\n{cluster}\n{NODES}'
    with pytest.raises(ConfigErrors) as caught:
        parse_io_map(text, "t.toml")
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize("record", [schema.ClusterConfig, schema.ClusterNodeConfig], ids=lambda r: r.__name__)
def test_every_cluster_key_is_documented(record: type) -> None:
    missing = [f.name for f in attrs.fields(record) if f"`{f.name}`" not in DOC]
    assert missing == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_shipped_cluster_files_are_valid(path: Path) -> None:
    io_map = load_io_map(path)
    build_site(io_map, VirtualClock())  # programs bind to their tags
    assert [n.id for n in io_map.cluster.nodes] == ["node1", "node2", "node3"]


def test_a_node_must_be_one_of_the_nodes() -> None:
    assert any("node_id 'c' is not one of the nodes" in e for e in errors_of('enabled = true\nnode_id = "c"'))


def test_a_cluster_needs_a_voter() -> None:
    text = '[site]\nid = "t"\n[cluster]\nenabled = true\nnode_id = "a"\ninsecure_lab = true\n' + NODES.replace(
        "rep_port = 17021", "rep_port = 17021\nvoter = false").replace("rep_port = 17022", "rep_port = 17022\nvoter = false")
    with pytest.raises(ConfigErrors) as caught:
        parse_io_map(text, "t.toml")
    assert any("at least one node must be a Raft voter" in str(e) for e in caught.value.errors)


def test_a_member_that_does_not_vote_is_read_from_the_io_map() -> None:
    text = '[site]\nid = "t"\n[cluster]\nenabled = true\nnode_id = "b"\ninsecure_lab = true\n' + NODES.replace(
        "rep_port = 17022", "rep_port = 17022\nvoter = false")
    cluster = parse_io_map(text, "t.toml").cluster
    assert [n.id for n in cluster.voters] == ["a"] and not cluster.nodes[1].voter


def test_the_lease_must_end_before_the_next_election_can() -> None:
    found = errors_of('enabled = true\nnode_id = "a"\nlease_s = 0.3\nraft_min_timeout_s = 0.2')
    assert any("lease_s must be below raft_min_timeout_s" in e for e in found)


def test_a_plant_node_names_devices_of_its_file() -> None:
    nodes = NODES.replace('rep_port = 17021', 'rep_port = 17021\ndevices = ["inverter9"]')
    with pytest.raises(ConfigErrors) as caught:
        parse_io_map(f'[site]\nid = "t"\n[cluster]\n{nodes}', "t.toml")
    assert any("no device named 'inverter9'" in str(e) for e in caught.value.errors)


def test_a_plant_table_takes_the_keys_of_a_sim_device() -> None:
    text = f'[site]\nid = "t"\n[cluster]\n[cluster.plant]\nbattery = {{ cell_capacity_ahh = 1.0 }}\n{NODES}'
    with pytest.raises(ConfigErrors) as caught:
        parse_io_map(text, "t.toml")
    assert any("cluster.plant.battery.cell_capacity_ahh" in str(e) and "unknown key" in str(e)
               for e in caught.value.errors)


def test_cluster_programs_need_an_enabled_cluster() -> None:
    text = (ROOT / "io_maps" / "sim_cluster" / "node1.toml").read_text().replace("enabled = true", "enabled = false")
    with pytest.raises(ConfigErrors) as caught:
        build_site(parse_io_map(text, "node1.toml"), VirtualClock())
    assert any("cluster programs need [cluster] enabled = true" in str(e) for e in caught.value.errors)
