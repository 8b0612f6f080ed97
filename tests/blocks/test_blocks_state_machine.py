"""StateMachine: table-driven mode logic."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from blocks import StateMachine, Transition, TransitionRecord

DT = 0.1


def bess_machine(events: list | None = None, **kwargs) -> StateMachine:
    """A small BESS mode table as a program would write it."""
    events = events if events is not None else []
    return StateMachine(
        states=["init", "standby", "run", "fault"],
        initial="init",
        transitions=[
            Transition("init", "standby", guard=lambda c: c.inputs_valid, reason="inputs valid"),
            Transition("init", "fault", after_s=1.0, reason="init timeout"),
            Transition("standby", "run", guard=lambda c: c.run_cmd, reason="run command"),
            Transition("run", "standby", guard=lambda c: not c.run_cmd, reason="stop command"),
            Transition("*", "fault", guard=lambda c: c.estop, reason="emergency stop"),
            Transition("fault", "init", guard=lambda c: c.ack and not c.estop, reason="fault acknowledged"),
        ],
        on_enter={s: (lambda c, s=s: events.append(("enter", s))) for s in ("init", "standby", "run", "fault")},
        on_exit={s: (lambda c, s=s: events.append(("exit", s))) for s in ("init", "standby", "run", "fault")},
        **kwargs,
    )


def ctx(**overrides) -> SimpleNamespace:
    base = {"inputs_valid": False, "run_cmd": False, "estop": False, "ack": False}
    return SimpleNamespace(**{**base, **overrides})


def test_first_step_enters_the_initial_state():
    events: list = []
    sm = bess_machine(events)
    assert sm.state == "init" and events == []
    sm.step(ctx(), DT)
    assert events == [("enter", "init")]
    assert sm.time_s == 0.0 and sm.time_in_state_s == 0.0


def test_guard_that_holds_fires_its_transition_with_exit_then_entry():
    events: list = []
    sm = bess_machine(events)
    assert sm.step(ctx(inputs_valid=True), DT) == "standby"
    assert events == [("enter", "init"), ("exit", "init"), ("enter", "standby")]
    assert sm.changed is True and sm.previous == "init"


def test_one_transition_per_step():
    sm = bess_machine()
    c = ctx(inputs_valid=True, run_cmd=True)
    assert sm.step(c, DT) == "standby"
    assert sm.step(c, DT) == "run"


def test_guards_are_tried_in_table_order():
    sm = bess_machine()
    sm.step(ctx(inputs_valid=True), DT)
    # both "run command" and the wildcard e-stop hold: the earlier row wins
    assert sm.step(ctx(run_cmd=True, estop=True), DT) == "run"
    assert sm.step(ctx(run_cmd=True, estop=True), DT) == "fault"


def test_wildcard_source_fires_from_every_other_state_but_not_its_target():
    sm = bess_machine()
    assert sm.step(ctx(estop=True), DT) == "fault"
    sm.step(ctx(estop=True), DT)
    assert sm.state == "fault"
    assert sm.time_in_state_s == pytest.approx(DT)  # not re-entered
    assert len(sm.log) == 1


def test_time_in_state_accumulates_dt_from_zero_at_entry():
    sm = bess_machine()
    sm.step(ctx(), DT)
    for _ in range(5):
        sm.step(ctx(), DT)
    assert sm.time_in_state_s == pytest.approx(0.5)
    assert sm.time_s == pytest.approx(0.5)


def test_after_s_fires_exactly_after_the_time_like_a_ton():
    sm = bess_machine()
    states = [sm.step(ctx(), DT) for _ in range(12)]
    # entry scan is time 0; 1.0 s is reached 10 scans later (0.1 * 10 < 1.0 in floats)
    assert states.index("fault") == 10
    assert sm.log[-1].reason == "init timeout"


def test_log_records_time_states_and_reason():
    sm = bess_machine()
    sm.step(ctx(), DT)
    sm.step(ctx(inputs_valid=True), DT)
    sm.step(ctx(run_cmd=True), DT)
    assert list(sm.log) == [
        TransitionRecord(pytest.approx(0.1), "init", "standby", "inputs valid"),
        TransitionRecord(pytest.approx(0.2), "standby", "run", "run command"),
    ]


def test_log_is_bounded_to_the_last_transitions():
    sm = bess_machine(log_size=3)
    sm.step(ctx(inputs_valid=True), DT)
    for _ in range(5):
        sm.step(ctx(run_cmd=True), DT)
        sm.step(ctx(run_cmd=False), DT)
    assert len(sm.log) == 3
    assert [r.target for r in sm.log] == ["standby", "run", "standby"]


def test_request_is_applied_at_the_next_step_before_guards():
    events: list = []
    sm = bess_machine(events)
    sm.step(ctx(), DT)
    assert sm.request("run", "operator start") is True
    assert sm.state == "init" and sm.pending == "run"
    assert sm.step(ctx(estop=True), DT) == "run"  # request beats the guards once
    assert sm.log[-1].reason == "operator start"
    assert events[-2:] == [("exit", "init"), ("enter", "run")]


def test_request_for_an_unknown_state_raises():
    with pytest.raises(ValueError, match=r"^StateMachine: unknown state 'runn'"):
        bess_machine().request("runn")


def test_restricted_requests_must_follow_the_table():
    sm = bess_machine(restrict_requests=True)
    sm.step(ctx(), DT)
    assert sm.request("run") is False          # no init -> run row
    assert sm.pending is None
    assert sm.request("standby") is True       # init -> standby exists (guard aside)
    assert sm.step(ctx(), DT) == "standby"


def test_request_for_the_current_state_cancels_a_pending_one():
    sm = bess_machine()
    sm.step(ctx(), DT)
    sm.request("run")
    assert sm.request("init") is True
    assert sm.pending is None
    sm.step(ctx(), DT)
    assert sm.state == "init" and not sm.changed


def test_explicit_self_transition_restarts_time_in_state():
    sm = StateMachine(
        states=["a"], initial="a",
        transitions=[Transition("a", "a", after_s=0.3, reason="tick")],
    )
    states = [sm.step(None, DT) for _ in range(8)]
    assert states == ["a"] * 8
    assert [r.time_s for r in sm.log] == pytest.approx([0.3, 0.6])


def test_reset_returns_to_the_initial_state_with_an_empty_log():
    sm = bess_machine()
    sm.step(ctx(estop=True), DT)
    sm.reset()
    assert (sm.state, len(sm.log), sm.time_s) == ("init", 0, 0.0)


def test_table_rows_are_visible_per_state():
    sm = bess_machine()
    assert [t.target for t in sm.transitions_from("run")] == ["standby", "fault"]
    assert sm.allows("fault", "init") and not sm.allows("fault", "run")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"states": [], "initial": "a"}, r"^StateMachine: states must not be empty"),
    ({"states": ["a", "a"], "initial": "a"}, r"^StateMachine: states must be unique, got duplicates \['a'\]$"),
    ({"states": ["a"], "initial": "b"}, r"^StateMachine: initial must be one of \['a'\], got 'b'$"),
    ({"states": "ab", "initial": "a"}, r"^StateMachine: states must be a sequence of names"),
    ({"states": ["a"], "initial": "a", "transitions": [Transition("a", "x")]},
     r"^StateMachine: transitions\[0\].target must be a state, got 'x'$"),
    ({"states": ["a"], "initial": "a", "transitions": [Transition("x", "a")]},
     r"^StateMachine: transitions\[0\].source must be a state or '\*', got 'x'$"),
    ({"states": ["a"], "initial": "a", "on_enter": {"b": print}},
     r"^StateMachine: on_enter has unknown state 'b'$"),
    ({"states": ["a"], "initial": "a", "on_exit": {"a": 3}},
     r"^StateMachine: on_exit\['a'\] must be callable, got 3$"),
    ({"states": ["a"], "initial": "a", "log_size": 0}, r"^StateMachine: log_size must be >= 1, got 0$"),
])
def test_invalid_tables_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StateMachine(**kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"source": "a", "target": "*"}, r"^Transition: target must be a state, not '\*'$"),
    ({"source": "", "target": "a"}, r"^Transition: source must be a non-empty string, got ''$"),
    ({"source": "a", "target": "b", "guard": True}, r"^Transition: guard must be callable, got True$"),
    ({"source": "a", "target": "b", "after_s": -1.0}, r"^Transition: after_s must be >= 0, got -1.0$"),
])
def test_invalid_transitions_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Transition(**kwargs)
