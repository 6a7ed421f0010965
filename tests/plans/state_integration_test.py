"""Step integration-test's plan cases: {"pool_id", "client_id", "function_name",
"user": TestUser}. Its plan is one change, whatever exists: it acts on every run."""

from __future__ import annotations

from runbook.steps.integration_test import TestState, TestUser
from tests.plans.harness import build


def state(step, data: dict):
    return TestState(data["pool_id"], data["client_id"], data["function_name"], None, None,
                     build(TestUser, data["user"]))
