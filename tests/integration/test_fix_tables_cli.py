"""`runbook plan|run --step fix-tables` as an operator runs them: live against a moto
server whose DB secret points at a real PostgreSQL, and as a dry run in the sandbox."""

from __future__ import annotations

import json
import secrets
import shutil
import socket

import boto3
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from runbook.database import migrations
from tests.conftest import MIGRATION_CHANGES, MIGRATIONS, REGION, drop_roles, read_report

# The roles config/prod.yaml declares for the functions, converged after the migrations;
# outside RDS, runbook's own login first creates rds_iam (NOLOGIN), which RDS has. A dry
# run's sandbox starts its own server, which has neither.
ROLE_CHANGES = ["postgres:role matbakh_post_confirmation", "postgres:role lambda_writer"]
DIRECT_ROLE_CHANGES = ["postgres:role rds_iam", *ROLE_CHANGES]

# What the DB secret holds for these tests. The test server ignores it (it trusts local
# connections), so it can be distinctive: it must never appear in any output.
PASSWORD = "Zq8-not-printed-anywhere-4Kx"


def point_secret_at(endpoint: str, dsn: str, *, host=None, port=None) -> None:
    """Make the DB secret describe `dsn` (host, port, dbname, user), as a tunnel would."""
    parts = conninfo_to_dict(dsn)
    secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
    value = json.loads(secrets.get_secret_value(SecretId="matbakh-db-postgres")["SecretString"])
    value.update(host=host or parts.get("host") or "localhost",
                 port=int(port or parts.get("port") or 5432), dbname=parts["dbname"],
                 username=parts.get("user") or "postgres", password=PASSWORD)
    secrets.put_secret_value(SecretId="matbakh-db-postgres", SecretString=json.dumps(value))


def edit_database(workdir, **values) -> None:
    """Set `database.<key>: value` in the working directory's config/prod.yaml."""
    config = workdir / "config" / "prod.yaml"
    data = yaml.safe_load(config.read_text())
    data["database"].update(values)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def provisioned(moto_endpoint, workdir, cli, pg_dsn):
    """Phase a1 applied live (on moto), with the DB secret pointing at a test database."""
    edit_database(workdir, sslmode="prefer")  # the test server may not speak TLS
    assert cli("run", "--phase", "a1").exit_code == 0
    point_secret_at(moto_endpoint, pg_dsn)
    return pg_dsn


@pytest.fixture
def role_changes(provisioned, workdir):
    """prod's roles under names of this test's own (roles are server-wide, and the test
    server is the session's), and the role changes a first fix-tables makes: rds_iam
    too where no earlier test made it. The roles are dropped afterwards."""
    suffix = secrets.token_hex(3)
    declared = yaml.safe_load((workdir / "config" / "prod.yaml").read_text())["database"]["roles"]
    roles = {f"{name}_{suffix}": spec for name, spec in declared.items()}
    edit_database(workdir, roles=roles)
    with psycopg.connect(provisioned, autocommit=True) as conn:
        missing = not conn.execute("SELECT to_regrole('rds_iam')").fetchone()[0]
    yield ["postgres:role rds_iam"] * missing + [f"postgres:role {name}" for name in roles]
    drop_roles(provisioned, roles)


def assert_no_password(workdir, *results):
    for result in results:
        assert PASSWORD not in result.output
    for path in (workdir / "reports").rglob("*.json*"):
        assert PASSWORD not in path.read_text()


def test_plan_lists_pending_migrations_and_sql_without_changing_anything(
        provisioned, role_changes, workdir, cli):
    listed = cli("plan", "--step", "fix-tables")
    with_sql = cli("plan", "--step", "fix-tables", "--sql")

    assert listed.exit_code == 0 and with_sql.exit_code == 0, with_sql.output
    for name in MIGRATIONS:
        assert f"+ postgres:migration {name}" in listed.stdout
    for role in role_changes:
        assert f"+ {role}" in listed.stdout
    assert (f"Plan: {len(MIGRATIONS) + len(role_changes)} to add, 0 to change, "
            "0 to destroy.") in listed.stdout
    assert "CREATE TABLE" not in listed.stdout
    assert "CREATE TABLE IF NOT EXISTS \"public\".private_profiles" in with_sql.stdout
    with psycopg.connect(provisioned) as conn:
        assert conn.execute("SELECT to_regnamespace('runbook'), to_regclass('public.profiles')"
                            ).fetchone() == (None, None)
    assert_no_password(workdir, listed, with_sql)


def test_run_applies_the_migrations_once(provisioned, role_changes, workdir, cli):
    first = cli("run", "--step", "fix-tables")
    assert first.exit_code == 0, first.output
    step = read_report(workdir, "fix-tables")["steps"][0]
    assert step["changed"] is True
    assert [c["resource"] for c in step["changes"]] == MIGRATION_CHANGES + role_changes
    assert step["outputs"]["schema_version"] == len(MIGRATIONS)
    assert step["api_calls"]["write"] == 0  # reading the secret is the only AWS call

    second = cli("run", "--step", "fix-tables")
    assert second.exit_code == 0, second.output
    step = read_report(workdir, "fix-tables")["steps"][0]
    assert step["changed"] is False and step["changes"] == []
    assert "unchanged" in second.stdout
    assert_no_password(workdir, first, second)


