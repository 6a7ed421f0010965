"""Step deploy-post-confirmation's plan cases: {"account", "code_sha256", "layer",
"function" (see tests/plans/functions.py), "pool": DescribeUserPool's UserPool or null}."""

from __future__ import annotations

from tests.plans import functions


def state(step, data: dict):
    return step.state(data["account"], functions.layer(step, data["layer"]),
                      functions.artifact(data), functions.found(data["function"]),
                      data.get("pool"))
