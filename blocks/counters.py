"""IEC 61131-3 counters CTU, CTD and CTUD.

Bodies as in the standard (3rd edition, CU/CD declared R_EDGE, i.e. they
count rising edges detected like R_TRIG with memory initially FALSE)::

    CTU:  IF R THEN CV := 0 ELSIF CU_edge AND CV < PVmax THEN CV := CV + 1;
          Q := CV >= PV
    CTD:  IF LD THEN CV := PV ELSIF CD_edge AND CV > PVmin THEN CV := CV - 1;
          Q := CV <= 0
    CTUD: IF R THEN CV := 0 ELSIF LD THEN CV := PV
          ELSIF NOT (CU_edge AND CD_edge) THEN
              IF CU_edge AND CV < PVmax THEN CV := CV + 1
              ELSIF CD_edge AND CV > PVmin THEN CV := CV - 1;
          QU := CV >= PV;  QD := CV <= 0

``PVmax``/``PVmin`` are ``cv_max``/``cv_min`` (default: the DINT range). The
edge memories are updated on every scan, also while R or LD is active, as the
R_EDGE qualifier requires. ``pv`` may be changed between scans. ``dt`` is
accepted for the uniform ``step(..., dt)`` signature and ignored.
"""

from __future__ import annotations

import attrs

from blocks import _checks

DINT_MAX = 2_147_483_647
DINT_MIN = -2_147_483_648


def _check_counter(owner: str, pv: object, cv_min: object, cv_max: object) -> tuple[int, int, int]:
    pv_i = _checks.integer(owner, "pv", pv, minimum=0)
    lo = _checks.integer(owner, "cv_min", cv_min)
    hi = _checks.integer(owner, "cv_max", cv_max, minimum=1)
    if lo > 0:
        raise ValueError(f"{owner}: cv_min must be <= 0, got {cv_min!r}")
    if pv_i > hi:
        raise ValueError(f"{owner}: pv must be <= cv_max ({hi}), got {pv!r}")
    return pv_i, lo, hi


@attrs.define(eq=False)
class CTU:
    """Up counter: counts rising edges of ``cu``; ``q`` when ``cv >= pv``."""

    pv: int
    cv_max: int = DINT_MAX
    cv_min: int = DINT_MIN
    q: bool = attrs.field(default=False, init=False)
    cv: int = attrs.field(default=0, init=False)
    _cu_m: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pv, self.cv_min, self.cv_max = _check_counter("CTU", self.pv, self.cv_min, self.cv_max)

    def step(self, cu: bool, r: bool = False, dt: float = 0.0) -> bool:
        """Advance one scan; return ``q``."""
        edge = bool(cu) and not self._cu_m
        self._cu_m = bool(cu)
        if r:
            self.cv = 0
        elif edge and self.cv < self.cv_max:
            self.cv += 1
        q = self.cv >= self.pv
        self.q = q
        return q

    def reset(self) -> None:
        """Return to the state after construction."""
        self.q = False
        self.cv = 0
        self._cu_m = False


@attrs.define(eq=False)
class CTD:
    """Down counter: ``ld`` loads ``pv``; counts down rising edges of ``cd``;
    ``q`` when ``cv <= 0``."""

    pv: int
    cv_max: int = DINT_MAX
    cv_min: int = DINT_MIN
    q: bool = attrs.field(default=False, init=False)
    cv: int = attrs.field(default=0, init=False)
    _cd_m: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pv, self.cv_min, self.cv_max = _check_counter("CTD", self.pv, self.cv_min, self.cv_max)

    def step(self, cd: bool, ld: bool = False, dt: float = 0.0) -> bool:
        """Advance one scan; return ``q``."""
        edge = bool(cd) and not self._cd_m
        self._cd_m = bool(cd)
        if ld:
            self.cv = self.pv
        elif edge and self.cv > self.cv_min:
            self.cv -= 1
        q = self.cv <= 0
        self.q = q
        return q

    def reset(self) -> None:
        """Return to the state after construction."""
        self.q = False
        self.cv = 0
        self._cd_m = False


@attrs.define(eq=False)
class CTUD:
    """Up/down counter: ``qu`` when ``cv >= pv``, ``qd`` when ``cv <= 0``.

    ``r`` (reset to 0) dominates ``ld`` (load ``pv``); simultaneous up and
    down edges cancel.
    """

    pv: int
    cv_max: int = DINT_MAX
    cv_min: int = DINT_MIN
    qu: bool = attrs.field(default=False, init=False)
    qd: bool = attrs.field(default=False, init=False)
    cv: int = attrs.field(default=0, init=False)
    _cu_m: bool = attrs.field(default=False, init=False, repr=False)
    _cd_m: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pv, self.cv_min, self.cv_max = _check_counter("CTUD", self.pv, self.cv_min, self.cv_max)

    def step(self, cu: bool, cd: bool, r: bool = False, ld: bool = False,
             dt: float = 0.0) -> int:
        """Advance one scan; return ``cv`` (``qu``/``qd`` are attributes)."""
        up = bool(cu) and not self._cu_m
        down = bool(cd) and not self._cd_m
        self._cu_m = bool(cu)
        self._cd_m = bool(cd)
        if r:
            self.cv = 0
        elif ld:
            self.cv = self.pv
        elif up and not down and self.cv < self.cv_max:
            self.cv += 1
        elif down and not up and self.cv > self.cv_min:
            self.cv -= 1
        cv = self.cv
        self.qu = cv >= self.pv
        self.qd = cv <= 0
        return cv

    def reset(self) -> None:
        """Return to the state after construction."""
        self.qu = False
        self.qd = False
        self.cv = 0
        self._cu_m = False
        self._cd_m = False
