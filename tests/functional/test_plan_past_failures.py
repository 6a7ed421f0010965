"""A plan-only run against in-process moto goes on past a step it cannot plan, leaving
out only the steps that consume it; a real run still stops at the first failure."""

from __future__ import annotations

import boto3

from tests.conftest import REGION
from tests.functional.conftest import run_steps as run

A1 = ["network", "database", "store-secrets"]
LATER = ["cognito", "vpc-integrate", "fix-tables", "deploy-post-confirmation", "integration-test"]


def test_an_unreachable_database_hides_only_the_steps_that_need_it(account, config):
    applied, _ = run(config, A1)
    assert all(r.status == "ok" for r in applied.values())

    # Live, fix-tables connects to the cluster's endpoint, which resolves nowhere here.
    planned, aws = run(config, LATER, plan_only=True)

    assert planned["cognito"].status == "ok" and planned["cognito"].changes
    assert planned["vpc-integrate"].status == "ok" and planned["vpc-integrate"].changes
    fix_tables = planned["fix-tables"]
    assert fix_tables.status == "failed" and fix_tables.error_kind == "input"
    assert "cannot connect" in fix_tables.error
    deploy = planned["deploy-post-confirmation"]
    assert deploy.status == "not_run" and deploy.changes == []
    assert deploy.error == "it needs fix-tables, which could not be planned"
    assert planned["integration-test"].status == "not_run"
    assert aws.total("write") == 0
    assert boto3.client("cognito-idp", region_name=REGION).list_user_pools(
        MaxResults=10)["UserPools"] == []


def test_a_run_still_stops_at_the_first_failure(account, config):
    # No cluster yet: store-secrets cannot run, and cognito, which does not need it,
    # is not run either. A run never goes on past a failure.
    results, aws = run(config, ["store-secrets", "cognito"])
    assert results["store-secrets"].status == "failed"
    assert results["cognito"].status == "not_run" and results["cognito"].error is None
    assert aws.total("write") == 0
