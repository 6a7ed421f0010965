"""The process_user_signup handler (lambdas/process_user_signup) on SQS events of
`user.registered`, against a real PostgreSQL migrated by fix-tables.

Each handler module is loaded from its file, as Lambda loads it: a fresh load is a cold
container with its own connection. The handler reaches the database through DB_DSN.
"""

from __future__ import annotations

import copy
import json
import threading

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runbook.lambda_runtime import signups
from tests.database.test_handlers import EVENTS, Context, log_lines, migrate, query

FIXTURE = json.loads((EVENTS / "sqs_user_registered_batch.json").read_text())
LENA = "0f6b2c1e-3d4a-4b5c-8d9e-1f2a3b4c5d6e"   # the fixture's user
LENA_EMAIL = "lena.maier@example.com"
ROLE = "matbakh_process_user_signup"


def message(message_id: str, *, body: str | None = None, **detail) -> dict:
    """The fixture's record with this messageId; `detail` changes the event's detail
    (a value None removes the field), `body` replaces the whole body."""
    record = copy.deepcopy(FIXTURE["Records"][0])
    record["messageId"] = message_id
    envelope = json.loads(record["body"])
    del envelope["account"]  # as moto delivers it: the handler must not need it
    for key, value in detail.items():
        if value is None:
            envelope["detail"].pop(key, None)
        else:
            envelope["detail"][key] = value
    record["body"] = json.dumps(envelope) if body is None else body
    return record


def batch(*records) -> dict:
    return {"Records": list(records)}


def users(dsn):
    return query(dsn, "SELECT cognito_id, email, name, phone, email_verified FROM app.users "
                      "ORDER BY cognito_id")


pytestmark = pytest.mark.usefixtures("handler_environment")  # tests/database/conftest.py


@pytest.fixture
def containers(cold_start):
    """containers() -> a new process_user_signup container (cold_start)."""
    return lambda: cold_start("process_user_signup")


@pytest.fixture
def consumer(containers):
    return containers()


# -- the response -----------------------------------------------------------------------

def test_the_response_has_the_shape_aws_documents():
    """A misspelled key (BatchItemFailures, failures) reads as "all succeeded" to Lambda,
    which then deletes the failed messages: the shape is spelled out here, not imported."""
    assert signups.response(["m-1", "m-2", "m-1"]) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}
    assert signups.response([]) == {"batchItemFailures": []}
    assert (signups.BATCH_ITEM_FAILURES, signups.ITEM_IDENTIFIER) == (
        "batchItemFailures", "itemIdentifier")


# -- storing ----------------------------------------------------------------------------

def test_the_fixture_batch_stores_its_user(database, consumer, capsys):
    assert consumer.handler(FIXTURE, Context()) == {"batchItemFailures": []}
    assert users(database) == [(LENA, LENA_EMAIL, "Lena Maier", "+4915112345678", True)]
    (row_id,), = query(database, "SELECT id FROM app.users")
    assert len(row_id) == 36
    out, lines = log_lines(capsys)
    assert [line["message"] for line in lines] == ["User stored", "Batch processed"]
    assert lines[0]["sub"] == LENA and "@" not in out


