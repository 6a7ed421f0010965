"""Step store-secrets' plan cases: {"db": SecretFound or null, "app": SecretFound or null,
"cluster_password_id": the cluster's runbook:password-id tag or null}, with the database
step's outputs under the case's "inputs". A found secret's "value" is its parsed
SecretString (fake values: a plan never shows them)."""

from __future__ import annotations

from runbook.resources.secret import SecretFound
from tests.plans.harness import build


def state(step, data: dict):
    return step.state(step.inputs.database, build(SecretFound, data.get("db")),
                      build(SecretFound, data.get("app")), data.get("cluster_password_id"))
