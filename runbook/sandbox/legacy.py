"""The legacy (Supabase-era) database a dry run stages users from: a fresh database on
the sandbox's PostgreSQL, loaded with legacy_supabase.sql.

That file is a verbatim copy of ../shared/fixtures/sql/legacy_supabase.sql (and of
tests/fixtures/legacy_supabase.sql, which a test keeps equal to it), shipped in
runbook's package data: an installed runbook has no ../shared to read.

Step stage-legacy-users reads it (StepContext.legacy_dsn) unless the operator's own
variable (legacy.source_dsn_env) is set; it is dropped when the sandbox closes.
"""

from __future__ import annotations

import secrets
from importlib import resources

SQL_FILE = "legacy_supabase.sql"
SIMULATED = ("legacy database: a database on the sandbox's PostgreSQL loaded from runbook's "
             "copy of legacy_supabase.sql (GoTrue's auth.users and public.profiles) stands in "
             "for the Supabase-era PostgreSQL, unless the variable legacy.source_dsn_env "
             "names is set, whose database is then read (read only)")


def fixture_sql() -> str:
    return resources.files("runbook.sandbox").joinpath(SQL_FILE).read_text(encoding="utf-8")


def create(server_dsn: str) -> tuple[str, str]:
    """(name, DSN) of a new database on `server_dsn`'s server, loaded with the fixture."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"runbook_legacy_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, connect_timeout=10, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(server_dsn, dbname=name)
    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute(fixture_sql())
    except BaseException:
        drop(server_dsn, name)
        raise
    return name, dsn


def drop(server_dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_dsn, connect_timeout=10, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
