"""The events fix-tables sends the db_migrate function, built and checked in one place.

    {"action": "read" | "apply",
     "schemas": {"app": "public", "users": "app", "audit": "audit"},
                                          where the tables are, for the roles' grants
                                          (runbook.lambda_runtime.schemas)
     "migrations": [{"version": 1, "name": "profiles", "checksum": "<sha256 hex>",
                     "sql": "..."}],      every migration, rendered by runbook; "sql"
                                          only for apply, and it must match "checksum"
     "roles": {"lambda_writer": {"write": ["foo"], "trigger": null}}}
                                          read: every declared role; apply: the roles
                                          to converge

read   answers with what the ledger records and what each role lacks
       (runbook.lambda_runtime.survey.as_json). It runs in a READ ONLY transaction, so it writes
       nothing, which is why runbook counts its Invoke as a read (`is_read_only`).
apply  takes the advisory lock, reads the ledger again under it, and applies each
       pending migration in its own transaction with its ledger row; then creates
       rds_iam where missing and converges the roles given. It answers with an
       `Outcome`: {"action": "apply", "applied": [2, 3], "recorded": [1, 2, 3],
       "rds_iam_created": false, "roles": {"lambda_writer": ["GRANT ...", ...]}}.

Only SQL that runbook rendered, names and checksums travel: never a password or a row.
An event of another shape is refused by `parse` with MalformedRequest, naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from runbook.lambda_runtime import ledger
from runbook.lambda_runtime.schemas import Schemas

READ, APPLY = "read", "apply"
ACTIONS = (READ, APPLY)
TRIGGERS = ("post-confirmation", "process-user-signup")  # dbroles.TRIGGER_PRIVILEGES
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MalformedRequest(ValueError):
    """The event lacks a field db_migrate needs, or a field has the wrong type."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"malformed db_migrate event: {field} {problem}")


@dataclass(frozen=True)
class Item:
    version: int
    name: str
    checksum: str
    sql: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RoleSpec:
    """A declared role, as runbook.lambda_runtime.dbroles reads a spec."""

    write: tuple[str, ...] = ()
    trigger: str | None = None


@dataclass(frozen=True)
class Request:
    action: str
    schemas: Schemas
    migrations: tuple[Item, ...]
    roles: dict[str, RoleSpec]

    @property
    def checksums(self) -> dict[int, str]:
        return {m.version: m.checksum for m in self.migrations}


@dataclass(frozen=True)
class Outcome:
    """The apply action's answer."""

    applied: tuple[int, ...]               # versions this invocation applied
    recorded: tuple[int, ...]              # versions in the ledger afterwards
    rds_iam_created: bool
    roles: dict[str, tuple[str, ...]]      # the statements run, per role given

    def as_json(self) -> dict:
        return {"action": APPLY, "applied": list(self.applied), "recorded": list(self.recorded),
                "rds_iam_created": self.rds_iam_created,
                "roles": {name: list(sql) for name, sql in self.roles.items()}}

    @classmethod
    def from_json(cls, data) -> "Outcome":
        """ValueError when `data` has another shape (a function of another version)."""
        try:
            return cls(tuple(int(v) for v in data["applied"]),
                       tuple(int(v) for v in data["recorded"]), bool(data["rds_iam_created"]),
                       {name: tuple(sql) for name, sql in data["roles"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a db_migrate apply answer ({type(exc).__name__}: "
                             f"{exc})") from None


def build(action: str, migrations: Iterable[Item], roles: dict, schemas: Schemas) -> dict:
    """The event for `action`; `roles` maps names to specs (write, trigger)."""
    return {"action": action, "schemas": schemas.as_dict(),
            "migrations": [{"version": m.version, "name": m.name, "checksum": m.checksum,
                            **({"sql": m.sql} if action == APPLY else {})}
                           for m in migrations],
            "roles": {name: {"write": list(spec.write), "trigger": spec.trigger}
                      for name, spec in roles.items()}}


def is_read_only(payload) -> bool:
    """Whether an event asks for the read action (which writes nothing)."""
    return isinstance(payload, dict) and payload.get("action") == READ


def parse(event) -> Request:
    if not isinstance(event, dict):
        raise MalformedRequest("the event", f"is a {type(event).__name__}, not an object")
    action = event.get("action")
    if action not in ACTIONS:
        raise MalformedRequest("action", f"is {_shown(action)}; expected one of "
                                         f"{', '.join(ACTIONS)}")
    schemas = _schemas(event.get("schemas"))
    items = event.get("migrations")
    if not isinstance(items, list):
        raise MalformedRequest("migrations", "is missing or not a list")
    migrations = tuple(_item(item, f"migrations[{i}]", action) for i, item in enumerate(items))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MalformedRequest("migrations", "lists a version twice")
    roles = event.get("roles", {})
    if not isinstance(roles, dict):
        raise MalformedRequest("roles", "is not an object")
    return Request(action, schemas, tuple(sorted(migrations, key=lambda m: m.version)),
                   {name: _role(spec, f"roles.{name}") for name, spec in roles.items()})


def _item(item, where: str, action: str) -> Item:
    if not isinstance(item, dict):
        raise MalformedRequest(where, "is not an object")
    version = item.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedRequest(f"{where}.version", f"is {_shown(version)}, not a positive integer")
    name = _text(item, "name", f"{where}.name")
    checksum = _text(item, "checksum", f"{where}.checksum")
    if not _SHA256.match(checksum):
        raise MalformedRequest(f"{where}.checksum", "is not a sha256 in lower-case hex")
    if action != APPLY:
        return Item(version, name, checksum)
    sql = _text(item, "sql", f"{where}.sql")
    if ledger.checksum(sql) != checksum:
        raise MalformedRequest(f"{where}.checksum", "is not the sha256 of its sql")
    return Item(version, name, checksum, sql)


def _role(spec, where: str) -> RoleSpec:
    if not isinstance(spec, dict):
        raise MalformedRequest(where, "is not an object")
    write = spec.get("write") or []
    if not isinstance(write, list) or not all(isinstance(s, str) and s for s in write):
        raise MalformedRequest(f"{where}.write", "is not a list of schema names")
    trigger = spec.get("trigger")
    if trigger is not None and trigger not in TRIGGERS:
        raise MalformedRequest(f"{where}.trigger", f"is {_shown(trigger)}; expected null or "
                                                   f"{', '.join(TRIGGERS)}")
    return RoleSpec(tuple(write), trigger)


def _schemas(value) -> Schemas:
    if not isinstance(value, dict):
        raise MalformedRequest("schemas", "is missing or not an object")
    unknown = sorted(set(value) - set(Schemas().as_dict()))
    if unknown:
        raise MalformedRequest(f"schemas.{unknown[0]}", "is not one of app, users, audit")
    return Schemas(**{key: _text(value, key, f"schemas.{key}") for key in Schemas().as_dict()})


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedRequest(where, "is missing or not a non-empty string")
    return value


def _shown(value) -> str:
    return "missing" if value is None else repr(value)[:80]
