"""Step deploy-user-migration's plan cases: {"account", "layer", "user_migration" (see
tests/plans/functions.py), "pool": DescribeUserPool's UserPool or null, "client":
DescribeUserPoolClient's UserPoolClient or null}."""

from __future__ import annotations

from tests.plans import functions


def state(step, data: dict):
    account = data["account"]
    fn = data["user_migration"]
    return step.state(account, functions.layer(step, data["layer"]), functions.artifact(fn),
                      functions.found(step.spec(account), fn), data.get("pool"),
                      data.get("client"))
