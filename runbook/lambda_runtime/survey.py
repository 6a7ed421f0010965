"""What fix-tables reads from a database before it plans, in one read-only transaction.

The same reading serves both ways in: runbook connecting directly
(`database.connect: direct`) takes a Survey itself; the db_migrate function inside the
VPC (`connect: lambda`) takes it there and answers with `as_json`, which runbook turns
back into a Survey with `from_json`. Either way the plan is made from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from runbook.lambda_runtime import dbroles, ledger


@dataclass(frozen=True)
class Survey:
    applied: dict[int, ledger.Applied]      # the ledger
    comparison: ledger.Comparison           # the migrations given, against the ledger
    rds_iam: bool                           # the role exists (it does on RDS)
    roles: dict[str, dbroles.Gap]           # what each declared role lacks


def take(conn, checksums: Mapping[int, str], roles: Mapping[str, object],
         schemas) -> Survey:
    """Read the ledger, compare `checksums` (version -> sha256) with it, and read each
    role in `roles` (name -> spec); writes nothing."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        applied = ledger.read_applied(conn)
        return Survey(applied, ledger.compare(checksums, applied), dbroles.read_rds_iam(conn),
                      {name: dbroles.read_gap(conn, name, spec, schemas)
                       for name, spec in roles.items()})


def as_json(survey: Survey) -> dict:
    found = survey.comparison
    return {
        "applied": [{"version": a.version, "name": a.name, "checksum": a.checksum,
                     "applied_at": a.applied_at.isoformat()} for a in survey.applied.values()],
        "pending": list(found.pending), "edited": list(found.edited),
        "unknown": list(found.unknown),
        "rds_iam": survey.rds_iam,
        "roles": {name: {"exists": g.exists, "summary": g.summary,
                         "statements": list(g.statements)} for name, g in survey.roles.items()},
    }


def from_json(data: dict) -> Survey:
    """The Survey in a read answer; ValueError when the answer has another shape."""
    try:
        applied = {int(a["version"]): ledger.Applied(int(a["version"]), str(a["name"]),
                                                     str(a["checksum"]),
                                                     datetime.fromisoformat(a["applied_at"]))
                   for a in data["applied"]}
        comparison = ledger.Comparison(*(tuple(int(v) for v in data[key])
                                         for key in ("pending", "edited", "unknown")))
        roles = {name: dbroles.Gap(name, bool(g["exists"]), dict(g["summary"]),
                                   tuple(g["statements"])) for name, g in data["roles"].items()}
        return Survey(applied, comparison, bool(data["rds_iam"]), roles)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a db_migrate read answer ({type(exc).__name__}: {exc})") from None
