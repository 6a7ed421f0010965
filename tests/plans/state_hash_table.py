"""Step hash-table's plan cases: {"account": "...", "found": {"key": <KeyFound> or null,
"table": <TableFound> or null}} (a key left out: nothing found)."""

from __future__ import annotations

from runbook.resources.dynamodb_table import TableFound
from runbook.resources.kms_key import KeyFound

KINDS = {"key": KeyFound, "table": TableFound}


def state(step, data: dict):
    found = {key: KINDS[key](**value) for key, value in data.get("found", {}).items()
             if value is not None}
    return step.state(data.get("account"), **found)
