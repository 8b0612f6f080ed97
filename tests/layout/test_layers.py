"""The layers of docs/architecture.md, checked on every file: who may import whom.

    plc        imports nothing of ours (the program contract)
    blocks     imports nothing of ours
    programs   imports only plc and blocks (and itself)
    sim        knows nothing of the controller (only itself)
    runtime    wires everything below it, never a tool (ems) or the panel (hmi)

Every import counts, also one inside a function; relative imports are resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"plc", "blocks", "programs", "sim", "runtime", "ems", "hmi"}
ALLOWED = {
    "plc": {"plc"},
    "blocks": {"blocks"},
    "programs": {"programs", "plc", "blocks"},
    "sim": {"sim"},
    "runtime": {"runtime", "plc", "blocks", "programs", "sim"},
}


def imported_packages(source: str, module: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in `source`, the file of dotted `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's own package upwards
                base = module.split(".")[:-node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name.split(".")[0]))
    return found


def violations(package: str, source: str, module: str) -> list[str]:
    allowed = ALLOWED[package]
    return [f"{module} line {line} imports {top}" for line, top in imported_packages(source, module)
            if top in OURS and top not in allowed]


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_what_lies_below_it(package: str) -> None:
    assert files(package), f"no files under {package}/"
    found = [v for path in files(package) for v in violations(package, path.read_text(encoding="utf-8"),
                                                              module_name(path))]
    assert found == []


def test_a_program_importing_the_runtime_is_caught() -> None:
    source = "from plc.program import Program\nfrom runtime.image import ProcessImage\n"
    assert violations("programs", source, "programs.bad") == ["programs.bad line 2 imports runtime"]


def test_a_block_importing_the_contract_is_caught_also_inside_a_function() -> None:
    source = "import math\n\ndef f():\n    import plc.tags\n"
    assert violations("blocks", source, "blocks.bad") == ["blocks.bad line 4 imports plc"]


def test_a_relative_import_is_resolved_before_it_is_judged() -> None:
    assert violations("programs", "from ...runtime import site\n", "programs.modes.bad") == [
        "programs.modes.bad line 1 imports runtime"]
    assert violations("programs", "from . import base\n", "programs.modes.bad") == []


def test_the_contract_imports_nothing_of_ours() -> None:
    assert violations("plc", "from programs.enums import SiteState\n", "plc.bad") == [
        "plc.bad line 1 imports programs"]
