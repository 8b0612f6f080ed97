"""Secrets kept in files of their own beside the io_map, never in it: readable by their owner only.

The cluster's Raft password and CURVE keys (runtime/cluster/security.py) and the cloud link's
connection string and device key (runtime/cloud/hub.py) are read here: a file that is missing,
unreadable or readable by others is refused with one line naming it.
"""

from __future__ import annotations

import stat
from pathlib import Path


class SecretFileError(OSError):
    """A secret file that is missing, unreadable or exposed: one line naming the file. An OSError,
    like a port in use: the site cannot start, and `ems run` says so and exits 1."""


def resolve(path: str, base: Path) -> Path:
    """A path of the io_map: absolute, or relative to the io_map's folder."""
    p = Path(path)
    return p if p.is_absolute() else base / p


def read_private(path: Path, what: str, missing_hint: str = "",
                 error: type[SecretFileError] = SecretFileError) -> bytes:
    """The bytes of a secret file that only its owner may read (mode 0600 or tighter)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist{f' ({missing_hint})' if missing_hint else ''}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    return data
