"""IEC 61131-3 edge detectors R_TRIG and F_TRIG.

Both follow the standard's bodies exactly (IEC 61131-3, edge detection FBs)::

    R_TRIG:  Q := CLK AND NOT M;      M := CLK;
    F_TRIG:  Q := NOT CLK AND NOT M;  M := NOT CLK;

with the memory ``M`` initially FALSE. Two consequences of the standard that
surprise people, kept on purpose and covered by tests:

* R_TRIG reports an edge on the first scan if CLK is already TRUE.
* F_TRIG reports an edge on the first scan if CLK is FALSE, because ``M``
  stores NOT CLK and starts FALSE, i.e. "CLK was TRUE before".

Pass ``m=True`` to F_TRIG (the IEC memory variable) to suppress that phantom
first-scan falling edge. ``dt`` is accepted for the uniform ``step(..., dt)``
signature and ignored.
"""

from __future__ import annotations

import attrs

from blocks import _checks


@attrs.define(eq=False)
class R_TRIG:
    """Rising-edge detector: ``q`` is true for one scan when ``clk`` rises."""

    m: bool = False
    q: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.m = _checks.boolean("R_TRIG", "m", self.m)

    def step(self, clk: bool, dt: float = 0.0) -> bool:
        """Advance one scan; return ``q``."""
        if clk:
            q = not self.m
            self.m = True
        else:
            q = False
            self.m = False
        self.q = q
        return q


@attrs.define(eq=False)
class F_TRIG:
    """Falling-edge detector: ``q`` is true for one scan when ``clk`` falls.

    ``m`` is the standard's memory (NOT CLK of the previous scan); its default
    FALSE means a first scan with ``clk`` false reports an edge, per the
    standard. Construct with ``m=True`` to treat the first scan as "was false".
    """

    m: bool = False
    q: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.m = _checks.boolean("F_TRIG", "m", self.m)

    def step(self, clk: bool, dt: float = 0.0) -> bool:
        """Advance one scan; return ``q``."""
        if clk:
            q = False
            self.m = False
        else:
            q = not self.m
            self.m = True
        self.q = q
        return q
