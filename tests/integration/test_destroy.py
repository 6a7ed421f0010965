"""`runbook destroy` against one account where staging and prod both ran a1..a5.

The account is a sandbox's moto server (with its PostgreSQL, Kafka broker and Lambda
stand-ins, as the crash sweep builds one: runbook/sandbox/sweep.py). The destroy is the
command an operator types, live against it (AWS_ENDPOINT_URL). What the account holds
of each environment is listed service by service with plain boto3 clients
(runbook.sandbox.leftovers), never with runbook's own listings.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import jsonschema
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runbook import config as config_mod
from runbook.output.progress import Progress
from runbook.output.report import load_schema
from runbook.sandbox import leftovers, sweep
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from tests.conftest import PROD_CONFIG, REPO

pytestmark = pytest.mark.slow

STAGING_CONFIG = REPO / "config" / "staging.yaml"


class Environment:
    """One environment of the shared account: its config and database."""

    def __init__(self, box: Sandbox, path: Path):
        self.config = config_mod.load(path)
        name = f"env_{secrets.token_hex(4)}"
        with psycopg.connect(box.pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.account = sweep.Account(box.aws_url, box.pg_dsn, kafka_broker=box.kafka_broker,
                                     legacy_dsn=box.legacy_dsn,
                                     database_dsn=make_conninfo(box.pg_dsn, dbname=name))

    def build(self) -> None:
        results = sweep.run(self.config, self.account)
        assert [(r.name, r.status) for r in results] == [(s, "ok") for s in sweep.RUN], \
            [f"{r.name}: {r.error}" for r in results if not r.ok]

    def held(self) -> dict[str, list[str]]:
        return leftovers.of_env(self.account.client, self.config.env,
                                self.config.function_name(""))


@pytest.fixture(scope="module")
def account():
    """A sandbox account where prod, then staging, ran a1..a5."""
    with Sandbox(Progress(quiet=True)) as box:
        prod, staging = Environment(box, PROD_CONFIG), Environment(box, STAGING_CONFIG)
        prod.build()
        staging.build()
        yield box, prod, staging


@pytest.fixture
def operator(account, tmp_path, monkeypatch, cli):
    """`runbook ...` as an operator runs it live against the account, from a checkout
    holding both environment files."""
    box = account[0]
    (tmp_path / "config").mkdir()
    for path in (PROD_CONFIG, STAGING_CONFIG):
        (tmp_path / "config" / path.name).write_text(path.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", box.aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SANDBOX_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SANDBOX_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return cli


def test_plan_destroy_lists_what_it_would_delete_and_changes_nothing(account, operator):
    _, prod, staging = account
    before = {"prod": prod.held(), "staging": staging.held()}

    result = operator("plan", "--destroy", "--env", "staging", "--json")

    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [s["name"] for s in plan["steps"]][:3] == ["migration-test", "deploy-user-migration",
                                                      "stage-legacy-users"]
    assert plan["steps"][-1]["name"] == "network"
    deleted = [c["resource"] for s in plan["steps"] for c in s["changes"]
               if c["action"] == "delete"]
    assert plan["summary"]["destroy"] == len(deleted) and plan["summary"]["kept"] == 0
    # Every function, role, queue, table, cluster... the account lists for staging.
    for kind in ("lambda:function", "iam:role", "sqs:queue", "dynamodb:table",
                 "rds:cluster", "kafka:cluster", "ec2:vpc", "cognito-idp:user-pool"):
        for name in before["staging"][kind]:
            assert any(r.startswith(kind) and name in r for r in deleted), (kind, name)
    assert {"prod": prod.held(), "staging": staging.held()} == before


def test_destroy_of_a_protected_environment_is_refused(account, operator):
    _, prod, _ = account
    before = prod.held()

    result = operator("destroy", "--env", "prod", "--yes")

    assert result.exit_code == 2, result.stdout + result.stderr
    assert "database.deletion_protection" in result.stderr
    assert "cognito.deletion_protection" in result.stderr
    assert "legacy.deletion_protection" in result.stderr
    assert "Traceback" not in result.stderr
    assert prod.held() == before
    # Its plan still reads: what a destroy would take, and that it is refused.
    shown = operator("plan", "--destroy", "--env", "prod")
    assert shown.exit_code == 0, shown.stderr
    assert "- ec2:vpc matbakh-prod-vpc" in shown.stdout
    assert "runbook destroy refuses while database.deletion_protection" in shown.stdout
    assert prod.held() == before


def test_destroy_takes_staging_down_and_a_fresh_run_brings_it_back(account, operator,
                                                                    tmp_path):
    box, prod, staging = account
    prod_before = prod.held()
    assert staging.held(), "staging has nothing to destroy"
    sm = staging.account.client("secretsmanager")
    password = json.loads(sm.get_secret_value(
        SecretId=staging.config.secrets.db)["SecretString"])["password"]

    result = operator("destroy", "--env", "staging", "--yes")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert staging.held() == {}
    assert prod.held() == prod_before
    report = json.loads((tmp_path / "reports" / "staging" / "destroy.json").read_text())
    jsonschema.validate(report, load_schema())
    assert report["status"] == "ok" and report["destroy"]["remaining"] == []
    assert [s["name"] for s in report["steps"]][-1] == "network"
    assert all(s["api_calls"]["write"] >= len(s["changes"]) for s in report["steps"])
    kept = leftovers.retained(staging.account.client, "staging",
                              staging.config.database.cluster_id)
    assert sorted(kept["secretsmanager:secret (pending deletion)"]) == sorted(
        [staging.config.secrets.db, staging.config.secrets.app_config])
    assert len(kept["kms:key (pending deletion)"]) == 1
    assert len(kept["rds:cluster-snapshot"]) == 1
    assert len(report["destroy"]["retained"]) == 4
    # No secret value in what the operator saw or in the report.
    assert password not in result.stdout + result.stderr + json.dumps(report)

    staging.account.database_dsn = Environment(box, STAGING_CONFIG).account.database_dsn
    staging.build()

    listed = [s for s in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]
              if s["Name"] in (staging.config.secrets.db, staging.config.secrets.app_config)]
    assert len(listed) == 2 and not any(s.get("DeletedDate") for s in listed)
    assert prod.held() == prod_before
