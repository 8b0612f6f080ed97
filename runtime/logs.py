"""Logging to the console and to a rotating file under the site's data directory."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str, log_file: Path | None, max_bytes: int = 5_000_000, backups: int = 5) -> None:
    """Configure the root logger once: console always, rotating file when `log_file` is given."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups)
        rotating.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(rotating)
    for noisy in ("pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
