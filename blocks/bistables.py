"""IEC 61131-3 bistables SR (set dominant) and RS (reset dominant).

Bodies as in the standard::

    SR:  Q1 := S1 OR (NOT R AND Q1);
    RS:  Q1 := NOT R1 AND (S OR Q1);

The output keeps its IEC name ``q1``; ``q`` is a read-only alias so every
boolean block can be read the same way. ``dt`` is accepted for the uniform
``step(..., dt)`` signature and ignored.
"""

from __future__ import annotations

import attrs

from blocks import _checks


@attrs.define(eq=False)
class SR:
    """Set-dominant latch: with ``s1`` and ``r`` both true the output is set."""

    q1: bool = False

    def __attrs_post_init__(self) -> None:
        self.q1 = _checks.boolean("SR", "q1", self.q1)

    @property
    def q(self) -> bool:
        """Alias of ``q1``."""
        return self.q1

    def step(self, s1: bool, r: bool, dt: float = 0.0) -> bool:
        """Advance one scan; return ``q1``."""
        q1 = True if s1 else (False if r else self.q1)
        self.q1 = q1
        return q1


@attrs.define(eq=False)
class RS:
    """Reset-dominant latch: with ``s`` and ``r1`` both true the output is reset."""

    q1: bool = False

    def __attrs_post_init__(self) -> None:
        self.q1 = _checks.boolean("RS", "q1", self.q1)

    @property
    def q(self) -> bool:
        """Alias of ``q1``."""
        return self.q1

    def step(self, s: bool, r1: bool, dt: float = 0.0) -> bool:
        """Advance one scan; return ``q1``."""
        q1 = False if r1 else (True if s else self.q1)
        self.q1 = q1
        return q1
