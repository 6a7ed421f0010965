"""IAM policy documents as runbook reads, compares and shows them.

The same document comes back from AWS in more than one form: decoded by boto3 or as
URL-encoded JSON text (IAM), as JSON text (a VPC endpoint's PolicyDocument), with a
one-item Action or Resource as a string or as a list. `same` compares what a policy
grants, so that such a difference is not planned as a change on every run.
"""

from __future__ import annotations

import json


def document(value) -> dict | None:
    """A policy document from what an API returned: a dict, or (URL-encoded) JSON text."""
    if value is None or isinstance(value, dict):
        return value
    from urllib.parse import unquote

    return json.loads(unquote(value))


def same(current: dict | None, wanted: dict) -> bool:
    """Whether `current` grants exactly what `wanted` does (statement by statement)."""
    return current is not None and _statements(current) == _statements(wanted)


def _statements(policy: dict) -> list[str]:
    found = policy.get("Statement", [])
    out = []
    for statement in found if isinstance(found, list) else [found]:
        statement = dict(statement)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in statement:
                statement[key] = sorted(as_list(statement[key]))
        out.append(json.dumps(statement, sort_keys=True))
    return sorted(out)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allows(policy: dict | None) -> bool:
    """Whether `policy` grants anything: has a statement whose Effect is not Deny.

    A policy of Deny statements only (a guardrail) grants nothing; removing it would
    widen what its holder may do.
    """
    return any(statement.get("Effect") != "Deny" for statement in statement_list(policy))


def statement_list(policy: dict | None) -> list[dict]:
    found = (policy or {}).get("Statement", [])
    return found if isinstance(found, list) else [found]


def summary(policy: dict | None):
    """A policy as `action on resource` lines, for plans (`deny ...` for a Deny, `all
    but ...` for NotAction and NotResource)."""
    if policy is None:
        return None
    lines = []
    for statement in statement_list(policy):
        actions = _listed(statement, "Action")
        resources = _listed(statement, "Resource")
        effect = "deny " if statement.get("Effect") == "Deny" else ""
        lines.append(f"{effect}{actions} on {resources}")
    return lines


def _listed(statement: dict, key: str) -> str:
    if key not in statement and f"Not{key}" in statement:
        return "all but " + ", ".join(str(v) for v in as_list(statement[f"Not{key}"]))
    return ", ".join(str(v) for v in as_list(statement.get(key)))