def test_a_batch_of_good_malformed_and_duplicate_messages(database, consumer, capsys):
    bob = "bbbbbbbb-0000-4000-8000-000000000002"
    clash = "cccccccc-0000-4000-8000-000000000003"
    incoming = batch(
        message("good-lena"),
        message("not-json", body='{"detail": {"email": "secret.body@example.com"'),
        message("no-email", email=None),
        message("bad-email", email="lena.maier at example.com"),
        message("wrong-type", body=json.dumps({"detail-type": "user.deleted", "detail": {}})),
        message("verified-is-a-number", email_verified=1),
        message("duplicate-lena"),                       # the same event, delivered twice
        message("good-bob", cognito_user_id=bob, email="bob.berg@example.org", name="Bob",
                phone=None, email_verified=False),
        message("sub-key", cognito_user_id=None, sub="dddddddd-0000-4000-8000-000000000004",
                email="dora@example.org"),
        # Another Cognito user with Bob's address: the database refuses this row alone.
        message("address-taken", cognito_user_id=clash, email="bob.berg@example.org"),
    )

    result = consumer.handler(incoming, Context())

    assert result == {"batchItemFailures": [
        {"itemIdentifier": i} for i in ("not-json", "no-email", "bad-email", "wrong-type",
                                        "verified-is-a-number", "address-taken")]}
    assert users(database) == [
        (LENA, LENA_EMAIL, "Lena Maier", "+4915112345678", True),
        (bob, "bob.berg@example.org", "Bob", None, False),
        ("dddddddd-0000-4000-8000-000000000004", "dora@example.org", "Lena Maier",
         "+4915112345678", True)]

    out, lines = log_lines(capsys)
    rejected = {line["message_id"]: line["reason"] for line in lines
                if line["message"] == "Message rejected"}
    assert rejected == {
        "not-json": "body is not JSON (Expecting ',' delimiter at 46)",
        "no-email": "detail.email is missing",
        "bad-email": "detail.email is not an e-mail address",
        "wrong-type": "detail-type is not user.registered",
        "verified-is-a-number": "detail.email_verified is not true or false"}
    refused = [line for line in lines if line["message"] == "Message not stored"]
    assert [(r["message_id"], r["reason"][:24]) for r in refused] == [
        ("address-taken", "PostgreSQL error 23505: ")]
    stored = {line["message_id"]: line["message"] for line in lines
              if line["message"].startswith("User")}
    assert sorted(stored) == ["duplicate-lena", "good-bob", "good-lena", "sub-key"]
    # Lena's two deliveries: one inserts, the other finds the row.
    assert sorted(stored.values()) == ["User already stored"] + ["User stored"] * 3
    assert stored["good-bob"] == stored["sub-key"] == "User stored"
    assert lines[-1] == {**lines[-1], "message": "Batch processed", "messages": 10,
                         "stored": 4, "failed": 6}
    # No address and no body, not even the part of one a malformed message carried.
    assert "@" not in out and "secret.body" not in out and "lena.maier" not in out
    assert "bob.berg" not in out and "+4915112345678" not in out and "Lena Maier" not in out


def test_a_redelivered_message_is_a_no_op(database, consumer, containers, capsys):
    assert consumer.handler(FIXTURE, Context()) == {"batchItemFailures": []}
    before = query(database, "SELECT id, created_at, updated_at, xmin::text FROM app.users")

    redelivered = copy.deepcopy(FIXTURE)
    redelivered["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    for container in (consumer, containers()):  # the same container, and another one
        assert container.handler(redelivered, Context()) == {"batchItemFailures": []}

    assert query(database, "SELECT id, created_at, updated_at, xmin::text FROM app.users") == before
    _, lines = log_lines(capsys)
    assert [line["message"] for line in lines if line["message"].startswith("User")] == [
        "User stored", "User already stored", "User already stored"]


def test_a_message_naming_two_different_ids_is_malformed(database, consumer):
    both = message("two-ids", sub="eeeeeeee-0000-4000-8000-000000000005")
    assert consumer.handler(batch(both), Context()) == {
        "batchItemFailures": [{"itemIdentifier": "two-ids"}]}
    assert users(database) == []


def align_first_inserts(dsn):
    """Hold each first insert of a user until the next 0.2-second mark, so that racing
    deliveries reach the unique indexes at the same instant (as in test_handlers)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION public.align_first_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NOT EXISTS (SELECT 1 FROM app.users WHERE cognito_id = NEW.cognito_id) THEN
                PERFORM pg_sleep(0.2 - extract(epoch FROM clock_timestamp())::numeric % 0.2);
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER align_first_insert BEFORE INSERT ON app.users
              FOR EACH ROW EXECUTE FUNCTION public.align_first_insert()""")


def test_ten_concurrent_deliveries_of_one_message_make_one_row(database, containers, capsys):
    align_first_inserts(database)
    ten = [containers() for _ in range(10)]
    for container in ten:
        container.DATABASE.connection()  # each its own connection, logged in before the race
    start = threading.Barrier(len(ten), timeout=60)
    results: list[dict] = []
    failures: list[BaseException] = []

    def deliver(container, number):
        start.wait()
        try:
            results.append(container.handler(FIXTURE, Context(aws_request_id=f"delivery-{number}")))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=deliver, args=(c, n)) for n, c in enumerate(ten)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == [] and results == [{"batchItemFailures": []}] * 10
    assert users(database) == [(LENA, LENA_EMAIL, "Lena Maier", "+4915112345678", True)]
    _, lines = log_lines(capsys)
    assert sorted(line["message"] for line in lines if line["message"].startswith("User")) == \
        ["User already stored"] * 9 + ["User stored"]
    assert len({c.DATABASE.connection().info.backend_pid for c in ten}) == 10


# -- the event as a whole -----------------------------------------------------------------

