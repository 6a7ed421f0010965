"""No registration is lost (phase a4): Post-Confirmation writes the `user.registered`
detail to the registration outbox in the profile's transaction, publishes it after the
commit, and process-user-signup stores the user from the queue or, when publishing
failed, from the outbox through its scheduled relay.

Real PostgreSQL (migrated by fix-tables) and moto's bus -> rule -> SQS. A PutEvents
failure is injected where AWS reports one, in the call's answer
(tests/functional/test_registration_publish.py)."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runbook.lambda_runtime import registration, signups
from tests.database.test_handlers import (EVENTS, SUB, Context, forgot_password, log_lines,
                                          migrate, profile_of, query, sign_up)
from tests.functional.test_registration_publish import BUS, fail_first, routed_bus

SCHEDULED = json.loads((EVENTS / "scheduled_registration_relay.json").read_text())
EMAIL = "lena.maier@example.com"
LENA_ROW = (SUB, EMAIL, "Lena Maier", "+4915112345678", True)

pytestmark = pytest.mark.usefixtures("handler_environment")  # tests/database/conftest.py


@pytest.fixture
def events(monkeypatch):
    """The publishing client the handler uses, on moto's bus; EVENT_BUS_NAME names it."""
    with routed_bus() as (client, sqs, url):
        monkeypatch.setattr(registration, "_CLIENT", client)
        monkeypatch.setenv("EVENT_BUS_NAME", BUS)
        yield client, sqs, url


@pytest.fixture
def handlers(cold_start):
    """(post_confirmation, process_user_signup): a cold container of each."""
    return cold_start("post_confirmation"), cold_start("process_user_signup")


def delivered(sqs, url) -> dict:
    """The queue's messages as Lambda's poller hands them to the consumer, deleted from
    the queue as it deletes a batch that succeeded."""
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                AttributeNames=["All"]).get("Messages", [])
    for m in found:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                         "body": m["Body"], "attributes": m.get("Attributes", {}),
                         "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                         "eventSource": "aws:sqs", "awsRegion": "eu-central-1",
                         "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:signups"}
                        for m in found]}


def users(dsn):
    return query(dsn, "SELECT cognito_id, email, name, phone, email_verified FROM app.users "
                      "ORDER BY cognito_id")


def outbox(dsn):
    return query(dsn, "SELECT cognito_id FROM app.registration_outbox ORDER BY cognito_id")


def age_outbox(dsn, minutes: int = 2) -> None:
    """The relay's grace period passes for every outbox row."""
    query(dsn, "UPDATE app.registration_outbox SET created_at = now() - make_interval(mins => %s) "
               "RETURNING 1", (minutes,))


def test_a_sign_up_is_published_once_and_stored_from_the_queue(database, events, handlers,
                                                               capsys):
    client, sqs, url = events
    trigger, consumer = handlers
    assert trigger.handler(sign_up(), Context()) == sign_up()
    assert outbox(database) == [(SUB,)]          # committed with the profile

    batch = delivered(sqs, url)
    assert len(batch["Records"]) == 1
    body = json.loads(batch["Records"][0]["body"])
    assert (body["source"], body["detail-type"]) == (registration.SOURCE,
                                                     registration.DETAIL_TYPE)
    assert body["detail"] == {"cognito_user_id": SUB, "email": EMAIL, "name": "Lena Maier",
                              "phone": "+4915112345678", "email_verified": True}
    assert consumer.handler(batch, Context()) == {"batchItemFailures": []}
    assert users(database) == [LENA_ROW]
    assert outbox(database) == []                # stored: the outbox row went with it

    out, lines = log_lines(capsys)
    assert any(line["message"] == "Registration published" and line["event_id"]
               for line in lines)
    assert EMAIL not in out


