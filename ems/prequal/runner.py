"""Play a test sequence on the simulated site: the site's own programs, scan period and plant.

The test signal reaches the unit as it would on a real one: after each scan the next value of
the applied test frequency is queued as a tag write (like a Modbus write), applied whole at
the next scan boundary. The site runs in passive mode (baseline 0 W) unless told otherwise,
with only the product under test sold at capacity C. Every scan is recorded; the grid log
writes the TSO's files beside the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ems.prequal.recording import Recording, Rows, tag_names
from ems.prequal.sequences import (
    FCR_N_LER_START_FROM_TOP_MIN,
    LER_START_MIN,
    NOT_LER_MIN,
    HeldPlay,
    Sequence,
    sequence,
)
from ems.simulate import virtual_clock_for
from plc.program import ScanContext
from programs.enums import Mode
from runtime.config.io_map import load_io_map
from runtime.config.schema import IoMap
from runtime.config.structure import ConfigError, ConfigErrors
from runtime.grid_log import SERVICE_TOKENS, GridLog, TestSession
from runtime.site import Site, build_site

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

PREROLL_S = 20.0  # the site starts (Init -> Run, inverter start) with the test frequency already applied
LER_TAIL_S = 60.0  # recorded after NEM and AEM are both off
CAPACITY_PARAMS = {"fcr-n": "fcr_n_capacity_w", "fcr-d-up": "fcr_d_up_capacity_w",
                   "fcr-d-down": "fcr_d_down_capacity_w", "ffr": "ffr_capacity_w"}
PRODUCT_KEYS = {"fcr-n": "fcr_n", "fcr-d-up": "fcr_d_up", "fcr-d-down": "fcr_d_down", "ffr": "ffr"}
# TestType tokens of the grid log's file names (ours: the TR's Appendix 2 test ids were not at hand)
TEST_TYPES = {"step": "Step", "sine": "Sine", "ramp": "Ramp", "linearity": "Linearity", "ler": "Ler", "ffr": "Ffr",
              "combined": "Combined", "endurance": "Endurance"}
ENDURANCE_SPARE_PCT = 1.0  # the endurance test starts this close to the end of the service window it does not use


@attrs.frozen
class TestRun:
    """One test to play."""

    __test__ = False  # not a pytest test class

    io_map: str
    product: str
    test: str
    capacity_w: float
    ffr_level_hz: float | None = None  # None: the io_map's
    mode: str = "passive"
    log_dir: Path | None = None  # where the grid log's files go (None: no files)
    t_fme_s: float = 1.0  # measurement equipment of the evaluation (0: the test frequency went through the meter)
    inverter_delay_s: float | None = None  # simulation: the inverter's dead time (None: the io_map's)
    inverter_tau_s: float | None = None  # simulation: its response time constant (None: the io_map's)


def grid_program(io_map: IoMap) -> str:
    """The name of the site's grid_services program (ConfigErrors when it has none)."""
    for cfg in io_map.programs:
        if cfg.kind == "grid_services":
            return cfg.name
    raise ConfigErrors([ConfigError(("programs",), "ems prequal needs a program of kind \"grid_services\"",
                                    io_map.path)])


def sold(run: TestRun) -> set[str]:
    """The capacity parameters the test sells at C: the product's, and FCR-N's too in the combined test
    (requirement 1b); every other is 0."""
    return {CAPACITY_PARAMS[run.product]} | ({CAPACITY_PARAMS["fcr-n"]} if run.test == "combined" else set())


