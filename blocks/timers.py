"""IEC 61131-3 timers: TON (on-delay), TOF (off-delay), TP (pulse).

Timing model
------------
The runtime calls ``step(in_, dt)`` once per scan, where ``dt`` is the time in
seconds elapsed since the previous scan. There is no clock inside a timer: its
elapsed time ``et_s`` is the sum of the ``dt`` values of the scans it has been
running, so a simulation at 1000x real time and a 100 ms PLC scan see exactly
the same behaviour.

* The scan in which the starting edge is seen (IN rising for TON/TP, falling
  for TOF) is the timer's time zero: ``et_s = 0`` in that scan. Each later scan
  adds its ``dt``.
* ``q`` switches in the first scan in which ``et_s`` reaches ``pt_s``; in that
  scan ``et_s`` is set to exactly ``pt_s`` and it never exceeds ``pt_s``.
  So with ``pt_s = 1.0`` and ``dt = 0.1`` a TON's ``q`` rises 10 scans after
  the scan that saw IN rise, i.e. 1.0 s later, as in the standard's diagrams.
* "Reaches" is float-robust: ``et_s >= pt_s * (1 - 1e-9)``. Ten additions of
  0.1 give 0.9999999999999999, not 1.0; a bare ``>=`` would switch one scan
  late. A relative tolerance of 1e-9 of ``pt_s`` absorbs the rounding of
  millions of additions (worst case about n * 1.1e-16 relative after n scans)
  while being far below any meaningful time difference (1 ms on 11.6 days).
* ``pt_s = 0`` makes the timer transparent: the comparison is made in the
  same scan as the starting edge, so TON's ``q`` follows IN with no scan of
  delay and TP emits no pulse. For ``pt_s > 0`` the scan in which ``q``
  switches is the same as in the MatIEC reference implementation.
* ``pt_s`` may be changed between scans (it is an input in IEC 61131-3); the
  new value applies from the next comparison. Once ``q`` has switched, the
  timer holds until its input changes, as the standard's state machine does.

Timers are checked at construction only; ``dt`` must be >= 0 and is not
checked per scan.
"""

from __future__ import annotations

import attrs

from blocks import _checks

TIME_REL_TOL = 1e-9
"""Relative tolerance used when comparing an elapsed time with a preset."""

_REACH = 1.0 - TIME_REL_TOL


def reached(et_s: float, pt_s: float) -> bool:
    """The timer rule: has elapsed time ``et_s`` reached the preset ``pt_s``?"""
    return et_s >= pt_s * _REACH


@attrs.define(eq=False)
class TON:
    """On-delay timer: ``q`` rises once ``in_`` has been true for ``pt_s``.

    ``q`` falls, and ``et_s`` returns to 0, in the first scan in which ``in_``
    is false.
    """

    pt_s: float
    q: bool = attrs.field(default=False, init=False)
    et_s: float = attrs.field(default=0.0, init=False)
    _m: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pt_s = _checks.non_negative("TON", "pt_s", self.pt_s)

    def step(self, in_: bool, dt: float) -> bool:
        """Advance one scan; return ``q``."""
        if not in_:
            self._m = False
            self.q = False
            self.et_s = 0.0
            return False
        if self.q:
            return True
        if self._m:
            et = self.et_s + dt
        else:
            self._m = True
            et = 0.0
        pt = self.pt_s
        if et >= pt * _REACH:
            self.et_s = pt
            self.q = True
            return True
        self.et_s = et
        return False

    def reset(self) -> None:
        """Return to the state after construction."""
        self.q = False
        self.et_s = 0.0
        self._m = False


@attrs.define(eq=False)
class TOF:
    """Off-delay timer: ``q`` follows ``in_`` up at once, and falls ``pt_s``
    after ``in_`` falls.

    After the delay expires ``et_s`` stays at ``pt_s`` until ``in_`` rises
    again (as in the standard's timing diagram). A false ``in_`` that never
    was true does not start the timer.
    """

    pt_s: float
    q: bool = attrs.field(default=False, init=False)
    et_s: float = attrs.field(default=0.0, init=False)
    _m: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pt_s = _checks.non_negative("TOF", "pt_s", self.pt_s)

    def step(self, in_: bool, dt: float) -> bool:
        """Advance one scan; return ``q``."""
        if in_:
            self._m = True
            self.q = True
            self.et_s = 0.0
            return True
        if not self.q:
            return False
        if self._m:
            self._m = False
            et = 0.0
        else:
            et = self.et_s + dt
        pt = self.pt_s
        if et >= pt * _REACH:
            self.et_s = pt
            self.q = False
            return False
        self.et_s = et
        return True

    def reset(self) -> None:
        """Return to the state after construction."""
        self.q = False
        self.et_s = 0.0
        self._m = False


@attrs.define(eq=False)
class TP:
    """Pulse timer: a rising ``in_`` starts a pulse of exactly ``pt_s``.

    Edges during a running pulse are ignored (no retrigger). When the pulse
    ends ``et_s`` holds ``pt_s`` while ``in_`` stays true and returns to 0 as
    soon as ``in_`` is false (in the same scan if it already is).
    """

    pt_s: float
    q: bool = attrs.field(default=False, init=False)
    et_s: float = attrs.field(default=0.0, init=False)
    _m: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pt_s = _checks.non_negative("TP", "pt_s", self.pt_s)

    def step(self, in_: bool, dt: float) -> bool:
        """Advance one scan; return ``q``."""
        if self.q:
            et = self.et_s + dt
            pt = self.pt_s
            if et >= pt * _REACH:
                self.q = False
                self.et_s = pt if in_ else 0.0
            else:
                self.et_s = et
        elif in_:
            if not self._m:
                # Rising edge: start a pulse (a zero-length one ends at once).
                pt = self.pt_s
                if 0.0 >= pt * _REACH:
                    self.et_s = pt
                else:
                    self.q = True
                    self.et_s = 0.0
        else:
            self.et_s = 0.0
        self._m = bool(in_)
        return self.q

    def reset(self) -> None:
        """Return to the state after construction."""
        self.q = False
        self.et_s = 0.0
        self._m = False
