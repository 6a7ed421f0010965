"""The db_migrate handler (lambdas/db_migrate) against a real PostgreSQL: its read and
apply actions on the migrations runbook renders, its lock, and the events it refuses.

The handler is loaded from its file, as Lambda loads it, and reaches the database
through DB_DSN, as in a local run. The events are built as fix-tables builds them.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass

import psycopg
import pytest

from runbook.database import migrations
from runbook.lambda_runtime import ledger, migrate_event
from runbook.lambda_runtime.migrate_event import APPLY, READ, Item, RoleSpec
from runbook.lambda_runtime.schemas import Schemas
from tests.database.test_fix_tables import count_ddl, query
from tests.conftest import MIGRATIONS
from tests.database.test_handlers import HANDLER_ENVIRONMENT, load_handler

ALL_VERSIONS = list(range(1, len(MIGRATIONS) + 1))   # every migration templates/ holds

PARAMS = {"schema": "public", "users_schema": "app", "audit_schema": "audit", "roles": {}}
TABLES = ("app.registration_outbox", "app.users", "audit.registrations", "public.private_profiles",
          "public.profiles")


@dataclass
class Context:
    """The part of Lambda's context the handler reads: its request id and its time."""

    timeout_s: float = 60.0
    aws_request_id: str = "c0ffee00-0000-4000-8000-00000000db01"

    def __post_init__(self):
        self.deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@pytest.fixture
def db_migrate(pg_dsn, monkeypatch):
    """The handler module, connected to a fresh database through DB_DSN."""
    for name in HANDLER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DB_DSN", pg_dsn)
    return load_handler("db_migrate")


def rendered(*extra: tuple[int, str, str]) -> list:
    """The repository's migrations as fix-tables renders them, plus `extra` (version,
    name, sql) added after them."""
    found = list(migrations.load(PARAMS))
    return found + [Item(version, name, ledger.checksum(sql), sql) for version, name, sql in extra]


def event(action: str, found=None, roles: dict | None = None) -> dict:
    return migrate_event.build(action, rendered() if found is None else found, roles or {},
                               Schemas())


def edited(found, version: int, old: str, new: str) -> list:
    """`found` with migration `version`'s SQL edited (and its checksum following it)."""
    out = []
    for m in found:
        if m.version == version:
            sql = m.sql.replace(old, new)
            assert sql != m.sql
            m = Item(m.version, m.name, ledger.checksum(sql), sql)
        out.append(m)
    return out


def tables(dsn) -> list[str]:
    return [row[0] for row in query(dsn, "SELECT schemaname || '.' || tablename FROM pg_tables "
                                         "WHERE schemaname || '.' || tablename = ANY (%s) "
                                         "ORDER BY 1", (list(TABLES),))]


# -- apply --------------------------------------------------------------------------------

def test_apply_migrates_an_empty_database_and_a_second_call_applies_nothing(db_migrate, pg_dsn):
    first = db_migrate.handler(event(APPLY), Context())
    assert first == {"action": "apply", "applied": ALL_VERSIONS, "recorded": ALL_VERSIONS,
                     "rds_iam_created": False, "roles": {}}
    assert tables(pg_dsn) == sorted(TABLES)
    assert query(pg_dsn, f"SELECT version, name FROM {ledger.TABLE} ORDER BY 1") == [
        (int(name[:4]), name[5:-len(".sql.j2")]) for name in MIGRATIONS]

    ddl = count_ddl(pg_dsn)
    second = db_migrate.handler(event(APPLY), Context())
    assert second["applied"] == [] and second["recorded"] == ALL_VERSIONS
    assert ddl() == []


def test_apply_records_the_same_checksums_as_a_direct_run(db_migrate, pg_dsn):
    db_migrate.handler(event(APPLY), Context())
    recorded = dict(query(pg_dsn, f"SELECT version, checksum FROM {ledger.TABLE}"))
    assert recorded == {m.version: m.checksum for m in migrations.load(PARAMS)}