def prepare(run: TestRun) -> tuple[IoMap, Sequence]:
    """The io_map as the test needs it: only the product under test sold, no server, the LER start SOC."""
    io_map = load_io_map(run.io_map)
    name = grid_program(io_map)
    params = io_map.program_params[name]
    ffr = params.ffr if run.ffr_level_hz is None else attrs.evolve(params.ffr, activation_hz=run.ffr_level_hz)
    capacities = {p: (run.capacity_w if p in sold(run) else 0.0) for p in CAPACITY_PARAMS.values()}
    params = attrs.evolve(params, ffr=ffr, legacy=None, **capacities)
    if run.test == "endurance":
        params = attrs.evolve(params, ler=False)  # a unit that is not LER: no NEM, no AEM
    programs = tuple(attrs.evolve(p, enabled=True) if p.name == name else p for p in io_map.programs)
    io_map = attrs.evolve(io_map, programs=programs, program_params={**io_map.program_params, name: params},
                          modbus_server=attrs.evolve(io_map.modbus_server, enabled=False))
    seq = sequence(run.product, run.test, ffr.activation_hz)
    if run.test in ("ler", "endurance"):
        io_map = _with_start_soc(io_map, params, run)
    return _with_inverter(io_map, run), seq


def _control(io_map: IoMap) -> object:
    return next(io_map.program_params[p.name] for p in io_map.programs if p.kind == "site_control")


def _with_inverter(io_map: IoMap, run: TestRun) -> IoMap:
    """The simulated inverter with the dead time and time constant asked for (a real unit's delays)."""
    changes = {k: v for k, v in (("command_delay_s", run.inverter_delay_s), ("response_tau_s", run.inverter_tau_s))
               if v is not None}
    plant = _plant(io_map)
    if not changes or plant is None:
        return io_map
    options = io_map.device_options[plant]
    options = attrs.evolve(options, inverter=attrs.evolve(options.inverter, **changes))
    return attrs.evolve(io_map, device_options={**io_map.device_options, plant: options})


def _plant(io_map: IoMap) -> str | None:
    return next((d.name for d in io_map.devices if d.driver == "sim"), None)


def chain_meta(io_map: IoMap, run: TestRun) -> dict[str, float]:
    """The delays of the chain under test, for the report."""
    meta: dict[str, float] = {"t_fme_s": run.t_fme_s}
    plant = _plant(io_map)
    if plant is not None:
        inverter = io_map.device_options[plant].inverter
        meta.update(inverter_delay_s=inverter.command_delay_s, inverter_tau_s=inverter.response_tau_s)
    return meta


def _with_start_soc(io_map: IoMap, params: object, run: TestRun) -> IoMap:
    """The SOC the test starts at: the LER tests LER_START_MIN minutes of full activation from the end
    they empty (FCR-N: FCR_N_LER_START_FROM_TOP_MIN below the top); the endurance test ENDURANCE_SPARE_PCT
    from the end it does not use (FCR-N: the middle), so that it holds NOT_LER_MIN minutes each way."""
    control = _control(io_map)
    margin, cap = params.soc_margin_pct, params.battery_capacity_wh  # type: ignore[attr-defined]
    floor = control.soc_min_pct + margin  # type: ignore[attr-defined]
    ceiling = control.soc_max_pct - margin  # type: ignore[attr-defined]

    def pct(minutes: float) -> float:
        return 100.0 * minutes * run.capacity_w / 60.0 / cap

    if run.test == "endurance":
        soc = {"fcr-n": (floor + ceiling) / 2.0, "fcr-d-up": ceiling - ENDURANCE_SPARE_PCT,
               "fcr-d-down": floor + ENDURANCE_SPARE_PCT}[run.product]
        if min(soc - floor if run.product != "fcr-d-down" else 99.0,
               ceiling - soc if run.product != "fcr-d-up" else 99.0) < pct(NOT_LER_MIN):
            log.warning("C = %g W: this battery holds less than %g min of full activation; the unit is LER",
                        run.capacity_w, NOT_LER_MIN)
    elif run.product == "fcr-n":
        soc = ceiling - pct(FCR_N_LER_START_FROM_TOP_MIN)
    elif run.product == "fcr-d-down":
        soc = ceiling - pct(LER_START_MIN[run.product])
    else:
        soc = floor + pct(LER_START_MIN[run.product])
    plant = _plant(io_map)
    assert plant is not None, "the start SOC is set on the simulated plant"
    options = io_map.device_options[plant]
    options = attrs.evolve(options, battery=attrs.evolve(options.battery, initial_soc_pct=round(soc, 3)))
    return attrs.evolve(io_map, device_options={**io_map.device_options, plant: options})


