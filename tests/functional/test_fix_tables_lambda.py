"""fix-tables with `database.connect: lambda` in in-process moto, after a1 and
vpc-integrate, on a real PostgreSQL: the step deploys db_migrate in the private subnets
and runs the migrations through it.

moto runs no Lambda code, so, as in a dry run, the step's invocations run the real
handler through the local invoker (a subprocess, with the function's environment and
DB_DSN pointing at the test database).
"""

from __future__ import annotations

import json

import boto3
import psycopg
import pytest

from runbook import config as config_mod
from runbook.functions import package
from tests.conftest import MIGRATION_CHANGES, MIGRATIONS, REGION
from tests.functional.conftest import run_steps as run

ALL_VERSIONS = list(range(1, len(MIGRATIONS) + 1))   # every migration templates/ holds

BEFORE = ["network", "database", "store-secrets", "vpc-integrate"]
FUNCTION = "matbakh-cognito-db-migrate"
MIGRATIONS = MIGRATION_CHANGES
# The roles config/prod.yaml declares for the functions, converged after the migrations.
ROLES = ["postgres:role matbakh_post_confirmation", "postgres:role lambda_writer"]


def through_lambda(write_config, **database):
    def mutate(data):
        data["database"].update(connect="lambda", **database)
    return config_mod.load(write_config(mutate))


def applied(config, dsn):
    results, _ = run(config, BEFORE + ["fix-tables"], dsn)
    failed = {n: r.error for n, r in results.items() if r.status != "ok"}
    assert not failed, failed
    return results


def client(service):
    return boto3.client(service, region_name=REGION)


def granted(role_name: str) -> dict:
    policy = client("iam").get_role_policy(RoleName=role_name, PolicyName="runbook")
    out = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        actions = statement["Action"]
        for action in actions if isinstance(actions, list) else [actions]:
            out[action] = statement["Resource"]
    return out


def recorded(dsn) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute(
            "SELECT version FROM runbook.schema_migrations ORDER BY 1").fetchall()]


def test_db_migrate_runs_in_the_private_subnets_and_applies_the_migrations(
        account, pg_dsn, write_config):
    results = applied(through_lambda(write_config), pg_dsn)
    step = results["fix-tables"]
    resources = [c.resource for c in step.changes]
    assert resources == ["lambda:layer-version matbakh-cognito-deps",
                         f"iam:role {FUNCTION}-role", f"logs:log-group /aws/lambda/{FUNCTION}",
                         f"lambda:function {FUNCTION}", *MIGRATIONS, *ROLES]
    assert step.applied == len(resources)
    assert step.outputs["applied_versions"] == list(range(1, len(MIGRATIONS) + 1))
    assert step.outputs["schema_version"] == len(MIGRATIONS)
    assert step.outputs["migrate_function"] == FUNCTION
    assert recorded(pg_dsn) == ALL_VERSIONS

    conf = client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]
    vpc = results["vpc-integrate"].outputs
    assert sorted(conf["VpcConfig"]["SubnetIds"]) == sorted(vpc["subnet_ids"])
    assert conf["VpcConfig"]["SecurityGroupIds"] == [vpc["lambda_security_group_id"]]
    assert (conf["MemorySize"], conf["Timeout"]) == (256, 300)
    assert conf["CodeSha256"] == package.build_function("db_migrate").sha256
    assert conf["Environment"]["Variables"] == {
        "DB_SECRET_ARN": results["store-secrets"].outputs["db_secret_arn"]}
    assert [layer["Arn"] for layer in conf["Layers"]] == [
        client("lambda").list_layer_versions(LayerName="matbakh-cognito-deps")
        ["LayerVersions"][0]["LayerVersionArn"]]
    logs = client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{FUNCTION}")
    assert [g["logGroupName"] for g in logs["logGroups"]] == [f"/aws/lambda/{FUNCTION}"]


def test_second_apply_makes_no_write_and_plans_nothing(account, pg_dsn, write_config):
    config = through_lambda(write_config)
    applied(config, pg_dsn)

    again, aws = run(config, ["fix-tables"], pg_dsn)
    step = again["fix-tables"]
    assert step.status == "ok", step.error
    assert step.changes == [] and step.applied == 0
    assert step.api_calls["write"] == 0 and step.api_calls["read"] > 0
    assert aws.journal.entries == []
    assert step.outputs["applied_versions"] == [] and step.outputs["schema_version"] == len(MIGRATIONS)


def test_role_may_read_the_db_secret_and_nothing_else(account, pg_dsn, write_config):
    results = applied(through_lambda(write_config), pg_dsn)
    trust = client("iam").get_role(RoleName=f"{FUNCTION}-role")["Role"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]
    actions = granted(f"{FUNCTION}-role")
    assert actions["secretsmanager:GetSecretValue"] == results["store-secrets"].outputs[
        "db_secret_arn"]
    assert actions["logs:PutLogEvents"].endswith(f":log-group:/aws/lambda/{FUNCTION}:*")
    assert "ec2:CreateNetworkInterface" in actions
    assert "rds-db:connect" not in actions
    assert all(not a.endswith(":*") for a in actions)
    with pytest.raises(client("lambda").exceptions.ResourceNotFoundException):
        client("lambda").get_policy(FunctionName=FUNCTION)  # no one else may invoke it