def test_roles_are_converged_and_the_statements_returned(db_migrate, pg_dsn):
    writer = f"rb_writer_{secrets.token_hex(4)}"  # roles are server-wide: a new one
    roles = {writer: RoleSpec(write=("foo",))}
    first = db_migrate.handler(event(APPLY, roles=roles), Context())
    statements = first["roles"][writer]
    assert statements[0].startswith(f'DO $$ BEGIN CREATE ROLE "{writer}" LOGIN')
    assert f'GRANT rds_iam TO "{writer}"' in statements
    assert 'CREATE SCHEMA IF NOT EXISTS "foo"' in statements
    assert query(pg_dsn, "SELECT has_schema_privilege(%s, 'foo', 'USAGE')", (writer,)) == \
        [(True,)]

    again = db_migrate.handler(event(APPLY, roles=roles), Context())
    assert again["roles"] == {writer: []} and again["rds_iam_created"] is False


def test_two_apply_calls_at_once_apply_each_migration_once(db_migrate, pg_dsn):
    # A slow migration keeps the first call inside the lock while the second waits.
    found = rendered((98, "slow", "CREATE TABLE IF NOT EXISTS ran (migration int);\n"
                                  "INSERT INTO ran VALUES (98);\nSELECT pg_sleep(0.5);\n"),
                     (99, "after", "INSERT INTO ran VALUES (99);\n"))
    start = threading.Barrier(2, timeout=30)
    answers: list = [None, None]

    def call(index):
        start.wait()
        answers[index] = db_migrate.handler(event(APPLY, found), Context())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    every = ALL_VERSIONS + [98, 99]
    assert sorted(a["applied"] for a in answers) == [[], every]
    assert [a["recorded"] for a in answers] == [every] * 2
    assert query(pg_dsn, "SELECT migration, count(*) FROM ran GROUP BY 1 ORDER BY 1") == \
        [(98, 1), (99, 1)]


def test_the_lock_wait_ends_before_the_function_times_out(db_migrate, pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True, application_name="other runner") as holder:
        assert ledger.try_lock(holder)
        started = time.monotonic()
        with pytest.raises(db_migrate.MigrationRefused) as refused:
            db_migrate.handler(event(APPLY), Context(timeout_s=3))
        waited = time.monotonic() - started
    assert waited < 3  # half the time left, then the answer, inside the function's 3 s
    assert "the migration lock is held by backend pid" in str(refused.value)
    assert "other runner" in str(refused.value) and "Nothing was changed" in str(refused.value)
    assert tables(pg_dsn) == []


def test_a_failing_migration_names_itself_keeps_the_ones_before_and_shows_no_row(
        db_migrate, pg_dsn):
    found = rendered((99, "dup", "INSERT INTO profiles (email) VALUES ('ann@example.com');\n"
                                "INSERT INTO profiles (email) VALUES ('ann@example.com');\n"))
    with pytest.raises(db_migrate.MigrationFailed) as failed:
        db_migrate.handler(event(APPLY, found), Context())
    message = str(failed.value)
    assert message.startswith("migration 0099_dup failed and was rolled back: "
                              "PostgreSQL error 23505")
    assert "ann@example.com" not in message
    assert query(pg_dsn, f"SELECT max(version) FROM {ledger.TABLE}") == [(ALL_VERSIONS[-1],)]
    assert query(pg_dsn, "SELECT count(*) FROM profiles") == [(0,)]


# -- read ---------------------------------------------------------------------------------

def test_read_lists_what_is_pending_and_writes_nothing(db_migrate, pg_dsn):
    ddl = count_ddl(pg_dsn)
    role = f"rb_unmade_{secrets.token_hex(4)}"  # roles are server-wide: a name never used
    answer = db_migrate.handler(event(READ, roles={role: RoleSpec(write=("foo",))}), Context())
    assert answer["action"] == "read"
    assert (answer["applied"], answer["pending"], answer["edited"], answer["unknown"]) == \
        ([], ALL_VERSIONS, [], [])
    gap = answer["roles"][role]
    assert gap["exists"] is False and gap["summary"]["create_schemas"] == ["foo"]
    assert gap["statements"][0].startswith("DO $$ BEGIN CREATE ROLE")
    assert ddl() == []
    assert query(pg_dsn, "SELECT to_regnamespace('runbook'), to_regnamespace('foo'), "
                         "to_regrole(%s)", (role,)) == [(None, None, None)]


def test_read_after_apply_has_nothing_pending(db_migrate):
    db_migrate.handler(event(APPLY), Context())
    answer = db_migrate.handler(event(READ), Context())
    assert [a["version"] for a in answer["applied"]] == ALL_VERSIONS
    assert answer["pending"] == [] and answer["rds_iam"] in (True, False)


# -- refusals -----------------------------------------------------------------------------