class Player:
    """After each scan: queue the next applied frequency, record the row, stop when done.

    The first PREROLL_S hold the sequence's first frequency while the site starts; the scan
    after that is sequence time 0. A sequence whose steps are held until their objectives are met
    (the FCR-N LER test) is played by a HeldPlay from what the unit shows after each scan, and ends
    LER_TAIL_S after its last step's objective; `played` is then the sequence as played.
    """

    def __init__(self, site: Site, seq: Sequence, rows: Rows, tags: list, product_key: str):
        self.site, self.seq, self.rows, self.tags = site, seq, rows, tags
        self.period = site.period_s
        self.started: float | None = None
        self.t0: float | None = None
        self.not_running = ""
        self.held = HeldPlay(seq) if seq.held else None
        self.longest = seq.max_s if self.held else seq.duration_s
        self.stop_at = self.longest
        key = product_key if product_key != "ffr" else None
        self.aem = site.image[f"aem_active_{key}"] if key else None
        self.nem = site.image[f"nem_allowed_{key}"] if key else None
        self.nem_current = site.image[f"nem_current_{key}"] if key else None
        self.state = site.image["site_state"]
        self.last_start = seq.segments[-1].start_s

    def queue(self, t_seq: float) -> None:
        f = self.held.frequency(t_seq) if self.held else self.seq.frequency(t_seq)
        self.site.image.request_writes([("applied_test_frequency_hz", f), ("test_frequency_active", True)],
                                       "prequal")

    def __call__(self, ctx: ScanContext) -> None:
        if self.t0 is None:
            if self.started is None:
                self.started = ctx.t_s
            if ctx.t_s + self.period >= self.started + PREROLL_S - 1e-9:
                if self.state.value != 1:
                    self.not_running = f"the site did not reach Run in {PREROLL_S:.0f} s"
                    self.site.engine.stop()
                    return
                self.t0 = ctx.t_s + self.period
            self.queue(0.0)
            return
        t = ctx.t_s - self.t0
        self.rows.add(round(t, 6), tuple(tag.value for tag in self.tags))
        if self.held is not None:
            self.held.observe(t, self.nem.value, self.nem_current.value, bool(self.aem.value))  # type: ignore[union-attr]
            if self.held.done_at is not None and self.stop_at == self.longest:
                self.stop_at = self.held.done_at + LER_TAIL_S
        if (self.seq.until == "ler_off" and t >= self.last_start and self.stop_at == self.seq.duration_s
                and not self.aem.value and self.nem.value == 0):  # type: ignore[union-attr]
            self.stop_at = t + LER_TAIL_S
        if t + self.period >= self.stop_at - 1e-9:
            self.site.engine.stop()
            return
        self.queue(t + self.period)


def simulate_test(run: TestRun, progress: Callable[[float, float], None] | None = None) -> tuple[Recording, Sequence]:
    """Run one test on the simulated site; return what was recorded and the sequence played."""
    io_map, seq = prepare(run)
    site = build_site(io_map, virtual_clock_for(io_map))
    image = site.image
    image["mode"].set(Mode[run.mode.upper()])
    key = PRODUCT_KEYS[run.product]
    names = tag_names(key)
    rows = Rows(list(names))
    player = Player(site, seq, rows, [image[t] for t in names.values()], key)
    site.engine.after_scan.append(player)
    grid_log = None
    if run.log_dir is not None:
        program = next(p for p in site.programs if p.kind == "grid_services")
        cfg = program.p.log  # type: ignore[attr-defined]
        plan = log_plan(run.product, seq, _ffr_level(io_map))
        grid_log = GridLog(image, run.log_dir, cfg.resource, cfg.area, _tz(io_map), cfg.rate_hz, cfg.test_rate_hz,
                           cfg.keep_days, plan[0][1])
        if len(plan) > 1:
            site.engine.after_scan.append(_log_namer(player, plan, grid_log))  # after the player, before the log
        site.engine.after_scan.append(grid_log)
        site.mirrors.append(grid_log)
    if progress is not None:
        site.engine.after_scan.append(_progress(site, player, seq, progress))
    player.queue(0.0)  # applied at the first scan: test mode from the start
    site.start()
    try:
        site.run(PREROLL_S + player.longest + 10.0)
    finally:
        site.stop()
    if player.not_running:
        raise RuntimeError(player.not_running)
    recording = Recording(run.product, run.test, run.capacity_w, site.period_s, "simulation")
    rows.into(recording)
    if player.held is not None:
        seq = player.held.played(float(recording.t[-1]) + site.period_s if len(recording.t) else None)
    recording.meta.update(unit_meta(io_map))
    recording.meta.update(chain_meta(io_map, run))
    recording.meta.update(io_map=run.io_map, mode=run.mode,
                          log_sessions=[[s.service, s.test_type] for _, s in log_plan(run.product, seq,
                                                                                      _ffr_level(io_map))],
                          log_files=[str(p) for p in (grid_log.files if grid_log else [])],
                          start_wall_s=site.clock.wall() - recording.t[-1] if len(recording.t) else 0.0)
    return recording, seq


