"""Grid services: Nordic FCR-N, FCR-D up/down and FFR on top of the baseline of the active mode.

Each scan: take the frequency (meter, else inverter, or the applied test frequency during a
test), filter it (first order, `filter_tau_s`, 1 s by default as the requirements assume),
compute each sold product's power from its droop block (no delay anywhere else in the chain),
add FFR, NEM and the legacy droop, and publish the sum as `service_p_w`, which dispatch adds to
the baseline outside any ramp. Once per second: LER energy management (NEM, AEM), the
headroom the sold capacity needs (`service_reserve_up_w` / `_down_w`, which site_control keeps
free), the energy it needs, endurance and the status tags. The capacity each product can
really maintain is published every scan.

Runs between `site_control` and `dispatch`. See docs/grid_services.md.
"""

from __future__ import annotations

import logging
import math
from operator import attrgetter

import attrs

from blocks import LowPass
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, TagSpec
from programs.enums import SiteState
from programs.grid.fcr import FcrService
from programs.grid.ffr import Ffr, FfrState
from programs.grid.frequency import FrequencyInput, FrequencySource
from programs.grid.legacy import LegacyResponse, as_products
from programs.grid.ler import Energy
from programs.grid.params import Params
from programs.grid.products import FCR_PRODUCTS, NORMAL_BAND_HZ, Product
from programs.grid.reserve import Reserve, endurance_min, ffr_reserve, share, total
from programs.tagdefs import Layout, param, status, text

log = logging.getLogger(__name__)

REASON_LENGTH = 40
GUARD_BAND_PCT = 1.0  # the baseline's drain on reserved energy fades out over this much SOC
CAPACITY_TAGS = ("fcr_n_capacity_w", "fcr_d_up_capacity_w", "fcr_d_down_capacity_w", "ffr_capacity_w")
PRODUCT_KEYS = tuple(spec.key for spec in FCR_PRODUCTS)
NAN = math.nan
ENDING_HOLD_S = 900.0  # TR 3.7: provision continues through a disturbance, at most 15 min,
ENDING_RAMP_S = 300.0  # then may ramp down over 5 min


@attrs.define
class Ending:
    """An FCR-D capacity cut held back by a disturbance."""

    target_w: float
    from_w: float
    outside_s: float = 0.0
RUN = int(SiteState.RUN)
_VALUE = attrgetter("value")


