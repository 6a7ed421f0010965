"""Step deploy-legacy-loader's plan cases: {"account", "legacy_loader" (see
tests/plans/functions.py), "found": {"mapping": {"id", "tags", "mapping":
ListEventSourceMappings' entry}}} (a key left out: nothing found)."""

from __future__ import annotations

from runbook.resources.event_source_mapping import MappingFound
from tests.plans import functions


def state(step, data: dict):
    account = data["account"]
    fn = data["legacy_loader"]
    found = {key: MappingFound(**value) if value is not None else None
             for key, value in data.get("found", {}).items()}
    return step.state(account, functions.artifact(fn), functions.found(step.spec(account), fn),
                      found)
