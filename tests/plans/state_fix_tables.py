"""Step fix-tables' plan cases: {"migrations": [{"version", "name", "checksum", "sql"}],
"survey": what the database answered, in db_migrate's read answer's form
(runbook.lambda_runtime.survey.as_json; "pending", "edited" and "unknown" may be left
out, "roles" and "rds_iam" too), or null: nothing could be read (no cluster yet, or
db_migrate not deployed as desired)}. With database.connect: lambda also "account",
"layer" and "db_migrate" (tests/plans/functions.py)."""

from __future__ import annotations

from runbook.database import migrations
from runbook.lambda_runtime import survey
from tests.plans import functions


def state(step, data: dict):
    found = [migrations.Migration(m["version"], m["name"],
                                  migrations.TEMPLATES / f"{m['version']:04d}_{m['name']}.sql.j2",
                                  m["sql"], m["checksum"])
             for m in data["migrations"]]
    surveyed = data.get("survey")
    if surveyed is not None:
        surveyed = survey.from_json({"pending": [], "edited": [], "unknown": [], "roles": {},
                                     "rds_iam": True, **surveyed})
    if "db_migrate" not in data:
        return step.state(found, surveyed)
    account, fn = data["account"], data["db_migrate"]
    function = step.db_migrate_state(account, functions.artifact(fn),
                                     functions.found(step.db_migrate_spec(account), fn))
    return step.state(found, surveyed, layer=functions.layer(step, data["layer"]), fn=function)