def test_an_edited_migration_is_reported_by_read_and_refused_by_apply(db_migrate, pg_dsn):
    db_migrate.handler(event(APPLY), Context())
    changed = edited(rendered(), 2, "phone       text,", "phone       text,\n  fax text,")
    changed.append(Item(99, "more", ledger.checksum("CREATE TABLE more (id int);"),
                        "CREATE TABLE more (id int);"))

    read = db_migrate.handler(event(READ, changed), Context())
    assert (read["pending"], read["edited"]) == ([99], [2])

    ddl = count_ddl(pg_dsn)
    with pytest.raises(db_migrate.MigrationRefused) as refused:
        db_migrate.handler(event(APPLY, changed), Context())
    assert "migration 0002_private_profiles was changed after it was applied" in str(refused.value)
    assert "Nothing was changed" in str(refused.value)
    assert ddl() == []  # neither re-run nor the next one applied


def test_a_migration_the_event_does_not_carry_is_refused(db_migrate):
    db_migrate.handler(event(APPLY), Context())
    older = rendered()[:2]
    assert db_migrate.handler(event(READ, older), Context())["unknown"] == ALL_VERSIONS[2:]
    with pytest.raises(db_migrate.MigrationRefused, match="records migration 0003_users"):
        db_migrate.handler(event(APPLY, older), Context())


def valid_apply() -> dict:
    return event(APPLY)


MALFORMED = [
    ("not an object", lambda e: ["apply"], "the event is a list"),
    ("no action", lambda e: {k: v for k, v in e.items() if k != "action"}, "action is missing"),
    ("unknown action", lambda e: {**e, "action": "drop"}, "action is 'drop'"),
    ("no migrations", lambda e: {**e, "migrations": None}, "migrations is missing"),
    ("version as text", lambda e: {**e, "migrations": [{**e["migrations"][0], "version": "1"}]},
     "migrations[0].version is '1'"),
    ("apply without sql", lambda e: {**e, "migrations": [
        {k: v for k, v in e["migrations"][0].items() if k != "sql"}]}, "migrations[0].sql"),
    ("sql not matching its checksum", lambda e: {**e, "migrations": [
        {**e["migrations"][0], "sql": "DROP TABLE users;"}]},
     "migrations[0].checksum is not the sha256 of its sql"),
    ("a version twice", lambda e: {**e, "migrations": e["migrations"][:1] * 2},
     "migrations lists a version twice"),
    ("unknown trigger", lambda e: {**e, "roles": {"r": {"trigger": "pre-signup"}}},
     "roles.r.trigger is 'pre-signup'"),
    ("no schemas", lambda e: {k: v for k, v in e.items() if k != "schemas"},
     "schemas is missing"),
    ("an empty schema", lambda e: {**e, "schemas": {**e["schemas"], "audit": ""}},
     "schemas.audit is missing"),
    ("an unknown schema", lambda e: {**e, "schemas": {**e["schemas"], "extra": "x"}},
     "schemas.extra is not one of app, users, audit"),
]


@pytest.mark.parametrize("mutate,expected", [(m, x) for _, m, x in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_a_malformed_event_is_refused_naming_the_field_and_writes_nothing(
        db_migrate, pg_dsn, capsys, mutate, expected):
    with pytest.raises(migrate_event.MalformedRequest) as refused:
        db_migrate.handler(mutate(valid_apply()), Context())
    assert str(refused.value).startswith("malformed db_migrate event: ")
    assert expected in str(refused.value)
    assert tables(pg_dsn) == []
    assert query(pg_dsn, "SELECT to_regnamespace('runbook')") == [(None,)]
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["message"] == "db_migrate event rejected"


# -- logs ---------------------------------------------------------------------------------

def test_logs_are_json_lines_without_the_password_or_the_sql(db_migrate, pg_dsn, monkeypatch,
                                                             capsys):
    password = "Zq8-db-migrate-not-logged-4Kx"
    monkeypatch.setenv("DB_DSN", f"{pg_dsn} password={password}")
    db_migrate.handler(event(APPLY), Context())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message"] for line in lines] == [
        "db_migrate request", *["Migration applied"] * len(MIGRATIONS), "db_migrate completed"]
    assert all(line["request_id"] == Context.aws_request_id for line in lines)
    assert lines[-1]["applied"] == ALL_VERSIONS
    text = json.dumps(lines)
    assert password not in text and "CREATE TABLE" not in text