@pytest.mark.parametrize("incoming", [{}, {"Records": "x"}, {"Records": [{"body": "{}"}]}])
def test_an_event_that_is_not_an_sqs_event_fails_the_whole_batch(database, consumer, capsys,
                                                                 incoming):
    with pytest.raises(signups.MalformedEvent):
        consumer.handler(incoming, Context())
    _, lines = log_lines(capsys)
    assert lines[-1]["message"] == "SQS event rejected"
    assert users(database) == []


def test_an_unreachable_database_fails_the_whole_batch_without_row_values(
        consumer, monkeypatch, capsys):
    monkeypatch.setenv("DB_DSN", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(consumer.BatchNotStored) as failed:
        consumer.handler(FIXTURE, Context())
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    out, lines = log_lines(capsys)
    assert lines[-1]["message"] == "Batch not stored" and "@" not in out + str(failed.value)


# -- least privilege ----------------------------------------------------------------------

def test_the_handler_works_as_its_role_with_least_privilege(write_config, legacy_dsn,
                                                           monkeypatch, containers):
    migrate(write_config, legacy_dsn, roles={ROLE: {"trigger": "process-user-signup"}})
    as_role = make_conninfo(legacy_dsn, user=ROLE)
    monkeypatch.setenv("DB_DSN", as_role)
    consumer = containers()

    incoming = batch(message("lena"), message("malformed", email=None), message("again"))
    assert consumer.handler(incoming, Context()) == {
        "batchItemFailures": [{"itemIdentifier": "malformed"}]}
    assert consumer.handler(incoming, Context()) == {
        "batchItemFailures": [{"itemIdentifier": "malformed"}]}

    assert users(legacy_dsn) == [(LENA, LENA_EMAIL, "Lena Maier", "+4915112345678", True)]
    assert query(legacy_dsn, "SELECT usename FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = 'process-user-signup'") \
        == [(ROLE,)]
    with psycopg.connect(as_role, autocommit=True) as conn:
        for statement in ("SELECT email FROM app.users", "UPDATE app.users SET name = 'x'",
                          "SELECT email FROM profiles"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_each_new_user_gets_one_audit_row_and_a_redelivery_none(database, consumer):
    first = FIXTURE["Records"][0]["messageId"]
    assert consumer.handler(FIXTURE, Context()) == {"batchItemFailures": []}
    assert consumer.handler(batch(message("redelivered")), Context()) == {"batchItemFailures": []}
    assert query(database, "SELECT cognito_id, source, message_id FROM audit.registrations") == [
        (LENA, "queue", first)]


def test_the_shipped_writer_writes_its_two_schemas_and_touches_no_profile(
        write_config, legacy_dsn, monkeypatch, containers):
    """config/prod.yaml's lambda_writer: write: [app, audit] with process-user-signup's
    trigger, and the handler logging in as it."""
    from tests.conftest import prod_data

    assert prod_data()["database"]["roles"]["lambda_writer"] == {
        "trigger": "process-user-signup", "write": ["app", "audit"]}
    migrate(write_config, legacy_dsn)        # prod's roles
    as_writer = make_conninfo(legacy_dsn, user="lambda_writer")
    monkeypatch.setenv("DB_DSN", as_writer)
    consumer = containers()
    assert consumer.handler(FIXTURE, Context()) == {"batchItemFailures": []}
    assert consumer.handler(batch(message("again")), Context()) == {"batchItemFailures": []}
    assert users(legacy_dsn) == [(LENA, LENA_EMAIL, "Lena Maier", "+4915112345678", True)]
    assert query(legacy_dsn, "SELECT count(*) FROM audit.registrations") == [(1,)]

    # A table the migrations' owner creates later in either schema is writable at once
    # (default privileges FOR ROLE that owner), and readable no more than the others.
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:    # as fix-tables logged in
        conn.execute("CREATE TABLE audit.later (id bigserial PRIMARY KEY, note text)")
    with psycopg.connect(as_writer, autocommit=True) as conn:
        conn.execute("INSERT INTO audit.later (note) VALUES ('x')")        # and its sequence
        conn.execute("UPDATE app.users SET phone = NULL WHERE false")   # writes, reads none
        for statement in ("SELECT note FROM audit.later", "SELECT email FROM app.users",
                          "SELECT source FROM audit.registrations",
                          "SELECT email FROM profiles", "INSERT INTO profiles (email) VALUES ('x')",
                          "UPDATE private_profiles SET phone = NULL", "DELETE FROM profiles"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
