"""State machine helper so mode logic in ``programs/`` reads like a table.

Example::

    sm = StateMachine(
        states=["init", "standby", "run", "fault"],
        initial="init",
        transitions=[
            Transition("init", "standby", guard=lambda c: c.inputs_valid, reason="inputs valid"),
            Transition("standby", "run", guard=lambda c: c.run_cmd, reason="run command"),
            Transition("run", "standby", guard=lambda c: not c.run_cmd, reason="stop command"),
            Transition("init", "fault", after_s=10.0, reason="init timeout"),
            Transition("*", "fault", guard=lambda c: c.estop, reason="emergency stop"),
        ],
        on_enter={"fault": lambda c: c.open_breaker()},
    )
    state = sm.step(ctx, dt)

Semantics of ``step(ctx, dt)``:

* Time is the machine's own: ``time_s`` and ``time_in_state_s`` accumulate
  ``dt`` (never a wall clock). As with the timers, the scan in which a state
  is entered is its time 0, so ``after_s=1.0`` with ``dt=0.1`` fires 10 scans
  after entry (same float-robust comparison as ``blocks.timers``).
* The first ``step`` enters the initial state (its ``on_enter`` runs) and then
  evaluates guards like any other step.
* A pending ``request`` is applied first. Otherwise the transitions leaving
  the current state are tried in table order; the first whose ``after_s`` has
  elapsed and whose guard holds fires. At most one transition per step.
* Firing runs ``on_exit[from](ctx)``, switches state, resets
  ``time_in_state_s`` to 0, appends ``TransitionRecord(time_s, from, to,
  reason)`` to ``log`` (a bounded deque), then runs ``on_enter[to](ctx)``.
* Source ``"*"`` means any state, at its position in the table; it never
  fires from its own target state (an e-stop rule does not re-enter "fault").
  A transition whose source equals its target is an explicit self-transition
  (exit and entry run, time in state restarts).

``request(target, reason)`` is for commands (HMI, remote): it validates that
``target`` exists and, with ``restrict_requests=True``, that the table has a
transition from the current state to it (guards aside). It is applied at the
next ``step``, before the guards; the latest request wins, and requesting
the current state cancels a pending request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from blocks import _checks
from blocks.timers import TIME_REL_TOL

ANY = "*"
_REACH = 1.0 - TIME_REL_TOL

Guard = Callable[[Any], bool]
Action = Callable[[Any], None]


def always(ctx: Any) -> bool:
    """Guard that always holds (for pure timeouts and unconditional steps)."""
    return True


@attrs.frozen
class Transition:
    """One row of the table: ``source -> target`` when ``guard(ctx)`` holds
    and the machine has been in ``source`` for at least ``after_s``."""

    source: str
    target: str
    guard: Guard = always
    reason: str = ""
    after_s: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("source", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Transition: {name} must be a non-empty string, got {value!r}")
        if self.target == ANY:
            raise ValueError(f"Transition: target must be a state, not {ANY!r}")
        if not callable(self.guard):
            raise ValueError(f"Transition: guard must be callable, got {self.guard!r}")
        if not isinstance(self.reason, str):
            raise ValueError(f"Transition: reason must be a string, got {self.reason!r}")
        if self.after_s is not None:
            after = _checks.non_negative("Transition", "after_s", self.after_s)
            object.__setattr__(self, "after_s", after)


@attrs.frozen
class TransitionRecord:
    """A logged transition, stamped with the machine's own time."""

    time_s: float
    source: str
    target: str
    reason: str


