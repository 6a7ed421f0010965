"""Shared fixtures. Tests are organised by how much I/O they do:

tests/unit         no I/O beyond temp files (config, plans, helpers)
tests/plans        every step's plan as data: state in, changes out, no AWS at all
tests/functional   steps against in-process moto (`mock_aws`)
tests/database     fix-tables and the connector against a real PostgreSQL (pgserver, or
                   RUNBOOK_PG_DSN: a superuser, as the tests create roles)
tests/integration  the `runbook` command against a moto server, in-process or as a
                   subprocess, and the dry-run sandbox with a real PostgreSQL
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROD_CONFIG = REPO / "config" / "prod.yaml"
REGION = "eu-central-1"
# The migrations fix-tables applies, in order, and the plan's resource for each.
MIGRATIONS = tuple(sorted(p.name for p in (REPO / "templates" / "sql").glob("*.sql.j2")))
MIGRATION_CHANGES = [f"postgres:migration {name}" for name in MIGRATIONS]
# A stand-in for AWS's global-bundle.pem (one self-signed certificate, no key). A live run
# would fetch the real one from AWS's trust-store site: no test may need the internet, so
# every test, fixture and `runbook` subprocess reads this file instead.
TEST_CA_BUNDLE = REPO / "runbook" / "sandbox" / "stand-in-rds-ca.pem"
os.environ["RUNBOOK_RDS_CA_BUNDLE"] = str(TEST_CA_BUNDLE)


# pytest-xdist runs the suite with --dist loadgroup (pyproject.toml). A module's tests
# go to one worker, so that what a module builds once (a sandbox, a clean a1..a5 run, in
# a module-scoped fixture) is built once. The modules in SPREAD are the exception: their
# tests are long and independent, so they are spread over the workers test by test, and
# each worker that gets one builds the module's fixture once for itself.
SPREAD = frozenset({"tests/integration/test_crash_consistency.py"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::")[0]
        if module not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(module))


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch):
    """No test may reach a real account: fake credentials, no profile, no endpoint."""
    no_real_aws(monkeypatch)


def no_real_aws(monkeypatch) -> None:
    """The environment of `_no_real_aws`, for fixtures wider than one test."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/runbook-tests")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/runbook-tests")


def prod_data() -> dict:
    return yaml.safe_load(PROD_CONFIG.read_text())


@pytest.fixture
def write_config(tmp_path):
    """write_config(mutate=None, text=None, name='prod') -> Path of an environment file.

    `mutate(data)` edits a deep copy of config/prod.yaml's data in place; `text`
    writes the given YAML verbatim instead.
    """

    def write(mutate=None, *, text: str | None = None, name: str = "prod") -> Path:
        path = tmp_path / "config" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            data = copy.deepcopy(prod_data())
            if mutate is not None:
                mutate(data)
            text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text)
        return path

    return write


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(capsys):
    """cli('run', '--phase', 'a1', ...) -> Result; runs runbook's `main` in-process."""
    from runbook.cli import main

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return invoke


def read_report(workdir: Path, name: str, *, dry_run: bool = False) -> dict:
    """The latest report `name` under workdir/reports/prod, checked against the schema."""
    import json

    import jsonschema

    from runbook.output.report import load_schema

    path = workdir / "reports" / "prod" / ("dry-run" if dry_run else "") / f"{name}.json"
    report = json.loads(path.read_text())
    jsonschema.validate(report, load_schema())
    return report


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> Result:
    """Run `python -m runbook ...` in a subprocess (a separate process, as an operator would)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "runbook", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def _moto_server():
    import logging

    from moto.server import ThreadedMotoServer

    from runbook.sandbox import rds as sandbox_rds
    from runbook.sandbox import rds_proxy as sandbox_rds_proxy

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sandbox_rds.install()  # DescribeDBEngineVersions, which moto 5.2.5 lacks
    sandbox_rds_proxy.install()  # CreateDBProxy in end-to-end IAM mode
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_endpoint(_moto_server, monkeypatch):
    """A moto server emptied for this test; AWS_ENDPOINT_URL points at it."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{_moto_server}/moto-api/reset",
                                                  method="POST")).read()
    monkeypatch.setenv("AWS_ENDPOINT_URL", _moto_server)
    return _moto_server


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding config/prod.yaml, as an operator's checkout would."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "prod.yaml").write_text(PROD_CONFIG.read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- PostgreSQL: a real server ---------------------------------------------------------

FIXTURES = REPO / "tests" / "fixtures"
LEGACY_SQL = FIXTURES / "legacy_supabase.sql"


@pytest.fixture(scope="session")
def session_postgres():
    """The session's PostgreSQL server: RUNBOOK_PG_DSN when set, else an embedded one
    in a directory of its own, not under pytest's base temp (tests/postgres.py says why)."""
    from tests.postgres import SessionPostgres

    server = SessionPostgres(os.environ.get("RUNBOOK_PG_DSN"))
    yield server
    server.stop()


@pytest.fixture
def pg_server(session_postgres):
    """The DSN of the session's PostgreSQL server, which answered just before the test
    (started again if it had died)."""
    return session_postgres.ensure()


@pytest.fixture
def make_database(pg_server):
    """make_database(owner=None) -> the DSN of a fresh, empty database on the test server.

    With `owner` (a role made for the test), the database belongs to it and the DSN logs
    in as it; the role is dropped with the database afterwards.
    """
    import secrets

    import psycopg
    from psycopg.conninfo import make_conninfo

    made: list[tuple[str, str | None]] = []

    def make(owner: str | None = None) -> str:
        name = f"rbtest_{secrets.token_hex(4)}"
        with psycopg.connect(pg_server, autocommit=True) as conn:
            if owner:
                conn.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE")
            conn.execute(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        made.append((name, owner))
        return make_conninfo(pg_server, dbname=name, **({"user": owner} if owner else {}))

    yield make
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name, owner in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            if owner:
                conn.execute(f"DROP ROLE IF EXISTS {owner}")


def drop_roles(dsn: str, names) -> None:
    """Drop those of the roles `names` that exist, with their privileges in `dsn`'s
    database. Roles are server-wide: a test that makes some on the session's server
    drops them, so that later tests find the server as they expect. `dsn` must log in as
    a role that may drop them (the server's superuser)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        made = [row[0] for row in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))]
        if made:
            conn.execute(f"DROP OWNED BY {', '.join(made)}")
            conn.execute(f"DROP ROLE {', '.join(made)}")


@pytest.fixture
def pg_dsn(make_database):
    """The DSN of a fresh, empty database on the test server, dropped afterwards."""
    return make_database()


@pytest.fixture
def legacy_dsn(pg_dsn):
    """A fresh database loaded with the Supabase-era fixture."""
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(LEGACY_SQL.read_text())
    return pg_dsn


@pytest.fixture
def templates(tmp_path, monkeypatch):
    """A copy of templates/sql that the test may edit; fix-tables reads it."""
    import shutil

    from runbook.database import migrations

    copy = tmp_path / "sql"
    shutil.copytree(migrations.TEMPLATES, copy)
    monkeypatch.setattr(migrations, "TEMPLATES", copy)
    return copy
