"""Phase a4 in the sandbox, from the command line: `runbook run --phase a4 --dry-run` from
an empty account (a1..a4, the integration test and the registration test, then the verify
pass), and `runbook invoke process_user_signup --dry-run` with the fixture batch."""

from __future__ import annotations

import json
import re

import pytest

from runbook.steps import integration_test, registration_test
from tests.conftest import FIXTURES, read_report

A4_THROUGH = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
              "db-proxy", "deploy-post-confirmation", "integration-test", "event-bus",
              "deploy-process-user-signup", "registration-test"]
BATCH_EVENT = FIXTURES / "events" / "sqs_user_registered_batch.json"


@pytest.mark.slow
def test_dry_run_of_a4_is_green_with_every_a3_and_a4_check_ok(workdir, cli):
    result = cli("run", "--phase", "a4", "--dry-run")

    assert result.exit_code == 0, result.output
    report = read_report(workdir, "a4", dry_run=True)
    assert report["status"] == "ok"
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        (name, "ok") for name in A4_THROUGH]
    steps = {s["name"]: s for s in report["steps"]}
    for name, checks in (("integration-test", integration_test.CHECKS),
                         ("registration-test", registration_test.CHECKS)):
        assert steps[name]["idempotent"] is False
        assert [(c["name"], c["status"]) for c in steps[name]["checks"]] == [
            (check, "ok") for check in checks], steps[name]["checks"]
    # Before a4 made the bus, the a3 test user's event waited in the outbox; the a3
    # cleanup removed it.
    cleanup = steps["integration-test"]["checks"][-1]["detail"]
    assert "1 registration-outbox row(s)" in cleanup
    assert steps["registration-test"]["timings"]["signup_to_users_row_ms"] > 0

    # The verify pass runs a4's idempotent steps again, with no write.
    assert report["verify_pass"]["writes"] == 0
    assert [s["name"] for s in report["verify_pass"]["steps"]] == [
        "event-bus", "deploy-process-user-signup"]
    assert all(s["changes"] == [] for s in report["verify_pass"]["steps"])

    # The wiring a4 adds to a3's steps.
    post_confirmation = steps["deploy-post-confirmation"]
    function = next(c for c in post_confirmation["changes"] if c["resource"].startswith(
        "lambda:function"))
    assert "EVENT_BUS_NAME" in function["diff"]["environment"]
    endpoints = [c["resource"] for c in steps["vpc-integrate"]["changes"]
                 if c["resource"].startswith("ec2:vpc-endpoint")]
    assert "ec2:vpc-endpoint matbakh-prod-events" in endpoints

    # Both functions log in through the RDS Proxy as their own users, by IAM.
    proxy = steps["db-proxy"]["outputs"]
    for step, user in (("deploy-post-confirmation", "matbakh_post_confirmation"),
                       ("deploy-process-user-signup", "lambda_writer")):
        assert steps[step]["outputs"]["db_auth"] == "iam"
        role = next(c for c in steps[step]["changes"] if c["resource"].startswith("iam:role"))
        grants = " ".join(role["diff"]["policy"])
        assert f"dbuser:{proxy['proxy_resource_id']}/{user}" in grants
        assert "secretsmanager" not in grants

    simulated = " ".join(report["simulated"])
    assert "RDS Proxy" in simulated
    assert "poller" in simulated and "SendMessage" in simulated
    assert "scheduled rules never fire" in simulated
    alone = read_report(workdir, "registration-test", dry_run=True)
    assert alone["steps"] == [steps["registration-test"]] and alone["status"] == "ok"

    text = json.dumps(report)
    assert "runbook-it+" not in text and "@example.com" not in text.replace(
        "***@example.com", "")
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.", text)  # no JWT
    assert "error:" not in result.stderr


@pytest.mark.slow
def test_invoke_process_user_signup_dry_run_stores_the_fixture_batch(workdir, cli):
    result = cli("invoke", "process_user_signup", "--event", str(BATCH_EVENT), "--dry-run")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert '"message": "User stored"' in out and '"stored": 1, "failed": 0' in out
    assert out.rstrip().endswith('"batchItemFailures": []\n}'.rstrip())
    assert "lena.maier@example.com" not in result.output