def test_with_puts_failing_to_the_deadline_the_relay_still_stores_the_user(
        database, events, handlers, capsys):
    """The acceptance test: every PutEvents attempt fails. The trigger still succeeds (the
    profile and the outbox row are committed), nothing reaches the queue, and the relay
    stores the user once the grace period has passed."""
    client, sqs, url = events
    calls = fail_first(client, 1000, code="InternalFailure")
    trigger, consumer = handlers

    assert trigger.handler(sign_up(), Context()) == sign_up()
    assert len(calls) > 1                         # sent again within the deadline
    assert profile_of(database, SUB) != []
    assert outbox(database) == [(SUB,)]
    assert delivered(sqs, url) == {"Records": []}
    out, lines = log_lines(capsys)
    failed = [line for line in lines if line["message"].startswith("Registration not published")]
    assert len(failed) == 1 and "InternalFailure" in failed[0]["reason"]
    assert failed[0]["level"] == "WARNING" and EMAIL not in out

    # Within the grace period the relay leaves the row to the publish under way.
    assert consumer.handler(SCHEDULED, Context()) is None
    assert users(database) == [] and outbox(database) == [(SUB,)]

    age_outbox(database)
    assert consumer.handler(SCHEDULED, Context()) is None
    assert users(database) == [LENA_ROW]
    assert outbox(database) == []
    # The audit row names the path that stored the user: the relay, by its outbox row.
    assert query(database, "SELECT cognito_id, source, message_id FROM audit.registrations") \
        == [(SUB, "relay", f"outbox:{SUB}")]
    out, lines = log_lines(capsys)
    assert [line["message"] for line in lines][-2:] == ["User relayed from the outbox",
                                                        "Relay processed"]
    assert lines[-1]["stored"] == 1 and lines[-1]["failed"] == 0 and EMAIL not in out

    # The event that arrives late after all (EventBridge retries for up to 24 h) is a
    # no-op, and so is the next relay.
    late = trigger.handler(sign_up(), Context())
    assert late == sign_up()
    assert consumer.handler(delivered(sqs, url), Context()) == {"batchItemFailures": []}
    assert users(database) == [LENA_ROW]


def test_a_publish_that_raises_is_sent_again_and_left_to_the_relay(database, events, handlers,
                                                                   capsys):
    """A call that fails whole (throttled, the endpoint unreachable) is an attempt like a
    failed entry: named by its code, and the trigger still succeeds."""
    client, sqs, url = events
    trigger, _ = handlers
    attempts = []

    def throttle(**_):
        attempts.append(1)
        raise client.exceptions.ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutEvents")

    client.meta.events.register_first("before-call.eventbridge.PutEvents", throttle)
    assert trigger.handler(sign_up(), Context()) == sign_up()
    assert len(attempts) > 1 and outbox(database) == [(SUB,)]
    _, lines = log_lines(capsys)
    assert "ThrottlingException" in lines[-2]["reason"]


def test_a_bus_not_made_yet_is_tried_once_and_the_sign_up_waits_in_the_outbox(
        database, events, handlers, monkeypatch, capsys):
    """Phase a3 may run before a4 has made the bus: the answer would not change, so the
    trigger does not spend Cognito's seconds sending it again."""
    client, sqs, url = events
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    trigger, _ = handlers
    assert trigger.handler(sign_up(), Context()) == sign_up()
    assert outbox(database) == [(SUB,)]
    _, lines = log_lines(capsys)
    failed = [line for line in lines if line["message"].startswith("Registration not published")]
    assert len(failed) == 1 and failed[0]["level"] == "WARNING"
    assert "after 1 attempt(s): ResourceNotFoundException" in failed[0]["reason"]


def test_a_password_reset_publishes_nothing_and_writes_no_outbox_row(database, events,
                                                                     handlers):
    client, sqs, url = events
    trigger, _ = handlers
    trigger.handler(forgot_password(), Context())
    assert profile_of(database, SUB) != []
    assert outbox(database) == [] and delivered(sqs, url) == {"Records": []}


def test_without_event_bus_name_a_sign_up_is_what_it_was_in_a3(database, events, handlers,
                                                               monkeypatch):
    client, sqs, url = events
    monkeypatch.delenv("EVENT_BUS_NAME")
    trigger, _ = handlers
    trigger.handler(sign_up(), Context())
    assert profile_of(database, SUB) != []
    assert outbox(database) == [] and delivered(sqs, url) == {"Records": []}


def test_a_profile_not_saved_publishes_nothing(database, events, handlers):
    """The outbox row and the profile commit together or not at all; nothing is
    published for a transaction that failed."""
    client, sqs, url = events
    trigger, _ = handlers
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("ALTER TABLE private_profiles ADD CONSTRAINT no_phone "
                     "CHECK (phone IS NULL) NOT VALID")
    with pytest.raises(Exception, match="profile not saved"):
        trigger.handler(sign_up(), Context())
    assert profile_of(database, SUB) == [] and outbox(database) == []
    assert delivered(sqs, url) == {"Records": []}