def test_an_edited_migration_exits_2_naming_the_file(provisioned, workdir, cli, tmp_path,
                                                      monkeypatch):
    assert cli("run", "--step", "fix-tables").exit_code == 0
    copy = tmp_path / "sql"
    shutil.copytree(migrations.TEMPLATES, copy)
    monkeypatch.setattr(migrations, "TEMPLATES", copy)
    edited = copy / "0003_users.sql.j2"
    edited.write_text(edited.read_text().replace("varchar(20)", "varchar(32)"))

    result = cli("run", "--step", "fix-tables")

    assert result.exit_code == 2
    assert "0003_users.sql.j2 was changed after it was applied" in result.stderr
    assert "Traceback" not in result.output
    with psycopg.connect(provisioned) as conn:
        length = conn.execute("SELECT character_maximum_length FROM information_schema.columns "
                              "WHERE table_name = 'users' AND column_name = 'phone'").fetchone()
    assert length == (20,)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_database_says_why_and_what_to_do(provisioned, moto_endpoint, workdir, cli):
    point_secret_at(moto_endpoint, provisioned, host="127.0.0.1", port=free_port())
    result = cli("run", "--step", "fix-tables")
    assert result.exit_code == 2
    assert "cannot connect to 127.0.0.1" in result.stderr
    assert "private subnets" in result.stderr and "database.connect: lambda" in result.stderr
    assert "Traceback" not in result.output
    assert_no_password(workdir, result)


def test_connect_through_lambda_needs_vpc_integrate_first(provisioned, workdir, cli):
    # db_migrate runs in vpc-integrate's subnets with its security group.
    edit_database(workdir, connect="lambda")
    result = cli("run", "--step", "fix-tables")
    assert result.exit_code == 2
    assert "needs vpc-integrate's" in result.stderr and "runbook run --phase a3" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_dry_run_applies_the_migrations_and_the_verify_pass_applies_nothing(workdir, cli):
    result = cli("run", "--step", "fix-tables", "--dry-run")
    assert result.exit_code == 0, result.output
    report = read_report(workdir, "fix-tables", dry_run=True)
    assert [s["name"] for s in report["steps"]] == ["network", "database", "store-secrets",
                                                    "fix-tables"]
    applied = report["steps"][-1]
    assert applied["changed"] is True
    assert [c["resource"] for c in applied["changes"]] == MIGRATION_CHANGES + DIRECT_ROLE_CHANGES
    verify = report["verify_pass"]["steps"]
    assert [s["name"] for s in verify] == ["fix-tables"]
    assert verify[0]["changed"] is False and verify[0]["changes"] == []
    assert report["verify_pass"]["writes"] == 0
    assert any("database endpoint" in item for item in report["simulated"])


@pytest.mark.slow
def test_dry_run_through_lambda_deploys_db_migrate_and_the_verify_pass_writes_nothing(
        workdir, cli):
    edit_database(workdir, connect="lambda")
    result = cli("run", "--step", "fix-tables", "--dry-run")
    assert result.exit_code == 0, result.output
    report = read_report(workdir, "fix-tables", dry_run=True)
    assert [s["name"] for s in report["steps"]] == ["network", "database", "store-secrets",
                                                    "vpc-integrate", "fix-tables"]
    applied = report["steps"][-1]
    resources = [c["resource"] for c in applied["changes"]]
    assert "lambda:function matbakh-cognito-db-migrate" in resources
    assert resources[-len(MIGRATIONS) - len(ROLE_CHANGES):] == MIGRATION_CHANGES + ROLE_CHANGES
    versions = list(range(1, len(MIGRATIONS) + 1))
    assert applied["outputs"]["applied_versions"] == versions
    assert f"db_migrate applied {', '.join(f'{v:04d}' for v in versions)}" in result.output
    verify = report["verify_pass"]
    assert [s["name"] for s in verify["steps"]] == ["fix-tables"]
    assert verify["steps"][0]["changes"] == [] and verify["steps"][0]["changed"] is False
    assert verify["steps"][0]["outputs"]["applied_versions"] == []
    assert verify["writes"] == 0
    assert any("Lambda code" in item for item in report["simulated"])


# -- runbook invoke db_migrate ----------------------------------------------------------

READ_EVENT = {"action": "read", "schemas": {"app": "public", "users": "app", "audit": "audit"},
              "migrations": [], "roles": {}}


@pytest.mark.slow
def test_invoke_db_migrate_dry_run_reads_the_ledger_fix_tables_wrote(workdir, cli, tmp_path):
    edit_database(workdir, connect="lambda")
    event = tmp_path / "read.json"
    event.write_text(json.dumps(READ_EVENT))

    result = cli("invoke", "db_migrate", "--event", str(event), "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["function"] == "matbakh-cognito-db-migrate" and answer["ok"] is True
    # The sandbox ran fix-tables first, through this same function: its ledger is there.
    assert answer["result"]["action"] == "read"
    assert [(a["version"], a["name"]) for a in answer["result"]["applied"]] == [
        (int(name[:4]), name[5:-len(".sql.j2")]) for name in MIGRATIONS]
    assert any('"db_migrate request"' in line for line in answer["log"])
    assert PASSWORD not in result.output


def test_invoke_db_migrate_without_connect_lambda_exits_2_naming_the_setting(workdir, cli,
                                                                           tmp_path):
    event = tmp_path / "read.json"
    event.write_text(json.dumps(READ_EVENT))

    result = cli("invoke", "db_migrate", "--event", str(event), "--dry-run")

    assert result.exit_code == 2
    assert "database.connect: lambda" in result.stderr
    assert "database.connect: direct" in result.stderr
    assert "Traceback" not in result.output and "sandbox:" not in result.output

    unknown = cli("invoke", "db-migrat", "--event", str(event), "--dry-run")
    assert unknown.exit_code == 2
    assert "pre_signup, post_confirmation, db_migrate" in unknown.stderr
