"""A record of every mutating AWS call as it completes.

Each entry is appended and flushed to a JSON-lines file the moment the call returns,
so a run that dies midway (crash, kill, power loss) still says what it made. The same
entries go into the report of a failed run. Only identifiers are kept, never request
parameters: a CreateSecret request carries the secret value.

Overlapping steps (runbook.engine.schedule) record from several threads at once: an
entry is appended and written whole under a lock, so lines never interleave.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

# SQS names a queue only by its URL (CreateQueue answers {"QueueUrl": ...}).
_ID_KEY = re.compile(r"(Id|Arn|ARN|Identifier|Name|QueueUrl)$")
_MAX_IDS = 12


class Journal:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.entries: list[dict] = []
        self._file = None
        self._lock = threading.Lock()

    def record(self, step: str, service: str, operation: str, response: dict) -> dict:
        entry = {
            "at": utc_now(),
            "step": step,
            "call": f"{service}:{operation}",
            "resources": resource_ids(response),
        }
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "a", encoding="utf-8")
                self._file.write(json.dumps(entry, sort_keys=True) + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
        return entry

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def resource_ids(response: dict) -> dict[str, str]:
    """Identifier-like string fields of a response (two levels deep), nothing else."""
    found: dict[str, str] = {}

    def visit(value, depth: int) -> None:
        if depth > 2 or len(found) >= _MAX_IDS:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "ResponseMetadata":
                    continue
                if isinstance(item, str) and _ID_KEY.search(key):
                    found.setdefault(key, item)
                elif isinstance(item, (dict, list)):
                    visit(item, depth + 1)
        elif isinstance(value, list):
            for item in value[:3]:
                visit(item, depth + 1)

    visit(response, 0)
    return found


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
