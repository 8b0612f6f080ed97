"""The roster of members added and removed at run time: its entries checked field by field, its
file replaced atomically and refused with one line when it is damaged."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cluster.roster import RosterError, RosterFile, conflict, entry, members, parse
from runtime.config.schema import ClusterConfig, ClusterNodeConfig

KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # 40 characters of Z85
NODES = tuple(ClusterNodeConfig(id=f"node{i}", raft_port=15140 + i, pub_port=15150 + i, rep_port=15160 + i)
              for i in (1, 2, 3))
CFG = ClusterConfig(enabled=True, node_id="node1", nodes=NODES, insecure_lab=True)
NODE4 = {"host": "10.0.0.4", "raft_port": 15144, "pub_port": 15154, "rep_port": 15164, "public_key": KEY}


def test_an_entry_reads_back_as_a_member_that_does_not_vote() -> None:
    joined = parse("node4", NODE4, secure=True)
    assert joined.node.host == "10.0.0.4" and joined.node.pub_port == 15154 and not joined.node.voter
    assert joined.public_key == KEY.encode()
    assert entry(joined.node, joined.public_key) == {**NODE4, "voter": False}


def test_an_entry_may_make_a_raft_voter() -> None:
    joined = parse("node4", {**NODE4, "voter": True}, secure=True)
    assert joined.node.voter and entry(joined.node, joined.public_key)["voter"] is True


@pytest.mark.parametrize(("change", "message"), [
    ({"pub_port": "15154"}, "node4: pub_port must be an integer port, got '15154'"),
    ({"rep_port": 70000}, "node4: "),
    ({"public_key": "short"}, "node4: public_key must be its 40-character CURVE key"),
    ({"colour": "red"}, "node4: unknown field(s) colour"),
    ({"host": ""}, "node4: host must be the node's address"),
    ({"voter": "yes"}, "node4: voter must be true or false, got 'yes'"),
])
def test_a_bad_entry_is_refused_naming_its_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse("node4", {**NODE4, **change}, secure=True)


def test_members_are_the_io_maps_less_the_removed_plus_the_added() -> None:
    now = members(CFG, {"node4": NODE4, "node2": None})
    assert sorted(now) == ["node1", "node3", "node4"]


def test_an_id_or_a_port_in_use_cannot_join() -> None:
    assert conflict(CFG, {}, ClusterNodeConfig(id="node2", raft_port=1, pub_port=2, rep_port=3)) == \
        "node2 is a member already"
    taken = ClusterNodeConfig(id="node4", raft_port=15141, pub_port=2, rep_port=3)
    assert conflict(CFG, {}, taken) == "127.0.0.1:15141 is node1's"


def test_the_roster_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    file = RosterFile(tmp_path / "cluster_roster.json")
    assert file.load() == {}
    file.save({"node4": NODE4})
    file.save({"node4": None})
    assert file.load() == {"node4": None}
    assert [p.name for p in tmp_path.iterdir()] == ["cluster_roster.json"]  # no temporary left behind


def test_a_damaged_roster_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "cluster_roster.json"
    path.write_text('{"node4": ')
    with pytest.raises(RosterError, match=r"cluster_roster.json: cannot be read as the cluster roster"):
        RosterFile(path).load()
