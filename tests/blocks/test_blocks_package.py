"""Package-wide rules: exports, slotted attrs classes, purity, imports."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import attrs
import pytest

import blocks

BLOCKS_DIR = Path(blocks.__file__).parent
ALLOWED_IMPORTS = {"__future__", "attrs", "math", "numbers", "bisect", "collections",
                   "collections.abc", "typing", "blocks"}
BLOCK_CLASSES = [getattr(blocks, name) for name in blocks.__all__
                 if inspect.isclass(getattr(blocks, name)) and hasattr(getattr(blocks, name), "step")]


def test_issue_example_import_works():
    from blocks import PID, TON, Droop, MovingAverage  # noqa: F401


def test_all_lists_every_public_block_and_nothing_missing():
    assert sorted(blocks.__all__) == sorted(set(blocks.__all__))
    for name in blocks.__all__:
        assert hasattr(blocks, name)
    expected = {"TON", "TOF", "TP", "R_TRIG", "F_TRIG", "SR", "RS", "CTU", "CTD", "CTUD",
                "PID", "RampLimiter", "SlewLimitedSetpoint", "Clamp", "Deadband", "Hysteresis",
                "Debounce", "LowPass", "RateOfChange", "MovingAverage", "Curve", "Droop",
                "StateMachine", "Transition"}
    assert expected <= set(blocks.__all__)


@pytest.mark.parametrize("cls", BLOCK_CLASSES, ids=lambda c: c.__name__)
def test_every_block_is_a_slotted_attrs_class_without_setattr_hooks(cls):
    assert attrs.has(cls)
    assert "__slots__" in cls.__dict__
    # an attrs-generated __setattr__ (validators on set) would slow every step
    assert "__setattr__" not in cls.__dict__


@pytest.mark.parametrize("cls", BLOCK_CLASSES, ids=lambda c: c.__name__)
def test_every_step_takes_dt_in_seconds(cls):
    params = inspect.signature(cls.step).parameters
    assert "dt" in params


@pytest.mark.parametrize("path", sorted(BLOCKS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_blocks_import_only_stdlib_math_and_attrs(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name in ALLOWED_IMPORTS or name.startswith("blocks."), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted(BLOCKS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_blocks_touch_no_clock_io_or_globals(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Global), f"{path.name} uses global"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input"}, f"{path.name} calls {node.func.id}"
