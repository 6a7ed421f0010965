"""Files runbook writes on the operator's machine: whole or not at all, under one cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """$RUNBOOK_CACHE_DIR, else $XDG_CACHE_HOME/runbook (~/.cache/runbook): built layers
    (runbook.functions.package) and the RDS CA bundle (runbook.database.rds_ca)."""
    if os.environ.get("RUNBOOK_CACHE_DIR"):
        return Path(os.environ["RUNBOOK_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "runbook"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file renamed into place (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
