"""The shared connector against a real PostgreSQL."""

from __future__ import annotations

from runbook.lambda_runtime import db


def test_connect_reaches_a_real_server_and_with_database_switches_database(pg_dsn):
    target = db.from_dsn(pg_dsn, "test")
    with db.connect(target) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
    assert name == target.dbname
    with db.connect(target.with_database("postgres")) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "postgres"
