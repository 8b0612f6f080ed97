"""The direct methods of the cloud link: the fleet back end's command set.

Each method validates its payload, writes the same command tags as Modbus and the panel
(`site_state_cmd`, `mode`: durable writes by source "cloud", recorded in the event log before
they are applied at a scan boundary, so one code path decides), waits for the scan that applied
them, and answers with what the site then is:

  200  done: {"state", "mode", "configured_mode", "mode_reason"} as the scan left them (a
       mode that needs a heartbeat it does not get runs its fallback: "mode_reason" says so)
  400  a bad payload: {"error"} naming the field
  404  no such method: {"error"} with the known ones
  409  refused in the present state (a mode change in maintenance or error; a state the site
       machine did not take): {"error", "state", "mode"}
  500  the write was not stored or not applied in time: {"error"}
  501  not implemented yet (software update, artifacts, setup: the OTA service; grid forming:
       the backup feature): {"error"}

A payload is JSON null, {} or {"reason": text}: the write's source in the event log is
"cloud <method>", with the reason (at most 64 characters) after it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import attrs

from programs.enums import Mode, SiteState, StateCommand
from runtime.image import ProcessImage, StorageError

APPLY_TIMEOUT_S = 5.0
REASON_CHARS = 64

STATE_METHODS = {  # method -> (command, the states that mean it was taken)
    "GoToState_Idling": (StateCommand.IDLE, {SiteState.IDLE}),
    "GoToState_Running": (StateCommand.RUN, {SiteState.RUN, SiteState.INIT}),  # INIT: on its way, from maintenance
    "Restart_Device": (StateCommand.RESTART, {SiteState.RESTART}),
}
MODE_METHODS = {
    "GoToMode_SelfConsumption": Mode.SELF_CONSUMPTION,
    "GoToMode_LoadMatching": Mode.LOAD_MATCHING,
    "GoToMode_ExternalControl": Mode.EXTERNAL,
    "GoToMode_CostSaving": Mode.COST_SAVING,
    "GoToMode_ChargeOnly": Mode.CHARGE_ONLY,
}
NOT_YET = {
    "Update_Device": "a software update is the OTA service's, not implemented yet",
    "Receive_Artifact": "artifacts are the OTA service's, not implemented yet",
    "Setup_Device": "device setup is the OTA service's, not implemented yet",
    "GoToMode_GridForming": "grid forming needs the backup feature, not implemented yet",
}
METHODS = (*STATE_METHODS, *MODE_METHODS, *NOT_YET)
MODE_REFUSED_IN = (SiteState.MAINTENANCE, SiteState.ERROR)


@attrs.frozen
class Answer:
    status: int
    payload: dict[str, Any]

    @property
    def pair(self) -> tuple[int, dict[str, Any]]:
        return self.status, self.payload


def _error(status: int, text: str, **more: Any) -> Answer:
    return Answer(status, {"error": text, **more})


class Methods:
    """Answers the direct methods against one site's image (see the module docstring)."""

    def __init__(self, image: ProcessImage, timeout_s: float = APPLY_TIMEOUT_S):
        self.image = image
        self.timeout_s = timeout_s

    def answer(self, name: str, payload: Any) -> Answer:
        """The answer to one method call (any thread: the SDK's handler)."""
        if name not in METHODS:
            return _error(404, f"no method {name!r}; the methods are {', '.join(METHODS)}")
        problem = payload_problem(payload)
        if problem:
            return _error(400, f"{name}: {problem}")
        if name in NOT_YET:
            return _error(501, f"{name}: {NOT_YET[name]}")
        reason = (payload or {}).get("reason", "")
        source = f"cloud {name}" + (f": {reason}" if reason else "")
        if name in STATE_METHODS:
            command, taken = STATE_METHODS[name]
            return self._command(name, source, [("site_state_cmd", int(command))],
                                 lambda state, _mode: state in taken)
        mode = MODE_METHODS[name]
        state, _ = self._now()
        if state in MODE_REFUSED_IN:
            return _error(409, f"{name}: no mode change while the site is in {state.name.lower()}",
                          **self._where())
        return self._command(name, source, [("mode", int(mode))], lambda _state, _active: self._configured() == mode)

    def _command(self, name: str, source: str, items: list[tuple[str, int]],
                 taken: Callable[[SiteState, Any], bool]) -> Answer:
        missing = [tag for tag, _ in items if tag not in self.image]
        if missing:
            return _error(409, f"{name}: this site has no {', '.join(missing)} (no program takes the command)")
        request = self.image.request_writes(items, source=source, durable=True)
        try:
            request.done.result(self.timeout_s)
        except StorageError as exc:
            return _error(500, f"{name}: not stored, not applied: {exc}")
        except FutureTimeout:
            return _error(500, f"{name}: not applied within {self.timeout_s:g} s (is the scan running?)")
        state, mode = self._now()
        if not taken(state, mode):
            return _error(409, f"{name}: refused in state {state.name.lower()}", **self._where())
        return Answer(200, self._where())

    def _now(self) -> tuple[SiteState, Any]:
        snapshot = self.image.snapshot
        if snapshot is None or "site_state" not in snapshot.index:
            return SiteState.INIT, None
        mode = snapshot.value("mode_active") if "mode_active" in snapshot.index else None
        return SiteState(snapshot.value("site_state")), mode

    def _configured(self) -> Any:
        snapshot = self.image.snapshot
        return None if snapshot is None or "mode" not in snapshot.index else snapshot.value("mode")

    def _where(self) -> dict[str, Any]:
        """The site's state, its active mode and why (a mode that needs a heartbeat it lacks runs its
        fallback), and the configured mode."""
        state, mode = self._now()
        where: dict[str, Any] = {"state": state.name.lower()}
        snapshot = self.image.snapshot
        if mode is not None and snapshot is not None:
            where["mode"] = Mode(mode).name.lower()
            where["configured_mode"] = Mode(snapshot.value("mode")).name.lower()
            if "mode_reason" in snapshot.index:
                where["mode_reason"] = snapshot.value("mode_reason")
        return where


def payload_problem(payload: Any) -> str:
    """What is wrong with a method's payload, or ""."""
    if payload is None:
        return ""
    if not isinstance(payload, dict):
        return f"the payload must be a JSON object ({{}} or {{\"reason\": \"...\"}}), not {type(payload).__name__}"
    unknown = sorted(set(payload) - {"reason"})
    if unknown:
        return f"unknown field {unknown[0]!r} (the payload takes only 'reason')"
    reason = payload.get("reason", "")
    if not isinstance(reason, str):
        return f"field 'reason' must be text, not {type(reason).__name__}"
    if len(reason) > REASON_CHARS:
        return f"field 'reason' has {len(reason)} characters; at most {REASON_CHARS}"
    return ""