def test_with_iam_auth_it_connects_as_the_master_user_by_token(account, pg_dsn, write_config):
    results = applied(through_lambda(write_config, auth="iam"), pg_dsn)
    database = results["database"].outputs
    env = client("lambda").get_function_configuration(FunctionName=FUNCTION)["Environment"]
    assert env["Variables"] == {"DB_AUTH": "iam", "DB_HOST": database["endpoint"],
                                "DB_PORT": "5432", "DB_NAME": "matbakh_main",
                                "DB_USER": "postgres",
                                "DB_SSLROOTCERT": "/opt/rds-ca/global-bundle.pem"}
    actions = granted(f"{FUNCTION}-role")
    assert "secretsmanager:GetSecretValue" not in actions
    assert actions["rds-db:connect"] == (
        f"arn:aws:rds-db:{REGION}:123456789012:dbuser:{database['cluster_resource_id']}/postgres")
    assert recorded(pg_dsn) == ALL_VERSIONS


def test_plan_before_the_function_exists_lists_it_and_every_migration(
        account, pg_dsn, write_config):
    config = through_lambda(write_config)
    run(config, BEFORE, pg_dsn)
    planned, aws = run(config, ["fix-tables"], pg_dsn, plan_only=True)
    step = planned["fix-tables"]
    assert step.status == "ok", step.error
    assert f"lambda:function {FUNCTION}" in [c.resource for c in step.changes]
    migration_changes = [c for c in step.changes if c.resource.startswith("postgres:")]
    assert [c.resource for c in migration_changes] == MIGRATIONS + ROLES
    assert all("db_migrate reads it once deployed" in c.diff["if"] for c in migration_changes)
    assert step.api_calls["write"] == 0 and aws.total("write") == 0
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('runbook')").fetchone() == (None,)


def test_converged_plan_reads_through_the_function_and_lists_a_new_migration(
        account, pg_dsn, write_config, templates):
    config = through_lambda(write_config)
    applied(config, pg_dsn)
    (templates / "0099_more.sql.j2").write_text("CREATE TABLE more (id int);\n")
    planned, aws = run(config, ["fix-tables"], pg_dsn, plan_only=True)
    step = planned["fix-tables"]
    assert [c.resource for c in step.changes] == ["postgres:migration 0099_more.sql.j2"]
    assert "if" not in step.changes[0].diff  # read from the database, not assumed
    assert aws.total("write") == 0


def test_an_edited_migration_is_bad_input_naming_the_file(account, pg_dsn, write_config,
                                                          templates):
    config = through_lambda(write_config)
    applied(config, pg_dsn)
    path = templates / "0003_users.sql.j2"
    path.write_text(path.read_text().replace("varchar(20)", "varchar(32)"))
    results, _ = run(config, ["fix-tables"], pg_dsn)
    step = results["fix-tables"]
    assert step.error_kind == "input"  # exit code 2
    assert "0003_users.sql.j2 was changed after it was applied" in step.error


def test_a_failing_migration_fails_the_step_naming_the_function_and_the_error(
        account, pg_dsn, write_config, templates):
    (templates / "0099_broken.sql.j2").write_text(
        "CREATE TABLE half (id int);\nSELECT no_such_function();\n")
    results, _ = run(through_lambda(write_config), BEFORE + ["fix-tables"], pg_dsn)
    step = results["fix-tables"]
    assert step.status == "failed" and step.error_kind == "failure"
    assert f"failed on lambda:function {FUNCTION}: MigrationFailed: migration 0099_broken " \
           "failed and was rolled back: PostgreSQL error 42883" in step.error
    assert recorded(pg_dsn) == ALL_VERSIONS
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.half')").fetchone() == (None,)


def test_the_function_log_group_gets_the_handler_lines(account, pg_dsn, write_config):
    applied(through_lambda(write_config), pg_dsn)
    logs = client("logs")
    streams = logs.describe_log_streams(logGroupName=f"/aws/lambda/{FUNCTION}")["logStreams"]
    messages = [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=f"/aws/lambda/{FUNCTION}", logStreamName=s["logStreamName"])["events"]]
    lines = [json.loads(m) for m in messages if m.startswith("{")]
    assert {"db_migrate request", "Migration applied", "db_migrate completed"} <= {
        line["message"] for line in lines}


def test_roles_converge_through_the_function_and_then_stay_converged(
        account, pg_dsn, write_config):
    config = through_lambda(write_config, roles={
        "lambda_writer": {"write": ["foo"]},
        "matbakh_trigger": {"trigger": "post-confirmation"}})
    first = applied(config, pg_dsn)["fix-tables"]
    roles = [c.resource for c in first.changes if c.resource.startswith("postgres:role ")
             and c.resource != "postgres:role rds_iam"]  # rds_iam is server-wide: may exist
    assert roles == ["postgres:role lambda_writer", "postgres:role matbakh_trigger"]
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(
            "SELECT has_schema_privilege('lambda_writer', 'foo', 'USAGE'), "
            "has_column_privilege('matbakh_trigger', 'public.profiles', 'email', 'INSERT'), "
            "has_table_privilege('matbakh_trigger', 'public.profiles', 'SELECT')"
        ).fetchone() == (True, True, False)

    again, _ = run(config, ["fix-tables"], pg_dsn)
    assert again["fix-tables"].changes == [] and again["fix-tables"].api_calls["write"] == 0
