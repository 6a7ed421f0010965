"""Step deploy-post-confirmation's plan cases: {"account", "layer", "post_confirmation"
(see tests/plans/functions.py), "pool": DescribeUserPool's UserPool or null}."""

from __future__ import annotations

from tests.plans import functions


def state(step, data: dict):
    account = data["account"]
    fn = data["post_confirmation"]
    return step.state(account, functions.layer(step, data["layer"]), functions.artifact(fn),
                      functions.found(step.spec(account), fn), data.get("pool"))
