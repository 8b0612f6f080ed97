"""Site state machine: Init, Run, Idle, Maintenance, Error, Reboot, Restart.

Commands arrive through the `site_state_cmd` tag (Modbus, cloud, HMI write it) and are consumed
here. Every transition has a reason, kept in `site_state_reason` and in the machine's log.
Reboot and Restart are states the runtime acts on (it stops and exits so the service manager
restarts the process or the machine); the program only decides. They are entered only from a
state that carries no power by design (Init, Idle, Maintenance, Error): one register write must
not take a unit down while it runs at power, so from Run the command is refused (logged) and
an operator sends Idle first.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from attrs import validators as v

from blocks import StateMachine, Transition
from blocks.state_machine import Guard
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, TagSpec
from programs.enums import SiteState, StateCommand
from programs.tagdefs import Layout, param, status, text

log = logging.getLogger(__name__)

REASON_LENGTH = 40
# the states Reboot and Restart may be entered from (Run is not among them)
RESTARTABLE = (SiteState.INIT, SiteState.IDLE, SiteState.MAINTENANCE, SiteState.ERROR)
S = {state: state.name.lower() for state in SiteState}
BY_NAME = {name: state for state, name in S.items()}


@attrs.frozen
class Params:
    required_inputs: tuple[str, ...] = ("soc_pct", "grid_power_w", "inverter_p_w")
    # required to start, but whose loss does not take a running site back to Init: without the
    # meter site_control holds the baseline at 0 W (NO_METER) while the grid services, on the
    # inverter's frequency, go on; a 1.5 s meter dropout during a frequency event must not
    # withdraw the reserve for the Init -> Run restart
    run_without: tuple[str, ...] = ("grid_power_w",)
    inputs_valid_for_s: float = attrs.field(default=1.0, validator=v.ge(0))
    auto_sleep: bool = True
    modbus_holding_base: int | None = 1000
    modbus_input_base: int | None = 1000

    def __attrs_post_init__(self) -> None:
        stray = [name for name in self.run_without if name not in self.required_inputs]
        if stray:
            raise ValueError(f"run_without names {', '.join(stray)}, not among the required_inputs "
                             f"{list(self.required_inputs)}")


class SiteStateProgram(Program):
    kind = "site_state"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params
        self.command = StateCommand.NONE
        self.inputs_ok = False
        self.inputs_ok_s = 0.0
        self.running_inputs_ok = False
        self.critical = False
        self.sleep_request = False
        self.idle_commanded = False
        self.reset_requested = False  # a RESET seen in Error: leave once the critical errors have cleared
        self.machine = StateMachine(states=[S[s] for s in SiteState], initial=S[SiteState.INIT],
                                    transitions=self._table(), on_enter={S[SiteState.IDLE]: self._enter_idle},
                                    on_exit={S[SiteState.ERROR]: self._exit_error})

    def _table(self) -> list[Transition]:
        init, run, idle, maint, error, reboot, restart = (S[s] for s in SiteState)
        cmd = self._cmd
        restartable = [S[state] for state in RESTARTABLE]
        return [
            Transition("*", error, lambda c: c.critical, "critical error"),
            *(Transition(src, reboot, cmd(StateCommand.REBOOT), "reboot command") for src in restartable),
            *(Transition(src, restart, cmd(StateCommand.RESTART), "restart command") for src in restartable),
            Transition(error, init, lambda c: c.reset_requested and not c.critical, "errors acknowledged"),
            Transition(init, maint, cmd(StateCommand.MAINTENANCE), "maintenance command"),
            Transition(run, maint, cmd(StateCommand.MAINTENANCE), "maintenance command"),
            Transition(idle, maint, cmd(StateCommand.MAINTENANCE), "maintenance command"),
            Transition(maint, init, cmd(StateCommand.RUN), "run command"),
            Transition(init, run, lambda c: c.inputs_ok_s >= c.p.inputs_valid_for_s, "inputs valid"),
            Transition(run, init, lambda c: not c.running_inputs_ok, "inputs lost"),
            Transition(run, idle, cmd(StateCommand.IDLE), "idle command"),
            Transition(run, idle, lambda c: c.p.auto_sleep and c.sleep_request, "no power needed"),
            Transition(idle, run, cmd(StateCommand.RUN), "run command"),
            Transition(idle, run, lambda c: not c.idle_commanded and not c.sleep_request, "power needed"),
            Transition(idle, init, lambda c: not c.running_inputs_ok, "inputs lost"),
        ]

    @staticmethod
    def _cmd(command: StateCommand) -> Guard:
        return lambda c: c.command is command

    def _enter_idle(self, ctx: Any) -> None:
        self.idle_commanded = self.command is StateCommand.IDLE

    def _exit_error(self, ctx: Any) -> None:
        self.reset_requested = False

    def declare(self) -> list[TagSpec]:
        holding = Layout(self.p.modbus_holding_base, None)
        inputs = Layout(None, self.p.modbus_input_base)
        return [
            param(holding, "site_state_cmd", DType.ENUM, 0, "Command to the site state machine (consumed)",
                  enum_cls=StateCommand, retain=False),
            status(inputs, "site_state", DType.ENUM, "Operating state of the site", enum_cls=SiteState,
                   telemetry=True),
            status(inputs, "site_state_time_s", DType.FLOAT32, "Time in the present state", "s"),
            status(inputs, "site_state_reason", DType.STRING, "Why the site entered its state",
                   length=REASON_LENGTH),
            status(inputs, "errors_ack_request", DType.BOOL,
                   "True for one scan when a reset command acknowledges the errors"),
        ]

    def bind(self, tags: TagLookup) -> None:
        self.cmd_tag = tags["site_state_cmd"]
        self.state_tag = tags["site_state"]
        self.time_tag = tags["site_state_time_s"]
        self.reason_tag = tags["site_state_reason"]
        self.ack_tag = tags["errors_ack_request"]
        self.required = [tags[name] for name in self.p.required_inputs]
        self.running_needs = [tags[name] for name in self.p.required_inputs if name not in self.p.run_without]
        self.critical_tag = tags.get("error_critical_active")
        self.sleep_tag = tags.get("sleep_request")

    def execute(self, ctx: ScanContext) -> None:
        self.command = StateCommand(self.cmd_tag.value or 0)
        if self.command is not StateCommand.NONE:
            self.cmd_tag.set(StateCommand.NONE)
        reset = self.command is StateCommand.RESET
        self.ack_tag.set(reset)  # the error handling, later in this scan, clears what it may
        if reset and self.machine.state == S[SiteState.ERROR]:
            self.reset_requested = True
        self.inputs_ok = all(tag.good for tag in self.required)
        self.running_inputs_ok = all(tag.good for tag in self.running_needs)
        self.inputs_ok_s = self.inputs_ok_s + ctx.dt_s if self.inputs_ok else 0.0
        self.critical = bool(self.critical_tag.value) if self.critical_tag is not None else False
        self.sleep_request = bool(self.sleep_tag.value) if self.sleep_tag is not None else False
        before = self.machine.state
        state = self.machine.step(self, ctx.dt_s)
        if state != before:
            record = self.machine.log[-1]
            log.info("site state %s -> %s: %s", before, state, record.reason)
            self.reason_tag.set(text(record.reason, REASON_LENGTH))
        elif self.command in (StateCommand.REBOOT, StateCommand.RESTART) and state == S[SiteState.RUN]:
            log.warning("site state command %s refused in state run: a unit at power restarts only from "
                        "init, idle, maintenance or error (send idle first)", self.command.name.lower())
        elif self.command is not StateCommand.NONE:
            log.info("site state command %s ignored in state %s", self.command.name.lower(), state)
        self.state_tag.set(BY_NAME[state])
        self.time_tag.set(self.machine.time_in_state_s)

    @property
    def state(self) -> SiteState:
        return BY_NAME[self.machine.state]
