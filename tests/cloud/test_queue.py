"""The cloud link's store-and-forward queue (runtime/cloud/queue.py): durable puts and acks,
oldest first, a byte cap that evicts spot telemetry before any event, ids the hub can
deduplicate on, and no acknowledged put lost to a SIGKILL."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.cloud.queue import DEFAULT_MAX_BYTES, WEEK_OF_SPOT, MessageQueue, QueueFileError

ROOT = Path(__file__).resolve().parents[2]
SPOT, EVENT = "SC_Spot_10s", "SC_state_event"


class Wall:
    """An injected wall clock."""

    def __init__(self, t: float = 1_780_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_put_is_in_the_queue_after_reopening(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite", wall=Wall()) as q:
        put = q.put(EVENT, b'{"state": "running"}', evictable=False).message
    with MessageQueue(tmp_path / "q.sqlite") as q:
        assert q.peek(10) == [put]
        assert (q.depth, q.queued_bytes) == (1, 20)


def test_peek_gives_the_oldest_first_across_kinds(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        q.put(SPOT, b"s1", True)
        q.put(EVENT, b"e1", False)
        q.put_many([(SPOT, b"s2", True), (EVENT, b"e2", False), (SPOT, b"s3", True)])
        assert [m.body for m in q.peek(10)] == [b"s1", b"e1", b"s2", b"e2", b"s3"]
        assert [m.body for m in q.peek(2)] == [b"s1", b"e1"]


def test_peek_after_gives_the_messages_behind_those_in_flight(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        seqs = [m.seq for m in q.put_many([(SPOT, b"%d" % i, True) for i in range(5)]).messages]
        assert [m.body for m in q.peek(2, after=seqs[1])] == [b"2", b"3"]


def test_ack_removes_exactly_the_acknowledged_messages(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        seqs = [m.seq for m in q.put_many([(SPOT, b"x" * 100, True) for _ in range(6)]).messages]
        assert q.ack([seqs[0], seqs[2], seqs[5]]) == 3
        assert q.ack([seqs[0], 9999]) == 0  # acknowledged twice, or never queued
        assert [m.seq for m in q.peek(10)] == [seqs[1], seqs[3], seqs[4]]
        assert (q.depth, q.queued_bytes) == (3, 300)
    with MessageQueue(tmp_path / "q.sqlite") as q:
        assert [m.seq for m in q.peek(10)] == [seqs[1], seqs[3], seqs[4]]


def test_an_ack_of_1200_messages_removes_them_all(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        seqs = [m.seq for m in q.put_many([(SPOT, b"x", True) for _ in range(1201)]).messages]
        assert q.ack(seqs[:1200]) == 1200
        assert [m.seq for m in q.peek(10)] == [seqs[1200]]


def test_the_byte_cap_evicts_the_oldest_spot_message_first_and_keeps_every_event(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite", max_bytes=1000) as q:
        q.put(EVENT, b"e" * 200, False)
        oldest = q.put(SPOT, b"1" * 300, True).message
        q.put(SPOT, b"2" * 300, True)
        q.put(EVENT, b"f" * 200, False)  # 1000 bytes: full, nothing evicted
        put = q.put(SPOT, b"3" * 250, True)
        assert [(e.seq, e.kind, e.size) for e in put.evicted] == [(oldest.seq, SPOT, 300)]
        assert (put.spot_evicted, put.events_evicted) == (1, 0)
        assert [m.body[:1] for m in q.peek(10)] == [b"e", b"2", b"f", b"3"]
        assert (q.depth, q.queued_bytes, q.evicted_spot, q.evicted_events) == (4, 950, 1, 0)


def test_events_are_evicted_only_when_no_spot_message_is_left_and_are_counted(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite", max_bytes=1000) as q:
        q.put_many([(EVENT, b"a" * 300, False), (SPOT, b"s" * 100, True), (EVENT, b"b" * 300, False),
                    (EVENT, b"c" * 300, False)])
        put = q.put(EVENT, b"d" * 300, False)  # 1300 bytes: the spot message (100) is not enough
        assert [(e.kind, e.size) for e in put.evicted] == [(SPOT, 100), (EVENT, 300)]
        assert [m.body[:1] for m in q.peek(10)] == [b"b", b"c", b"d"]
        assert (q.queued_bytes, q.evicted_spot, q.evicted_events) == (900, 1, 1)


def test_a_spot_message_put_into_a_full_queue_of_events_is_evicted_itself_not_an_event(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite", max_bytes=1000) as q:
        q.put_many([(EVENT, b"e" * 500, False), (EVENT, b"f" * 450, False)])
        put = q.put(SPOT, b"s" * 100, True)
        assert [e.seq for e in put.evicted] == [put.message.seq]
        assert [m.body[:1] for m in q.peek(10)] == [b"e", b"f"]
        assert (q.depth, q.queued_bytes, q.evicted_spot, q.evicted_events) == (2, 950, 1, 0)


def test_a_put_larger_than_the_cap_is_refused_and_nothing_is_queued(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite", max_bytes=1000) as q:
        q.put(SPOT, b"s" * 400, True)
        with pytest.raises(ValueError, match=r"2 message\(s\) of 1001 bytes do not fit in max_bytes 1000"):
            q.put_many([(EVENT, b"e" * 500, False), (SPOT, b"t" * 501, True)])
        assert [m.body[:1] for m in q.peek(10)] == [b"s"]
        assert (q.depth, q.queued_bytes, q.evicted_spot) == (1, 400, 0)


def test_eviction_counters_survive_a_reopen(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite", max_bytes=100) as q:
        q.put_many([(SPOT, b"s" * 40, True), (SPOT, b"t" * 40, True)])
        q.put(EVENT, b"e" * 90, False)  # evicts both spot messages
        q.put(EVENT, b"f" * 90, False)  # then the event
    with MessageQueue(tmp_path / "q.sqlite", max_bytes=100) as q:
        assert (q.evicted_spot, q.evicted_events, q.depth, q.queued_bytes) == (2, 1, 1, 90)


def test_a_week_of_2kB_spot_messages_fits_in_the_default_cap(tmp_path: Path) -> None:
    assert WEEK_OF_SPOT == 60_480
    body = b"x" * 2048
    started = time.perf_counter()
    with MessageQueue(tmp_path / "q.sqlite") as q:
        for _ in range(WEEK_OF_SPOT // 2016):  # 30 puts of 2016 messages (5.6 h of spot telemetry each)
            assert q.put_many([(SPOT, body, True)] * 2016).evicted == ()
        assert (q.depth, q.queued_bytes) == (60_480, 123_863_040)
        assert q.queued_bytes + 20_000 * 1024 < DEFAULT_MAX_BYTES  # and 20,000 events of 1 kB beside them
        assert q.evicted_spot == 0
    assert time.perf_counter() - started < 10.0


def test_message_id_is_stable_across_reopen_and_differs_for_a_new_file(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        message = q.put(EVENT, b"{}", False).message
    with MessageQueue(tmp_path / "q.sqlite") as q:
        (again,) = q.peek(1)
        assert again.message_id == message.message_id == f"{q.queue_id}-{message.seq}"
    (tmp_path / "q.sqlite").unlink()
    with MessageQueue(tmp_path / "q.sqlite") as q:
        fresh = q.put(EVENT, b"{}", False).message
        assert fresh.seq == message.seq
        assert fresh.message_id != message.message_id


def test_a_seq_acknowledged_is_never_given_again_even_the_newest(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        seqs = [m.seq for m in q.put_many([(SPOT, b"x", True)] * 3).messages]
        q.ack(seqs)
    with MessageQueue(tmp_path / "q.sqlite") as q:
        assert q.put(SPOT, b"y", True).message.seq == seqs[-1] + 1


def test_oldest_age_follows_the_injected_wall_clock(tmp_path: Path) -> None:
    wall = Wall(1_780_000_000.0)
    with MessageQueue(tmp_path / "q.sqlite", wall=wall) as q:
        assert q.oldest_age_s() is None
        first = q.put(SPOT, b"1", True).message
        wall.t += 30.0
        q.put(SPOT, b"2", True)
        wall.t += 12.5
        assert first.queued_at == 1_780_000_000.0
        assert q.oldest_age_s() == 42.5
        q.ack([first.seq])
        assert q.oldest_age_s() == 12.5
        wall.t -= 3600.0  # the clock was set back an hour
        assert q.oldest_age_s() == 0.0


def test_a_body_that_is_not_bytes_is_a_type_error(tmp_path: Path) -> None:
    with MessageQueue(tmp_path / "q.sqlite") as q:
        with pytest.raises(TypeError, match="SC_state_event message's body must be bytes \\(encoded JSON\\), not str"):
            q.put(EVENT, '{"state": 1}', False)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="kind is its type's name"):
            q.put("", b"{}", False)
        assert q.depth == 0


def test_a_file_that_is_not_sqlite_is_refused_with_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    path.write_bytes(b"this is a log file, not a database\n" * 200)
    with pytest.raises(QueueFileError) as caught:
        MessageQueue(path)
    assert str(caught.value) == (f"cloud queue {path}: not a SQLite database (file is not a database); "
                                 f"move it away or name another file")
    assert path.read_bytes() == b"this is a log file, not a database\n" * 200


def test_another_programs_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, message TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(QueueFileError, match=r"events.sqlite: a SQLite database of something else \(tables: events\), "
                                             r"not a cloud message queue"):
        MessageQueue(path)
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()


def test_a_queue_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    MessageQueue(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.close()
    with pytest.raises(QueueFileError, match="written in queue format 2 by a newer version; this one reads format 1"):
        MessageQueue(path)


def test_an_empty_file_becomes_a_queue(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    path.touch()
    with MessageQueue(path) as q:
        q.put(SPOT, b"1", True)
    with MessageQueue(path) as q:
        assert q.depth == 1


# --- a process killed while it puts ------------------------------------------------------------
CHILD = """
import sys
from pathlib import Path
from runtime.cloud.queue import MessageQueue

