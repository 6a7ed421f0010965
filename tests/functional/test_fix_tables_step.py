"""fix-tables after phase a1 in in-process moto, on a real PostgreSQL: the step reads
the DB secret store-secrets wrote, and a second apply changes nothing anywhere."""

from __future__ import annotations

import json

import boto3
import psycopg
import pytest
from moto import mock_aws

from runbook import config as config_mod
from tests.conftest import MIGRATION_CHANGES, REGION
from tests.functional.conftest import run_steps as run

A1 = ["network", "database", "store-secrets"]


@pytest.fixture
def config(write_config):
    return config_mod.load(write_config(lambda d: d["database"].update(
        roles={"lambda_writer": {"write": ["foo", "bar"]},
               "matbakh_trigger": {"trigger": "post-confirmation"}})))


@mock_aws
def test_second_apply_of_fix_tables_makes_no_mutating_call_and_no_change(config, pg_dsn):
    first, _ = run(config, A1 + ["fix-tables"], pg_dsn)
    assert all(r.status == "ok" for r in first.values()), [r.error for r in first.values()]
    # rds_iam is created once per server (roles are server-wide), so it may exist already.
    assert [c.resource for c in first["fix-tables"].changes
            if c.resource != "postgres:role rds_iam"] == [
        *MIGRATION_CHANGES,
        "postgres:role lambda_writer",
        "postgres:role matbakh_trigger"]
    assert first["fix-tables"].api_calls["write"] == 0
    assert first["fix-tables"].api_calls["read"] > 0  # the DB secret was read and checked

    again, aws = run(config, ["fix-tables"], pg_dsn)
    result = again["fix-tables"]
    assert result.status == "ok", result.error
    assert result.changes == [] and result.applied == 0
    assert result.api_calls["write"] == 0
    assert aws.journal.entries == []
    assert result.outputs == {"schema_version": len(MIGRATION_CHANGES), "schema": "public",
                              "roles": ["lambda_writer", "matbakh_trigger"]}


@mock_aws
def test_a_db_secret_without_its_fields_is_bad_input_naming_the_next_command(config, pg_dsn):
    run(config, A1, pg_dsn)
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId="matbakh-db-postgres", SecretString=json.dumps({"host": "h", "password": "p-hidden"}))
    results, _ = run(config, ["fix-tables"], pg_dsn)
    result = results["fix-tables"]
    assert result.error_kind == "input"
    assert "lacks port, dbname, username" in result.error
    assert "runbook run --step store-secrets" in result.error
    assert "p-hidden" not in result.error
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('runbook')").fetchone() == (None,)