class GridServices(Program):
    kind = "grid_services"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params
        mapped = as_products(params.legacy) if params.legacy is not None else None
        self.initial = self._initial_capacities(params, mapped or {})
        self.legacy = LegacyResponse(params.legacy) if params.legacy is not None and mapped is None else None
        self.filter = LowPass(tau_s=params.filter_tau_s)
        self.trigger_filter = LowPass(tau_s=params.ffr.filter_tau_s)
        self.fcr: list[FcrService] = []
        self.ffr = Ffr(params.ffr, 0.0)
        self.settings: tuple = ()
        self.built = False
        self.ending: dict[str, Ending] = {}  # FCR-D cuts waiting for the end of a disturbance
        self.reserve = Reserve()
        self.up_share = self.down_share = 1.0
        self.guard_up = self.guard_down = 0.0  # 0..1: how much of the baseline's drain is cut
        self.available = False
        self.energy = Energy(0.0, 0.0)
        self.tick_s = 0.0
        self.f_hz = NAN

    @staticmethod
    def _initial_capacities(p: Params, mapped: dict[Product, float]) -> tuple[float, float, float, float]:
        own = (p.fcr_n_capacity_w, p.fcr_d_up_capacity_w, p.fcr_d_down_capacity_w, p.ffr_capacity_w)
        return tuple(value or mapped.get(Product(i), 0.0) for i, value in enumerate(own))  # type: ignore[return-value]

    # --- tags -----------------------------------------------------------------------------------
    def declare(self) -> list[TagSpec]:
        p = self.p
        h = Layout(p.modbus_holding_base, None)
        i = Layout(None, p.modbus_input_base)
        f, b = DType.FLOAT32, DType.BOOL
        specs = [param(h, name, f, value, f"Sold {label} capacity C (0: not provided)", "W", 0, 1e7)
                 for name, value, label in zip(CAPACITY_TAGS, self.initial, ("FCR-N", "FCR-D up", "FCR-D down",
                                                                              "FFR"))]
        specs += [
            param(h, "ffr_activation_hz", f, p.ffr.activation_hz, "FFR activation level (49.7, 49.6 or 49.5)",
                  "Hz", 49.5, 49.7),
            param(h, "frequency_filter_tau_s", f, p.filter_tau_s, "Time constant of the frequency filter", "s",
                  0, 10),
            param(h, "ler_enabled", b, p.ler, "LER energy management (NEM, AEM) on"),
            param(h, "applied_test_frequency_hz", f, 50.0, "Applied test frequency (replaces the measurement "
                  "while test_frequency_active; refresh within test_timeout_s)", "Hz", 40, 60, retain=False),
            param(h, "test_frequency_active", b, False, "Test mode: the applied test frequency replaces the "
                  "measured frequency", retain=False),
            status(i, "service_p_w", f, "Grid-service power added to the baseline (+ discharge)", "W"),
            status(i, "service_reserve_up_w", f, "Discharge headroom the sold capacity needs", "W"),
            status(i, "service_reserve_down_w", f, "Charge headroom the sold capacity needs", "W"),
            status(i, "service_response_w", f, "Frequency response: FCR + FFR + NEM + legacy", "W"),
            status(i, "baseline_guard_w", f, "Cut of the baseline where it would drain reserved energy", "W"),
            status(i, "baseline_effective_w", f, "Baseline after the energy guard (the calculated baseline)", "W"),
            status(i, "frequency_input_hz", f, "Frequency the services take (measured or applied)", "Hz"),
            status(i, "frequency_filtered_hz", f, "That frequency after the filter: what the droops see", "Hz"),
            status(i, "frequency_measured_hz", f, "Measured grid frequency (also during a test)", "Hz"),
            status(i, "frequency_ok", b, "A usable frequency is there"),
            status(i, "test_frequency_in_use", b, "TEST: the applied test frequency drives the services"),
            status(i, "frequency_source", DType.ENUM, "Where the frequency comes from", enum_cls=FrequencySource),
        ]
        for key in PRODUCT_KEYS:
            specs.append(status(i, f"{key}_p_w", f, f"{key} power", "W"))
        specs += [status(i, "ffr_p_w", f, "FFR power", "W"), status(i, "nem_p_w", f, "NEM power", "W"),
                  status(i, "legacy_p_w", f, "Legacy droop power", "W")]
        for key in (*PRODUCT_KEYS, "ffr"):
            specs.append(status(i, f"{key}_maintained_w", f, f"{key} capacity maintained now", "W"))
        specs += [
            status(i, "endurance_up_min", f, "Minutes of full upward activation left (0 in AEM)", "min"),
            status(i, "endurance_down_min", f, "Minutes of full downward activation left (0 in AEM)", "min"),
            status(i, "service_energy_up_wh", f, "Energy reserved for upward services", "Wh"),
            status(i, "service_energy_down_wh", f, "Energy reserved for downward services", "Wh"),
            status(i, "service_soc_floor_pct", f, "The baseline may not discharge below this SOC", "%"),
            status(i, "service_soc_ceiling_pct", f, "The baseline may not charge above this SOC", "%"),
        ]
        for key in PRODUCT_KEYS:
            specs += [
                status(i, f"nem_allowed_{key}", DType.INT16, f"{key} NEM_allowed (-1 charge, +1 discharge)"),
                status(i, f"nem_current_{key}", f, f"{key} NEM_current (300 s mean of NEM_allowed)"),
                status(i, f"aem_active_{key}", b, f"{key} AEM on (the product reports itself unavailable)"),
                status(i, f"aem_f_ref_{key}_hz", f, f"{key} AEM reference frequency", "Hz"),
            ]
        specs += [
            status(i, "ffr_state", DType.ENUM, "FFR state", enum_cls=FfrState),
            status(i, "ffr_ready", b, "FFR armed: ready for an activation"),
            status(i, "service_reason", DType.STRING, "Why a product is reduced or withdrawn", length=REASON_LENGTH),
        ]
        return specs

    def bind(self, tags: TagLookup) -> None:
        p = self.p
        measured = [(tags[name], FrequencySource.INVERTER if name.startswith("inverter") else FrequencySource.METER)
                    for name in p.frequency_inputs]
        self.freq = FrequencyInput(measured, tags["applied_test_frequency_hz"], tags["test_frequency_active"],
                                   p.frequency_valid_hz, p.test_timeout_s, p.frequency_max_rate_hz_per_s,
                                   p.frequency_stuck_s)
        self.t = {spec.name: tags[spec.name] for spec in self.declare()}  # own tags, looked up without the image
        self.ler_tags = {key: (tags[f"nem_allowed_{key}"], tags[f"nem_current_{key}"], tags[f"aem_active_{key}"],
                               tags[f"aem_f_ref_{key}_hz"]) for key in PRODUCT_KEYS}
        self.setting_tags = [tags[name] for name in (*CAPACITY_TAGS, "ffr_activation_hz", "frequency_filter_tau_s",
                                                     "ler_enabled")]
        self.soc, self.soc_min, self.soc_max = tags["soc_pct"], tags["soc_min_pct"], tags["soc_max_pct"]
        self.baseline = tags["baseline_p_w"]
        self.limit_charge, self.limit_discharge = tags["limit_charge_w"], tags["limit_discharge_w"]
        self.state = tags["site_state"]
        self.sleep = tags.get("sleep_request")
        self.out = tags["service_p_w"]
        names = ("service_response_w", "baseline_guard_w", "baseline_effective_w", "frequency_input_hz",
                 "frequency_filtered_hz", "frequency_measured_hz", "ffr_p_w", "nem_p_w", "legacy_p_w", "ffr_state",
                 "frequency_ok", "test_frequency_in_use", "frequency_source")
        self.fast_tags = [tags[n] for n in names]
        self.product_p = {key: tags[f"{key}_p_w"] for key in PRODUCT_KEYS}
        self.maintained = {key: tags[f"{key}_maintained_w"] for key in (*PRODUCT_KEYS, "ffr")}

    # --- the scan ---------------------------------------------------------------------------------
    def execute(self, ctx: ScanContext) -> None:
        dt = ctx.dt_s
        if tuple(map(_VALUE, self.setting_tags)) != self.settings:
            self._apply_settings()
        if not self.sold:
            self._idle(ctx)
            return
        f_in = self.freq.read(ctx.t_s)
        if self.freq.timed_out:
            self._withdraw_test_capacity()
        ok = f_in == f_in
        if ok:
            f = self.filter.step(f_in, dt)
        else:
            self.filter.reset()
            f = NAN
        self.f_hz = f
        running = self.state.value == RUN
        self.tick_s += dt
        if self.tick_s >= 1.0 - 1e-9:
            self.tick_s -= 1.0
            self._second(f, ok, running)
        b = self.baseline.value
        r = self.reserve
        self.up_share = share(self.limit_discharge.value - b, r.up_w)  # share of the reserved headroom there now
        self.down_share = share(self.limit_charge.value + b, r.down_w)
        response = self._respond(f, f_in, dt, ok and running)
        # the energy guard: cancel the part of the baseline that would spend energy reserved for the services
        guard = -b * self.guard_up if b > 0.0 else (-b * self.guard_down if b < 0.0 else 0.0)
        self.out.set(response + guard)
        self._publish(f_in, f, response, guard, ok and running and self.available)
        if self.sleep is not None and self.p.keep_awake:
            self.sleep.set(False)  # a sold product keeps the site awake (site_state reads it next scan)

    def _idle(self, ctx: ScanContext) -> None:
        """Nothing sold: no output, no reserve; the frequency and test flags once per second."""
        self.tick_s += ctx.dt_s
        if self.tick_s < 1.0 - 1e-9:
            return
        self.tick_s = 0.0
        f_in = self.freq.read(ctx.t_s)
        self.filter.reset()
        self.f_hz = f_in
        self.nem_w = self.legacy_w = self.ffr_w = 0.0
        self.out.set(0.0)
        self._publish(f_in, f_in, 0.0, 0.0, False)
        self._publish_second("no product sold")

    def _respond(self, f: float, f_in: float, dt: float, may_trigger: bool) -> float:
        """The sum of every sold product's power this scan (before the energy guard)."""
        up, down = self.up_share, self.down_share
        p = 0.0
        if f == f:
            for service in self.fcr:
                p += service.power(f, up, down)
            # outside 49.9..50.1 Hz NEM_allowed is 0 and NEM ramps out through its 300 s mean (TR 3.5)
            self.nem_w = self.nem_total_w
            self.legacy_w = self.legacy.step(f, dt) if self.legacy is not None else 0.0
        else:
            for service in self.fcr:
                service.p_w = 0.0
            self.nem_w = self.legacy_w = 0.0
        if self.ffr.state is not FfrState.DISABLED:  # a running activation finishes after its capacity is withdrawn
            trigger = self.trigger_filter.step(f_in, dt) if f_in == f_in else NAN
            ffr = self.ffr.step(trigger, dt, may_trigger)
            self.ffr_w = ffr * up if ffr > 0.0 else ffr
        return p + self.nem_w + self.legacy_w + self.ffr_w

    def _publish(self, f_in: float, f: float, response: float, guard: float, available: bool) -> None:
        (resp, guard_t, eff, f_in_t, f_t, f_meas, ffr_t, nem_t, legacy_t, ffr_state, f_ok, testing,
         source) = self.fast_tags
        resp.set(response)
        guard_t.set(guard)
        eff.set(self.baseline.value + guard)
        f_in_t.set(_finite(f_in))
        f_t.set(_finite(f))
        f_meas.set(_finite(self.freq.measured_hz))
        ffr_t.set(self.ffr_w)
        nem_t.set(self.nem_w)
        legacy_t.set(self.legacy_w)
        ffr_state.set(int(self.ffr.state))
        f_ok.set(f == f)
        testing.set(self.freq.testing)
        source.set(int(self.freq.source))
        up, down = self.up_share, self.down_share
        for service in self.fcr:
            service.p_tag.set(service.p_w)
            if available and not service.unavailable:
                factor = up if service.hi_w > 0.0 else 1.0
                if service.lo_w < 0.0 and down < factor:
                    factor = down
                service.maintained_tag.set(service.capacity_w * factor)
            else:
                service.maintained_tag.set(0.0)
        ffr = self.ffr
        if ffr.capacity_w > 0.0:
            ok = available and ffr.ready and self.energy.low_wh >= ffr.capacity_w * self.p.ffr.support_s / 3600.0
            self.maintained["ffr"].set(ffr.capacity_w * up if ok else 0.0)

    def _withdraw_test_capacity(self) -> None:
        """A test client that went silent (killed, its link lost) cannot restore the capacities it
        set for its test: the unit withdraws every product itself, so no test capacity stays sold.
        Taken from the next scan on, like a write; kept across a restart (the tags are retained)."""
        sold = [(tag, tag.value) for tag in self.setting_tags[:len(CAPACITY_TAGS)] if tag.value]
        self.filter.reset()  # the test frequency's disturbance was the test's, not the grid's:
        self.f_hz = NAN  # an FCR-D cut does not wait for it to end (TR 3.7)
        for tag, _ in sold:
            tag.set(0.0)
        if sold:
            log.warning("grid services: test mode timed out; the test capacity is withdrawn (%s)",
                        ", ".join(f"{tag.spec.name} {value:g} W -> 0 W" for tag, value in sold))

    # --- settings ---------------------------------------------------------------------------------
    def _apply_settings(self) -> None:
        """(Re)build the products from the capacity and setting tags (at start and on a command).
        An FCR-D capacity cut while the frequency is disturbed waits (TR 3.7, see `_ending`)."""
        settings = tuple(map(_VALUE, self.setting_tags))
        self.settings = settings
        n, up, down, ffr, level, tau, ler = settings
        now = {s.spec.key: s.capacity_w for s in self.fcr}
        disturbed = self.f_hz == self.f_hz and not NORMAL_BAND_HZ[0] < self.f_hz < NORMAL_BAND_HZ[1]
        effective = {"fcr_n": n, "fcr_d_up": up, "fcr_d_down": down}
        for key in ("fcr_d_up", "fcr_d_down"):
            if disturbed and effective[key] < now.get(key, 0.0):
                self.ending[key] = Ending(effective[key], now[key])
                effective[key] = now[key]
                log.warning("grid services: %s capacity cut to %.0f W during a disturbance (%.3f Hz): provision "
                            "continues until the frequency is back in 49.9..50.1 Hz (TR 3.7)", key,
                            self.ending[key].target_w, self.f_hz)
            else:
                self.ending.pop(key, None)
        self._build(effective, ffr, level, tau, bool(ler))

    def _build(self, capacity: dict[str, float], ffr: float, level: float, tau: float, ler: bool,
               refresh: bool = True) -> None:
        """The products for these capacities; `refresh`: status and LER at once (a setting
        change), not for a step of a ramp (which runs on the 1 s tick itself)."""
        first = not self.built
        self.built = True
        self.filter.tau_s = tau
        before = {s.spec.key: s for s in self.fcr}
        self.fcr = [FcrService(spec, capacity[spec.key], ler) for spec in FCR_PRODUCTS if capacity[spec.key] > 0.0]
        for service in self.fcr:
            kept = before.get(service.spec.key)
            if service.ler is not None and kept is not None and kept.ler is not None:
                service.ler = kept.ler  # NEM and AEM carry on through a setting change
                service.ler.retune(service.capacity_w)
            service.p_tag = self.product_p[service.spec.key]
            service.maintained_tag = self.maintained[service.spec.key]
        self.nem_total_w = self.ffr_w = 0.0
        self.trigger_filter.reset()
        if ffr != self.ffr.capacity_w or level != self.ffr.activation_hz:
            self.ffr.retune(ffr, level)
        reserves = [s.reserve for s in self.fcr]
        if ffr > 0.0:
            reserves.append(ffr_reserve(ffr, self.p.ffr.support_s, self.p.ffr.recovery_pct))
        if self.legacy is not None:
            cfg = self.legacy.cfg
            reserves.append(Reserve(cfg.p_up_w, cfg.p_down_w))
        self.reserve = total(reserves)
        self.sold = bool(self.fcr) or ffr > 0.0 or self.legacy is not None
        if not refresh:
            return
        for tag in (*self.product_p.values(), *self.maintained.values()):
            tag.set(0.0)
        for allowed, current, aem, f_ref in self.ler_tags.values():
            allowed.set(0)
            current.set(0.0)
            aem.set(False)
            f_ref.set(0.0)
        self.tick_s = 1.0  # LER and status at once
        log.log(logging.DEBUG if first else logging.INFO,
                "grid services: FCR-N %.0f W, FCR-D up %.0f W, FCR-D down %.0f W, FFR %.0f W at %.2f Hz, "
                "filter %.2f s, LER %s", capacity["fcr_n"], capacity["fcr_d_up"], capacity["fcr_d_down"], ffr,
                level, tau, "on" if ler else "off")

    def _ending(self, f: float) -> None:
        """Once a second: an FCR-D provision cut during a disturbance ends when the frequency is
        back in the normal band; after 15 min outside it it ramps down over 5 min (TR 3.7)."""
        if not self.ending:
            return
        running = {s.spec.key: s.capacity_w for s in self.fcr}
        current = {spec.key: running.get(spec.key, 0.0) for spec in FCR_PRODUCTS}
        capacity = dict(current)
        for key, end in list(self.ending.items()):
            if f == f and NORMAL_BAND_HZ[0] < f < NORMAL_BAND_HZ[1]:
                capacity[key] = end.target_w
                del self.ending[key]
                log.info("grid services: the frequency is back in the normal band: %s provision ends at %.0f W",
                         key, end.target_w)
                continue
            end.outside_s += 1.0
            if end.outside_s > ENDING_HOLD_S:
                ramped = end.from_w - (end.from_w - end.target_w) * (end.outside_s - ENDING_HOLD_S) / ENDING_RAMP_S
                capacity[key] = max(end.target_w, ramped)
                if capacity[key] <= end.target_w:
                    del self.ending[key]
        if capacity != current:
            _n, _up, _down, ffr, level, tau, ler = self.settings
            self._build(capacity, ffr, level, tau, bool(ler), refresh=not self.ending)

    # --- once per second --------------------------------------------------------------------------
    def _second(self, f: float, ok: bool, running: bool) -> None:
        self._ending(f)
        soc_ok = self.soc.good
        reason = ""
        if soc_ok:
            floor = self.soc_min.value + self.p.soc_margin_pct
            ceiling = self.soc_max.value - self.p.soc_margin_pct
            cap = self.p.battery_capacity_wh
            soc = self.soc.value
            self.energy = Energy((soc - floor) / 100.0 * cap, (ceiling - soc) / 100.0 * cap)
            for service in self.fcr:
                if service.ler is not None:
                    service.ler.second(f, self.energy)
            self.nem_total_w = sum(s.ler.nem_w for s in self.fcr if s.ler is not None)
            if self.legacy is not None:
                self.legacy.second(f, soc)
            self._energy_guard(floor, ceiling, cap, soc)
        else:
            reason = "no SOC"
        self.available = soc_ok and ok and running
        if not ok:
            reason = "frequency stuck" if self.freq.stuck else "frequency invalid"
        elif not running:
            reason = "site not running"
        reason = reason or self._reduction()
        self._publish_second(reason)

    def _energy_guard(self, floor: float, ceiling: float, cap: float, soc: float) -> None:
        r = self.reserve
        floor_pct = floor + 100.0 * r.up_wh / cap
        ceiling_pct = ceiling - 100.0 * r.down_wh / cap
        self.t["service_soc_floor_pct"].set(floor_pct)
        self.t["service_soc_ceiling_pct"].set(ceiling_pct)
        self.guard_up = _fade(floor_pct + GUARD_BAND_PCT - soc) if r.up_wh > 0 else 0.0
        self.guard_down = _fade(soc - ceiling_pct + GUARD_BAND_PCT) if r.down_wh > 0 else 0.0

    def _reduction(self) -> str:
        for service in self.fcr:
            if service.unavailable:
                side = "battery low" if service.ler.aem_side < 0 else "battery high"  # type: ignore[union-attr]
                return f"{service.spec.key} AEM: {side}"
        for label, value in (("discharge", self.up_share), ("charge", self.down_share)):
            if value < 1.0:
                return f"{label} headroom {value * 100:.0f} %"
        return ""

    def _publish_second(self, reason: str) -> None:
        t, r, e = self.t, self.reserve, self.energy
        t["service_reserve_up_w"].set(r.up_w)
        t["service_reserve_down_w"].set(r.down_w)
        t["service_energy_up_wh"].set(r.up_wh)
        t["service_energy_down_wh"].set(r.down_wh)
        b = self.baseline.value if self.baseline.good else 0.0
        up_c = sum(s.capacity_w for s in self.fcr if s.hi_w > 0) + self.ffr.capacity_w
        down_c = sum(s.capacity_w for s in self.fcr if s.lo_w < 0)
        aem_up = any(s.unavailable and s.ler.aem_side < 0 for s in self.fcr)  # type: ignore[union-attr]
        aem_down = any(s.unavailable and s.ler.aem_side > 0 for s in self.fcr)  # type: ignore[union-attr]
        t["endurance_up_min"].set(0.0 if aem_up or not self.available else endurance_min(e.low_wh, b, up_c))
        t["endurance_down_min"].set(0.0 if aem_down or not self.available else endurance_min(e.high_wh, -b, down_c))
        for service in self.fcr:
            ler = service.ler
            if ler is not None:
                allowed, current, aem, f_ref = self.ler_tags[service.spec.key]
                allowed.set(ler.nem_allowed)
                current.set(ler.nem_current)
                aem.set(ler.aem)
                f_ref.set(ler.f_ref_hz)
        t["ffr_ready"].set(self.ffr.ready)
        t["service_reason"].set(text(reason, REASON_LENGTH))

    # values set once in __init__ so that _publish never meets a missing attribute
    sold = False
    nem_total_w = 0.0
    nem_w = 0.0
    legacy_w = 0.0
    ffr_w = 0.0


def _fade(x_pct: float) -> float:
    """0 below 0, 1 above GUARD_BAND_PCT, linear between."""
    k = x_pct / GUARD_BAND_PCT
    return 0.0 if k <= 0.0 else (1.0 if k >= 1.0 else k)


def _finite(x: float) -> float:
    return x if x == x else 0.0