q = MessageQueue(Path(sys.argv[1]))
round_ = sys.argv[2]
acked = [m.seq for m in q.put_many([("SC_state_event", b"ack-" + round_.encode(), False)] * 3).messages]
q.ack(acked)
print("acked", *acked, flush=True)
i = 0
while True:
    kind, evictable = ("SC_Spot_10s", True) if i % 3 else ("SC_state_event", False)
    body = f"{round_}:{i}".encode()
    m = q.put(kind, body, evictable).message
    print("put", m.seq, body.decode(), flush=True)
    i += 1
"""
ROUNDS = 4
PUTS_BEFORE_KILL = 40


def killed_while_putting(path: Path, round_: int, rng: random.Random) -> tuple[list[int], list[tuple[int, bytes]]]:
    """Run the child until it has answered PUTS_BEFORE_KILL puts, SIGKILL it a random moment
    later; its acked seqs and every (seq, body) whose put had returned."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(round_)], cwd=ROOT,
                             stdout=subprocess.PIPE, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert child.stdout is not None
    lines: list[bytes] = []
    while sum(line.startswith(b"put ") for line in lines) < PUTS_BEFORE_KILL:
        line = child.stdout.readline()
        assert line, "the child ended before it was killed"
        lines.append(line)
    time.sleep(rng.uniform(0.0, 0.02))
    child.send_signal(signal.SIGKILL)
    lines += child.stdout.read().splitlines(keepends=True)  # answered before the kill, read after it
    assert child.wait(10) == -signal.SIGKILL
    acked = [int(seq) for seq in lines[0].split()[1:]]
    answered = [(int(seq), body) for _, seq, body in (line.split() for line in lines[1:] if line.endswith(b"\n"))]
    return acked, answered


def test_every_put_that_returned_before_a_sigkill_is_queued_after_it(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    rng = random.Random(7)
    answered: list[tuple[int, bytes]] = []
    acked: list[int] = []
    for round_ in range(ROUNDS):
        round_acked, round_answered = killed_while_putting(path, round_, rng)
        acked += round_acked
        answered += round_answered
        with MessageQueue(path) as q:
            queued = [(m.seq, m.body) for m in q.peek(100_000)]
        seqs = [seq for seq, _ in queued]
        assert seqs == sorted(set(seqs))  # in order, no seq twice
        assert len({body for _, body in queued}) == len(queued)  # no put stored twice
        known = set(answered)
        assert [row for row in queued if row in known] == answered  # every answered put, in order
        unanswered = [row for row in queued if row not in known]
        assert len(unanswered) <= round_ + 1  # at most the put in flight at each kill
        assert not set(acked) & set(seqs)  # acked before the kill: gone
    assert len(answered) >= ROUNDS * PUTS_BEFORE_KILL
