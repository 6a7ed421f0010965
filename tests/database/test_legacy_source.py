"""Reading the legacy users (runbook.legacy.source) against a real PostgreSQL loaded
with the Supabase-era fixture, and the users it adds (legacy_users_extra.sql): who is
staged, who is skipped and why, what the profile holds; the transaction is read only;
a DSN never shows in an error; the sandbox's legacy database is the fixture."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from runbook.legacy import source, users
from runbook.sandbox import legacy as sandbox_legacy
from tests.conftest import LEGACY_SQL

EXTRA = Path(__file__).with_name("legacy_users_extra.sql")


@pytest.fixture
def legacy_extra(legacy_dsn):
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute(EXTRA.read_text())
    return legacy_dsn


def test_the_fixtures_three_users_are_staged_with_their_hash_and_profile(legacy_dsn):
    classified = users.classify(source.read(legacy_dsn))

    assert classified.skipped == {}
    staged = {user.email: user for user in classified.users}
    assert sorted(staged) == ["anna.schmidt@example.com", "karim.haddad@example.com",
                              "legacy.owner@example.com"]
    owner = staged["legacy.owner@example.com"]
    assert owner.hash == "$2a$10$P9K.6PR42kIzhRUxj/inYOnj5IBu2CrzaSWeCKmRuSu8VEvpqm49O"
    assert owner.profile == {"display_name": "Legacy Owner", "role": "user", "language": "de"}
    assert staged["karim.haddad@example.com"].profile["role"] == "admin"


def test_oauth_only_unconfirmed_addressless_and_unverifiable_users_are_skipped_by_reason(
        legacy_extra):
    rows = source.read(legacy_extra)
    classified = users.classify(rows)

    assert len(rows) == 9
    assert classified.skipped == {"no_email": 1, "no_password_hash": 2,
                                  "email_not_confirmed": 1, "unsupported_hash_format": 1}
    staged = {user.email: user for user in classified.users}
    assert len(staged) == 4
    argon = staged["argon.user@example.com"]   # lower-cased; no profile row
    assert argon.hash.startswith("$argon2id$")
    assert argon.profile == {"display_name": "Argon User"}


def test_two_rows_with_one_address_once_lower_cased_are_refused_masked(legacy_dsn):
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email, encrypted_password, "
                     "email_confirmed_at) VALUES (gen_random_uuid(), "
                     "'Anna.Schmidt@example.com', NULL, now())")
    with pytest.raises(users.DuplicateEmails) as refused:
        users.classify(source.read(legacy_dsn))
    assert "a***@example.com" in str(refused.value)
    assert "anna.schmidt" not in str(refused.value).lower()


def test_the_read_is_a_read_only_transaction(legacy_dsn, monkeypatch):
    monkeypatch.setattr(source, "QUERY", "DELETE FROM auth.users RETURNING email, "
                        "encrypted_password, true, NULL, NULL, NULL")
    with pytest.raises(source.SourceError, match="25006"):   # read_only_sql_transaction
        source.read(legacy_dsn)
    with psycopg.connect(legacy_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 3


def test_no_error_quotes_the_dsn_or_its_password(pg_server):
    with pytest.raises(source.BadDsn) as bad:
        source.read("postgresql://legacy:s3cretpw@[broken")
    assert "s3cretpw" not in str(bad.value) and "broken" not in str(bad.value)

    dsn = psycopg.conninfo.make_conninfo(pg_server, user="no_such_legacy_role",
                                         password="s3cretpw", dbname="postgres")
    with pytest.raises(source.SourceError) as failed:
        source.read(dsn)
    assert "s3cretpw" not in str(failed.value)


def test_the_sandbox_loads_runbooks_copy_of_the_fixture_and_drops_it(pg_server):
    name, dsn = sandbox_legacy.create(pg_server)
    try:
        assert len(users.classify(source.read(dsn)).users) == 3
    finally:
        sandbox_legacy.drop(pg_server, name)
    with psycopg.connect(pg_server) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (name,)).fetchone()[0] == 0


def test_runbooks_copy_of_the_fixture_is_the_shared_one():
    assert sandbox_legacy.fixture_sql() == LEGACY_SQL.read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_sandbox_has_the_legacy_database_for_its_steps_and_drops_it_on_close(pg_server):
    from runbook.output.progress import Progress
    from runbook.sandbox.stack import Sandbox

    with Sandbox(Progress(quiet=True), pg_dsn=pg_server) as sandbox:
        name = sandbox.legacy_database
        assert sandbox.step_context()["legacy_dsn"] == sandbox.legacy_dsn
        assert len(users.classify(source.read(sandbox.legacy_dsn)).users) == 3
        assert any("legacy_supabase.sql" in item for item in sandbox.simulated)
    with psycopg.connect(pg_server) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (name,)).fetchone()[0] == 0
