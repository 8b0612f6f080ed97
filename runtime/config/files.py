"""Config files in and errors out: the one path from a TOML file to data, and from collected
errors to `ConfigErrors` that name the file, the line and the key (io_maps, device profiles,
scenarios)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path as FsPath
from typing import Any

from runtime.config.lines import key_lines, line_of
from runtime.config.structure import ConfigError, ConfigErrors, Errors


def read_text(path: str | FsPath) -> str:
    """The file's text; a file that cannot be read is one ConfigError."""
    try:
        return FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError((), f"cannot read file: {exc.strerror}", str(path))]) from None
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError((), f"not UTF-8 text: {exc}", str(path))]) from None


def parse_toml(text: str, filename: str) -> dict[str, Any]:
    """The TOML document; a syntax error is one ConfigError with the line tomllib names."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigErrors([ConfigError((), f"not valid TOML: {exc}", filename,
                                        int(match.group(1)) if match else None)]) from None


def raise_errors(errors: Errors, text: str, filename: str) -> None:
    """Raise every collected error at once, each with the line of its key in `text`."""
    if errors:
        lines = key_lines(text)
        raise ConfigErrors([ConfigError(e.path, e.message, filename, line_of(lines, e.path)) for e in errors.items])
