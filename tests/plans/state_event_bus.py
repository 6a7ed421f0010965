"""Step event-bus's plan cases: {"account": "...", "found": {key: <Found> or null}} with
the keys of runbook.steps.event_bus.KEYS (a key left out: nothing found)."""

from __future__ import annotations

from runbook.resources.alarm import AlarmFound
from runbook.resources.event_bus import EventBusFound, RuleFound, TargetFound
from runbook.resources.queue import QueueFound

KINDS = {"bus": EventBusFound, "dlq": QueueFound, "queue": QueueFound, "rule": RuleFound,
         "target": TargetFound, "dlq-alarm": AlarmFound, "errors-alarm": AlarmFound}


def state(step, data: dict):
    # Built as given, not through harness.build: a pattern or a policy holds JSON lists,
    # which build would make tuples (and then differ from the spec's lists).
    found = {key: KINDS[key](**value) if value is not None else None
             for key, value in data.get("found", {}).items()}
    return step.state(data.get("account"), found)
