"""What a plan is made of: changes, and the values only an apply can tell.

A plan is data. Each `Change` names the resource, the action and what differs (what a
person reads), and carries how to apply it: a call with its arguments, which the engine
runs without knowing what it does. Nothing in a plan is computed at apply time except
the values marked `Unknown`, resolved from what earlier changes made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar


class Unknown:
    """A value that exists only once a planned change is applied: the id of a VPC the plan
    creates, say. `ref` names where the value will come from, (resource key, attribute),
    when the plan knows; the executor resolves it after that resource is applied.

    It reads as "(known after apply)" in plans and reports, and it is never equal to a
    real value, so a diff against it always shows a change.
    """

    TEXT: ClassVar[str] = "(known after apply)"
    __slots__ = ("ref",)

    def __init__(self, ref: tuple[str, str] | None = None):
        self.ref = ref

    def __str__(self) -> str:
        return self.TEXT

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash((Unknown, self.ref))

    def __lt__(self, other: object) -> bool:
        """Sorts like its text, so that a list of ids with some unknown still sorts."""
        return str(self) < str(other)

    def __gt__(self, other: object) -> bool:
        return str(self) > str(other)


UNKNOWN = Unknown()


def is_known(value: Any) -> bool:
    """False for None, an Unknown, or a list or tuple holding one. (A value that holds an
    Unknown deeper down, in a request or a policy, is found by unknown_fields.)"""
    if isinstance(value, (list, tuple)):
        return all(is_known(item) for item in value)
    return value is not None and not isinstance(value, Unknown)


def unknown_fields(value: Any, prefix: str = "") -> list[str]:
    """The dotted paths in `value` (a dict, list or dataclass) that hold an Unknown."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, dict):
        return [path for key, item in value.items()
                for path in unknown_fields(item, f"{prefix}{key}.")]
    if isinstance(value, (list, tuple)):
        return [path for index, item in enumerate(value)
                for path in unknown_fields(item, f"{prefix}{index}.")]
    return [prefix.rstrip(".")] if isinstance(value, Unknown) else []


@dataclass(frozen=True)
class Change:
    """One planned change to one resource.

    `action`, `resource` and `diff` are what a person reads: for a create, the main
    settings; for an update, {field: {"from": current, "to": desired}}. `diff` never
    holds a secret. `detail` is longer text shown only on request (`plan --sql`).

    `run` is how to apply it: the executor (Step.apply) calls `run(api, state, **args)`
    with the step's runbook.aws.api.Api and state; for a resource it is a
    runbook.resources.base.Apply. `run` and `args` stay out of reports; `op` names the
    operation for tests and logs.
    """

    action: str          # create | update | delete
    resource: str        # "<service>:<type> <name>", e.g. "ec2:vpc matbakh-prod-vpc"
    op: str
    args: dict = field(default_factory=dict)
    diff: dict = field(default_factory=dict)
    detail: str | None = None
    run: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    SYMBOLS: ClassVar[dict[str, str]] = {"create": "+", "update": "~", "delete": "-"}

    def describe(self) -> str:
        details = ", ".join(f"{key}: {_render(value)}" for key, value in self.diff.items())
        return f"{self.SYMBOLS[self.action]} {self.resource}" + (f" ({details})" if details else "")

    def as_report(self) -> dict:
        return {"resource": self.resource, "action": self.action, "diff": self.diff}


def _render(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        return f"{value['from']} -> {value['to']}"
    return str(value)


def diff_field(diffs: dict, name: str, current: Any, desired: Any) -> None:
    if current != desired:
        diffs[name] = {"from": current, "to": desired}
