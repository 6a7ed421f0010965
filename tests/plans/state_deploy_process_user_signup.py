"""Step deploy-process-user-signup's plan cases: {"account", "layer",
"process_user_signup" (see tests/plans/functions.py), "found": {"mapping": {"id",
"tags", "mapping": ListEventSourceMappings' entry}, "relay-rule": RuleFound's fields,
"relay-target": TargetFound's fields}} (a key left out: nothing found)."""

from __future__ import annotations

from runbook.resources.event_bus import RuleFound, TargetFound
from runbook.resources.event_source_mapping import MappingFound
from tests.plans import functions

KINDS = {"mapping": MappingFound, "relay-rule": RuleFound, "relay-target": TargetFound}


def state(step, data: dict):
    account = data["account"]
    fn = data["process_user_signup"]
    found = {key: KINDS[key](**value) if value is not None else None
             for key, value in data.get("found", {}).items()}
    return step.state(account, functions.layer(step, data["layer"]), functions.artifact(fn),
                      functions.found(step.spec(account), fn), found)
