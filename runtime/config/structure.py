"""Build attrs config records from parsed TOML, collecting every error with its key path.

Config classes are plain attrs classes whose field names are the TOML keys and whose type
hints say what each key takes. This module checks unknown keys, missing keys, types and the
fields' own validators, and reports all problems at once instead of stopping at the first.
"""

from __future__ import annotations

import difflib
import enum
import math
import types
import typing
from typing import Any, Literal, Union

import attrs

from runtime.config.lines import Path, format_path


@attrs.frozen
class ConfigError:
    path: Path
    message: str
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {format_path(self.path)}: {self.message}"


class ConfigErrors(Exception):
    """Every problem found in one config file."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class Errors:
    """Collects problems while structuring; `raise_if_any` turns them into ConfigErrors."""

    def __init__(self) -> None:
        self.items: list[ConfigError] = []

    def add(self, path: Path, message: str) -> None:
        self.items.append(ConfigError(path, message))

    def __bool__(self) -> bool:
        return bool(self.items)


_MISSING = object()


def describe(value: Any) -> str:
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table", list: "array"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def convert(tp: Any, value: Any, path: Path, errors: Errors) -> Any:
    """Convert one TOML value to type `tp`; on error, record it and return _MISSING."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return convert(options[0], value, path, errors)
        for option in options:  # first option that takes the value without error
            trial = Errors()
            result = convert(option, value, path, trial)
            if not trial:
                return result
        errors.add(path, f"expected one of {', '.join(_name(o) for o in options)}, got {describe(value)}")
        return _MISSING
    if origin is Literal:
        if value in args:
            return value
        errors.add(path, f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return _MISSING
    if attrs.has(tp):
        return structure(tp, value, path, errors)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in tp)
            errors.add(path, f"must be one of {choices}, got {value!r}")
            return _MISSING
    if origin in (list, tuple):
        if not isinstance(value, list):
            errors.add(path, f"expected an array, got {describe(value)}")
            return _MISSING
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                errors.add(path, f"expected an array of {len(args)} items, got {len(value)}")
                return _MISSING
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        items = [convert(t, v, path + (i,), errors) for i, (t, v) in enumerate(zip(item_types, value))]
        if any(item is _MISSING for item in items):  # reported; a record is not built from half an array
            return _MISSING
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            errors.add(path, f"expected a table, got {describe(value)}")
            return _MISSING
        value_type = args[1] if args else Any
        table = {k: convert(value_type, v, path + (k,), errors) for k, v in value.items()}
        return _MISSING if any(item is _MISSING for item in table.values()) else table
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):  # nan never compares, inf never ends: no setting means either
                errors.add(path, f"expected a finite number, got {describe(value)}")
                return _MISSING
            return float(value)
        errors.add(path, f"expected a number, got {describe(value)}")
        return _MISSING
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -2**63 <= value < 2**63:
                errors.add(path, f"expected an integer of at most 64 bits, got {value}")
                return _MISSING
            return value
        errors.add(path, f"expected an integer, got {describe(value)}")
        return _MISSING
    if tp in (bool, str):
        if type(value) is tp:
            return value
        errors.add(path, f"expected a {_name(tp)}, got {describe(value)}")
        return _MISSING
    raise TypeError(f"config type {tp!r} at {format_path(path)} is not supported")


def _name(tp: Any) -> str:
    if attrs.has(tp) or tp in (dict,):
        return "table"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def structure(cls: type, data: Any, path: Path, errors: Errors, base: Any = None) -> Any:
    """Build an instance of attrs class `cls` from a TOML table.

    With `base` (an instance of cls), keys present in `data` override the base's values and
    nested tables override the base's nested records field by field (presets + overrides).
    """
    if not isinstance(data, dict):
        errors.add(path, f"expected a table, got {describe(data)}")
        return _MISSING
    fields = {f.name: f for f in attrs.fields(cls)}
    hints = _hints(cls)
    for key in data:
        if key not in fields:
            errors.add(path + (key,), f"unknown key{_suggest(key, fields)}")
    kwargs: dict[str, Any] = {}
    failed = False
    for name, field in fields.items():
        if not field.init:
            continue
        if name not in data:
            if base is None and field.default is attrs.NOTHING:
                errors.add(path + (name,), "missing required key")
                failed = True
            continue
        nested_base = getattr(base, name, None) if base is not None else None
        tp = hints[name]
        if nested_base is not None and attrs.has(type(nested_base)) and isinstance(data[name], dict):
            value = structure(type(nested_base), data[name], path + (name,), errors, base=nested_base)
        else:
            value = convert(tp, data[name], path + (name,), errors)
        if value is _MISSING:
            failed = True
            continue
        if field.validator is not None and not _field_valid(field, value, path + (name,), errors):
            failed = True
            continue
        kwargs[name] = value
    if failed:
        return _MISSING
    try:
        return attrs.evolve(base, **kwargs) if base is not None else cls(**kwargs)
    except (TypeError, ValueError) as exc:
        errors.add(path, str(exc))
        return _MISSING


def _field_valid(field: attrs.Attribute, value: Any, path: Path, errors: Errors) -> bool:
    try:
        field.validator(None, field, value)  # type: ignore[misc]
    except (TypeError, ValueError) as exc:
        message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        errors.add(path, message)
        return False
    except AttributeError:
        pass  # a validator that needs the whole instance runs again when the record is built
    return True


def _suggest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(known))})"


MISSING = _MISSING