@attrs.define(eq=False)
class StateMachine:
    """Table-driven state machine with guarded transitions, entry/exit
    actions, time in state and a bounded transition log."""

    states: Sequence[str]
    initial: str
    transitions: Sequence[Transition] = ()
    on_enter: Mapping[str, Action] = attrs.field(factory=dict)
    on_exit: Mapping[str, Action] = attrs.field(factory=dict)
    log_size: int = 32
    restrict_requests: bool = False
    state: str = attrs.field(default="", init=False)
    previous: str | None = attrs.field(default=None, init=False)
    changed: bool = attrs.field(default=False, init=False)
    time_s: float = attrs.field(default=0.0, init=False)
    time_in_state_s: float = attrs.field(default=0.0, init=False)
    log: deque[TransitionRecord] = attrs.field(factory=deque, init=False)
    _table: dict[str, tuple[Transition, ...]] = attrs.field(factory=dict, init=False, repr=False)
    _pending: tuple[str, str] | None = attrs.field(default=None, init=False, repr=False)
    _started: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.states = _check_states(self.states)
        if self.initial not in self.states:
            raise ValueError(f"StateMachine: initial must be one of {list(self.states)}, "
                             f"got {self.initial!r}")
        self.transitions = tuple(self.transitions)
        for k, tr in enumerate(self.transitions):
            _check_transition(k, tr, self.states)
        self.on_enter = _check_actions("on_enter", self.on_enter, self.states)
        self.on_exit = _check_actions("on_exit", self.on_exit, self.states)
        self.log_size = _checks.integer("StateMachine", "log_size", self.log_size, minimum=1)
        self.restrict_requests = _checks.boolean(
            "StateMachine", "restrict_requests", self.restrict_requests)
        self._table = {s: _rows_from(s, self.transitions) for s in self.states}
        self.reset()

    def step(self, ctx: Any, dt: float) -> str:
        """Advance the machine one scan; return the current state."""
        self.changed = False
        if self._started:
            self.time_s += dt
            self.time_in_state_s += dt
        else:
            self._started = True
            enter = self.on_enter.get(self.state)
            if enter is not None:
                enter(ctx)
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._fire(pending[0], pending[1], ctx)
            return self.state
        tis = self.time_in_state_s
        for tr in self._table[self.state]:
            if tr.after_s is not None and tis < tr.after_s * _REACH:
                continue
            if tr.guard(ctx):
                self._fire(tr.target, tr.reason, ctx)
                break
        return self.state

    def request(self, target: str, reason: str = "request") -> bool:
        """Ask for ``target`` at the next step; return whether it was accepted.

        Unknown states raise ``ValueError``. With ``restrict_requests`` a
        target the table does not allow from the current state is refused
        (returns False, nothing pending).
        """
        if target not in self._table:
            raise ValueError(f"StateMachine: unknown state {target!r}, states are {list(self.states)}")
        if target == self.state:
            self._pending = None
            return True
        if self.restrict_requests and not self.allows(self.state, target):
            return False
        self._pending = (target, reason)
        return True

    def allows(self, source: str, target: str) -> bool:
        """Whether the table has a transition ``source -> target``."""
        return any(tr.target == target for tr in self._table.get(source, ()))

    def transitions_from(self, state: str) -> tuple[Transition, ...]:
        """The rows tried from ``state``, in table order (wildcards included)."""
        return self._table[state]

    @property
    def pending(self) -> str | None:
        """Target of the request waiting for the next step, if any."""
        return None if self._pending is None else self._pending[0]

    def reset(self) -> None:
        """Back to the initial state, time 0, empty log, not yet started."""
        self.state = self.initial
        self.previous = None
        self.changed = False
        self.time_s = 0.0
        self.time_in_state_s = 0.0
        self.log = deque(maxlen=self.log_size)
        self._pending = None
        self._started = False

    def _fire(self, target: str, reason: str, ctx: Any) -> None:
        source = self.state
        leave = self.on_exit.get(source)
        if leave is not None:
            leave(ctx)
        self.previous = source
        self.state = target
        self.time_in_state_s = 0.0
        self.changed = True
        self.log.append(TransitionRecord(self.time_s, source, target, reason))
        enter = self.on_enter.get(target)
        if enter is not None:
            enter(ctx)


def _check_states(states: Sequence[str]) -> tuple[str, ...]:
    if isinstance(states, str):
        raise ValueError(f"StateMachine: states must be a sequence of names, got {states!r}")
    out = tuple(states)
    if not out:
        raise ValueError("StateMachine: states must not be empty, got []")
    for s in out:
        if not isinstance(s, str) or not s or s == ANY:
            raise ValueError(f"StateMachine: state names must be non-empty strings other than "
                             f"{ANY!r}, got {s!r}")
    if len(set(out)) != len(out):
        dupes = sorted({s for s in out if out.count(s) > 1})
        raise ValueError(f"StateMachine: states must be unique, got duplicates {dupes}")
    return out


def _check_transition(k: int, tr: Transition, states: tuple[str, ...]) -> None:
    if not isinstance(tr, Transition):
        raise ValueError(f"StateMachine: transitions[{k}] must be a Transition, got {tr!r}")
    if tr.source != ANY and tr.source not in states:
        raise ValueError(f"StateMachine: transitions[{k}].source must be a state or {ANY!r}, "
                         f"got {tr.source!r}")
    if tr.target not in states:
        raise ValueError(f"StateMachine: transitions[{k}].target must be a state, got {tr.target!r}")


def _check_actions(name: str, actions: Mapping[str, Action], states: tuple[str, ...]) -> dict[str, Action]:
    out = dict(actions)
    for state, action in out.items():
        if state not in states:
            raise ValueError(f"StateMachine: {name} has unknown state {state!r}")
        if not callable(action):
            raise ValueError(f"StateMachine: {name}[{state!r}] must be callable, got {action!r}")
    return out


def _rows_from(state: str, transitions: tuple[Transition, ...]) -> tuple[Transition, ...]:
    return tuple(tr for tr in transitions
                 if tr.source == state or (tr.source == ANY and tr.target != state))