def test_a_relayed_row_that_cannot_be_stored_stays_and_the_relay_fails(database, handlers,
                                                                       capsys):
    _, consumer = handlers
    good = {"cognito_user_id": SUB, "email": EMAIL, "name": "Lena Maier",
            "phone": "+4915112345678", "email_verified": True}
    query(database, "INSERT INTO app.registration_outbox (cognito_id, detail) VALUES "
                    "(%s, %s), ('broken-sub', %s) RETURNING 1",
          (SUB, json.dumps(good), json.dumps({"cognito_user_id": "broken-sub",
                                             "email": "not-an-address"})))
    age_outbox(database)
    with pytest.raises(Exception, match=r"1 registration\(s\) left in the outbox") as failed:
        consumer.handler(SCHEDULED, Context())
    assert type(failed.value).__name__ == "RelayIncomplete"
    assert users(database) == [LENA_ROW]
    assert outbox(database) == [("broken-sub",)]
    out, lines = log_lines(capsys)
    refused = [line for line in lines if line["message"] == "Registration not relayed"]
    assert [line["outbox"] for line in refused] == ["outbox:broken-sub"]
    assert "not-an-address" not in out and EMAIL not in out
    # Tried again later, not on the next run: it does not fail every run.
    assert query(database, "SELECT attempts, next_attempt_at > now() + interval '4 minutes' "
                           "FROM app.registration_outbox") == [(1, True)]
    assert consumer.handler(SCHEDULED, Context()) is None


def test_rows_the_relay_cannot_store_do_not_hold_up_the_rows_behind_them(database):
    """With more unstorable rows than a run takes, a good row behind them is still
    stored: a failed row is due again only later."""
    rows = [(f"broken-{n}", json.dumps({"cognito_user_id": f"broken-{n}"})) for n in range(3)]
    rows.append((SUB, json.dumps({"cognito_user_id": SUB, "email": EMAIL,
                                  "email_verified": False})))
    with psycopg.connect(database, autocommit=True) as conn:
        for minutes, (sub, detail) in zip((40, 30, 20, 10), rows):
            conn.execute("INSERT INTO app.registration_outbox (cognito_id, detail, created_at, "
                         "next_attempt_at) VALUES (%s, %s, now() - make_interval(mins => %s), "
                         "now() - make_interval(mins => %s))", (sub, detail, minutes, minutes))
        first = signups.relay(conn, limit=3)
        second = signups.relay(conn, limit=3)
    assert (first[0], [f.message_id for f in first[1]]) == (
        [], ["outbox:broken-0", "outbox:broken-1", "outbox:broken-2"])
    assert [s.cognito_id for s in second[0]] == [SUB] and second[1] == []
    assert users(database) == [(SUB, EMAIL, None, None, False)]


def test_both_functions_work_as_their_roles_with_least_privilege(write_config, pg_dsn, events,
                                                                 monkeypatch, cold_start):
    """The trigger's role may add outbox rows and nothing else there; the consumer's may
    read and delete them (the relay), and neither may change a row."""
    client, sqs, url = events
    migrate(write_config, pg_dsn, roles={"matbakh_post_confirmation":
                                         {"trigger": "post-confirmation"},
                                         "matbakh_process_user_signup":
                                         {"trigger": "process-user-signup"}})
    as_trigger = make_conninfo(pg_dsn, user="matbakh_post_confirmation")
    as_consumer = make_conninfo(pg_dsn, user="matbakh_process_user_signup")
    monkeypatch.setenv("DB_DSN", as_trigger)
    trigger = cold_start("post_confirmation")
    fail_first(client, 1000)
    assert trigger.handler(sign_up(), Context()) == sign_up()

    monkeypatch.setenv("DB_DSN", as_consumer)
    consumer = cold_start("process_user_signup")
    age_outbox(pg_dsn)
    assert consumer.handler(SCHEDULED, Context()) is None
    assert users(pg_dsn) == [LENA_ROW] and outbox(pg_dsn) == []

    with psycopg.connect(as_trigger, autocommit=True) as conn:
        for statement in ("SELECT detail FROM app.registration_outbox",
                          "DELETE FROM app.registration_outbox",
                          "UPDATE app.registration_outbox SET detail = '{}'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(as_consumer, autocommit=True) as conn:
        for statement in ("INSERT INTO app.registration_outbox (cognito_id, detail) "
                          "VALUES ('x', '{}')",
                          "UPDATE app.registration_outbox SET detail = '{}'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