def log_plan(product: str, seq: Sequence, ffr_level_hz: float) -> list[tuple[float, TestSession]]:
    """(sequence time, file naming) of the grid log: one file per test, FFR naming its activation level
    (`Ffr49.5`); a sine test gets one file per period (TP 11.1), split at the start of each sine
    segment (the first file also holds what precedes the first sine), the period in the TestType
    (`Sine40`) and after every column header."""
    service = SERVICE_TOKENS[PRODUCT_KEYS[product]]
    if seq.test == "sine":
        sines = [s for s in seq.segments if s.sine_period_s > 0]
        return [(0.0 if i == 0 else s.start_s, TestSession(service, f"Sine{s.sine_period_s:g}", f"{s.sine_period_s:g}"))
                for i, s in enumerate(sines)]
    return [(0.0, TestSession(service, TEST_TYPES[seq.test] + (f"{ffr_level_hz:.1f}" if product == "ffr" else "")))]


def _log_namer(player: Player, plan: list[tuple[float, TestSession]],
               grid_log: GridLog) -> Callable[[ScanContext], None]:
    """Name the grid log's next file when the sequence reaches the start of the next entry of the plan
    (the row of this scan is the sequence's at the player's time)."""
    pending = list(plan[1:])

    def hook(ctx: ScanContext) -> None:
        if pending and player.t0 is not None and ctx.t_s - player.t0 >= pending[0][0] - 1e-9:
            grid_log.name_test(pending.pop(0)[1])

    return hook


def _ffr_level(io_map: IoMap) -> float:
    return io_map.program_params[grid_program(io_map)].ffr.activation_hz


def unit_meta(io_map: IoMap) -> dict[str, float]:
    """The unit's settings the evaluation needs: energy basis, service SOC window, FFR settings."""
    params = io_map.program_params[grid_program(io_map)]
    control = next(io_map.program_params[p.name] for p in io_map.programs if p.kind == "site_control")
    return {"battery_capacity_wh": params.battery_capacity_wh,
            "soc_floor_pct": control.soc_min_pct + params.soc_margin_pct,
            "soc_ceiling_pct": control.soc_max_pct - params.soc_margin_pct,
            "ffr_level_hz": params.ffr.activation_hz, "ffr_support_s": params.ffr.support_s,
            "ffr_recovery_pct": params.ffr.recovery_pct, "filter_tau_s": params.filter_tau_s,
            "ler_enabled": float(params.ler), "fcr_n_capacity_w": params.fcr_n_capacity_w}


def _tz(io_map: IoMap) -> ZoneInfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(io_map.site.timezone)


def _progress(site: Site, player: Player, seq: Sequence,
              report: Callable[[float, float], None]) -> Callable[[ScanContext], None]:
    every = max(1, int(10.0 / site.period_s))
    count = [0]

    def hook(ctx: ScanContext) -> None:
        count[0] += 1
        if player.t0 is not None and count[0] % every == 0:
            report(ctx.t_s - player.t0, min(player.longest, player.stop_at))

    return hook

