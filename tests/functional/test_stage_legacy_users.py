"""Step stage-legacy-users with its real parts: the legacy users from a real PostgreSQL
(the Supabase-era fixture and the users legacy_users_extra.sql adds), the records
produced by the step's own code to a real Kafka broker (the sandbox's Tansu, reached
through the sandbox's Kafka access, which checks the MSK IAM token), the hash table in
in-process moto.

The loader is not deployed here (its step is another's): while the step waits, its
sleep plays the loader's part with a real consumer in the mapping's consumer group and
the loader's own write (runbook.lambda_runtime.legacy_hashes.write), so what reaches the
table is what came through the broker.

The step runs as the engine runs it (read, plan with AWS refused, apply, settle,
outputs); the steps it needs (hash-table, msk-cluster, deploy-legacy-loader) are given
as their outputs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import psycopg
import pytest

from runbook.aws.clients import ClientFactory
from runbook.engine import StepContext
from runbook.engine.step import Inputs
from runbook.errors import EXIT_BAD_INPUT, PlanError, StepFailed
from runbook.lambda_runtime.legacy_hashes import LegacyHash, write
from runbook.output.progress import Progress
from runbook.sandbox.kafka import FAST_GROUP, Broker, SandboxKafkaAccess
from runbook.steps import CATALOGUE
from runbook.steps.stage_legacy_users import STEP_NAME
from tests.conftest import REGION
from tests.functional.conftest import Clock

pytestmark = pytest.mark.slow

TABLE = "matbakh-prod-legacy-user-hashes"
TOPIC = "legacy-users"
GROUP = "matbakh-prod-legacy-loader"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
EXTRA = Path(__file__).parent.parent / "database" / "legacy_users_extra.sql"
# What the fixture and legacy_users_extra.sql stage: lower-cased, with hash and profile.
EXPECTED = {
    "legacy.owner@example.com": ("$2a$10$P9K.6PR42kIzhRUxj/inYOnj5IBu2CrzaSWeCKmRuSu8VEvpqm49O",
                                 {"display_name": "Legacy Owner", "role": "user",
                                  "language": "de"}),
    "anna.schmidt@example.com": ("$2a$10$FWUK2euidU4xuNnM7CukDe3wO7mZ05e9Hol2jcSAmWanUpZoSsWPC",
                                 {"display_name": "Anna Schmidt", "role": "user",
                                  "language": "de"}),
    "karim.haddad@example.com": ("$2a$10$YZC3A82zPycCp8oGy0Kjt.CKDpFJu3XAD5Kh8JqxLQZRvfhGz.aZe",
                                 {"display_name": "Karim Haddad", "role": "admin",
                                  "language": "en"}),
    "argon.user@example.com": ("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$"
                               "8Vbo2Mv0nwtqVmhJHpb2NR1mY0b4ZZYCb8CQKdU3WZg",
                               {"display_name": "Argon User"}),
}
SKIPPED = {"no_email": 1, "no_password_hash": 2, "email_not_confirmed": 1,
           "unsupported_hash_format": 1}
# Every address and hash the legacy database holds: none may show in output.
SECRETS = [*EXPECTED, *(h for h, _ in EXPECTED.values()), "oauth.only@example.com",
           "never.confirmed@example.com", "from.firebase@example.com", "Argon.User@Example.COM"]


class Recorder(Progress):
    """Progress that keeps every line it would print."""

    def __init__(self):
        super().__init__(wait_report_every_s=0)
        self.lines: list[str] = []

    def line(self, text: str = "", **style) -> None:
        self.lines.append(text)


@pytest.fixture
def legacy(legacy_dsn):
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute(EXTRA.read_text())
    return legacy_dsn


@pytest.fixture
def table(account):
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "email",
                                                 "AttributeType": "S"}])
    return dynamodb


@pytest.fixture
def kafka():
    return SandboxKafkaAccess(boto3.Session(region_name=REGION, **CREDS), REGION, CREDS)


@pytest.fixture
def broker(tmp_path, kafka):
    from kafka.admin import NewTopic

    with Broker(tmp_path / "kafka") as running:
        admin = kafka.admin(running.bootstrap)
        admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
        admin.close()
        yield running


class Loader:
    """The loader's part, run the first time the step sleeps: consume the `expect`
    records the step produced, in the mapping's consumer group (a real consumer), and
    write them with the loader's code. `only` limits which addresses it stores (a loader
    that is behind)."""

    def __init__(self, kafka, bootstrap: str, dynamodb, expect: int, only=None):
        self.kafka, self.bootstrap, self.dynamodb = kafka, bootstrap, dynamodb
        self.expect, self.only = expect, only
        self.records: list = []
        self.consumer = None
        self.ran = False

    def consume(self, expect: int = 0) -> list:
        """Records until `expect` came, or (the group joined) three empty polls."""
        if self.consumer is None:
            self.consumer = self.kafka.consumer(self.bootstrap, group_id=GROUP,
                                                auto_offset_reset="earliest",
                                                enable_auto_commit=False, **FAST_GROUP)
            self.consumer.subscribe([TOPIC])
        got, empty = [], 0
        while len(got) < expect or (empty < 3 and not expect):
            batch = self.consumer.poll(timeout_ms=1000)
            empty = 0 if batch else empty + 1
            assert empty < 15, f"{len(got)} of {expect} record(s) came"
            got += [record for records in batch.values() for record in records]
        if got:
            self.consumer.commit()
        return got

    def __call__(self, seconds: float) -> None:
        if self.ran:
            return
        self.ran = True
        records = self.consume(self.expect)
        self.records += records
        users = [LegacyHash.from_value(record.value) for record in records]
        if self.only is not None:
            users = [user for user in users if user.email in self.only]
        if users:
            write(self.dynamodb, TABLE, list({u.email: u for u in users}.values()),
                  sleep=lambda s: None)

    def close(self):
        if self.consumer is not None:
            self.consumer.close()


def make_step(config, aws, progress, *, kafka=None, bootstrap=None, legacy_dsn=None,
              sleep=lambda s: None, clock=None, dry_run=True):
    outputs = {
        "hash-table": SimpleNamespace(table_name=TABLE),
        "msk-cluster": SimpleNamespace(bootstrap_public=bootstrap, topic=TOPIC),
        "deploy-legacy-loader": SimpleNamespace(consumer_group=GROUP),
    }
    ctx = StepContext(config, aws, progress, outputs.__getitem__, dry_run=dry_run,
                      kafka=kafka, legacy_dsn=legacy_dsn, sleep=sleep,
                      **({"clock": clock} if clock else {}))
    info = CATALOGUE[STEP_NAME]
    return info.load()(ctx, Inputs(STEP_NAME, info.needs(config), ctx.upstream))


def run(step, aws):
    """The engine's order for one step; (changes, outputs, {"read": n, "write": n})."""
    with aws.scoped(STEP_NAME) as counts:
        state = step.read()
        with aws.refusing(f"step {STEP_NAME!r}'s plan"):
            changes = step.plan(state)
        for change in changes:
            step.apply(state, change)
        step.settle(state)
        return changes, step.outputs(state), dict(counts)


def items(dynamodb) -> dict[str, LegacyHash]:
    found = dynamodb.scan(TableName=TABLE)["Items"]
    return {user.email: user for user in map(LegacyHash.from_item, found)}


def test_users_go_through_the_broker_into_the_table_and_a_second_run_stages_none(
        config, table, legacy, kafka, broker):
    aws, progress = ClientFactory(REGION), Recorder()
    loader = Loader(kafka, broker.bootstrap, table, expect=4)
    try:
        step = make_step(config, aws, progress, kafka=kafka, bootstrap=broker.bootstrap,
                         legacy_dsn=legacy, sleep=loader)
        began = time.monotonic()
        changes, outputs, calls = run(step, aws)
        elapsed = time.monotonic() - began
        first = changes

        assert [(c.action, c.resource, c.diff["stage"]) for c in changes] == [
            ("create", f"dynamodb:items {TABLE}", 4)]
        report = outputs.as_report()
        timings = {key: report.pop(key) for key in ("produce_s", "store_s")}
        assert report == {"table": TABLE, "source": "the sandbox's legacy database",
                          "users": 4, "planned": 4, "produced": 4, "stored": 4,
                          "skipped": SKIPPED}
        # Parts of the step's own time (an invariant, not a speed goal).
        assert 0 < timings["produce_s"] and 0 <= timings["store_s"], timings
        assert timings["produce_s"] + timings["store_s"] <= elapsed, (timings, elapsed)
        assert calls["write"] == 0   # the step writes to Kafka only; the loader, DynamoDB
        # What the broker carried: one record per user, keyed by the lower-cased address,
        # valued LegacyHash.
        assert sorted(r.key.decode() for r in loader.records) == sorted(EXPECTED)
        for record in loader.records:
            user = LegacyHash.from_value(record.value)
            assert user.email == record.key.decode()
            assert (user.hash, user.profile) == EXPECTED[user.email]
            assert record.value == LegacyHash(user.email, *EXPECTED[user.email]).to_value()
        stored = items(table)
        assert {email: (u.hash, u.profile) for email, u in stored.items()} == EXPECTED
        assert any(line.startswith("  produced 4/4 to kafka:topic") for line in progress.lines)
        assert kafka.tokens_checked >= 1

        # A second run: the table matches the source, so nothing is planned or produced.
        again = make_step(config, aws, progress, kafka=kafka, bootstrap=broker.bootstrap,
                          legacy_dsn=legacy, sleep=loader)
        changes, outputs, calls = run(again, aws)
        assert changes == []
        assert (outputs.planned, outputs.produced, outputs.stored) == (0, 0, 0)
        assert calls["write"] == 0
        assert loader.consume() == []   # no record reached the topic
    finally:
        loader.close()

    text = "\n".join([*progress.lines, json.dumps(report), *(c.describe() for c in first),
                      *(str(c.detail) for c in first), repr(first)])
    for secret in SECRETS:
        assert secret.lower() not in text.lower()


def test_a_changed_hash_is_staged_again_alone(config, table, legacy, kafka, broker):
    aws, progress = ClientFactory(REGION), Recorder()
    for email, (hashed, profile) in EXPECTED.items():
        stale = EXPECTED["anna.schmidt@example.com"][0] if email.startswith("karim") else hashed
        write(table, TABLE, [LegacyHash(email, stale, profile)], sleep=lambda s: None)
    loader = Loader(kafka, broker.bootstrap, table, expect=1)
    try:
        changes, outputs, _ = run(make_step(config, aws, progress, kafka=kafka,
                                            bootstrap=broker.bootstrap, legacy_dsn=legacy,
                                            sleep=loader), aws)
    finally:
        loader.close()
    assert [c.diff for c in changes] == [{"stage": 1, "hash_changed": 1, "unchanged": 3,
                                          "skipped": SKIPPED}]
    assert [r.key.decode() for r in loader.records] == ["karim.haddad@example.com"]
    assert items(table)["karim.haddad@example.com"].hash == EXPECTED["karim.haddad@example.com"][0]
    assert (outputs.produced, outputs.stored) == (1, 1)


def test_a_wait_that_times_out_says_how_many_are_missing_without_addresses(
        config, table, legacy, kafka, broker):
    aws, progress, clock = ClientFactory(REGION), Recorder(), Clock()
    behind = Loader(kafka, broker.bootstrap, table, expect=4,
                    only={"legacy.owner@example.com", "anna.schmidt@example.com",
                          "karim.haddad@example.com"})

    def sleep(seconds):
        clock.sleep(seconds)
        behind(seconds)

    try:
        step = make_step(config, aws, progress, kafka=kafka, bootstrap=broker.bootstrap,
                         legacy_dsn=legacy, sleep=sleep, clock=clock)
        with pytest.raises(StepFailed) as failed:
            run(step, aws)
    finally:
        behind.close()
    message = str(failed.value)
    assert "1 of 4 staged user(s) are not in the table as produced" in message
    assert "legacy.stage_timeout_s: 300" in message
    assert clock.now >= 300
    assert any("waiting for the loader to store 4 staged user(s)" in line
               for line in progress.lines)
    for secret in SECRETS:
        assert secret.lower() not in (message + "\n".join(progress.lines)).lower()


def test_a_live_run_without_the_variable_is_an_input_error_naming_it(config, table,
                                                                     monkeypatch):
    monkeypatch.delenv("LEGACY_DATABASE_URL", raising=False)
    step = make_step(config, ClientFactory(REGION), Recorder(), dry_run=False)
    with pytest.raises(PlanError) as refused:
        step.read()
    assert refused.value.exit_code == EXIT_BAD_INPUT == 2
    assert "LEGACY_DATABASE_URL is not set" in str(refused.value)
    assert "legacy.source_dsn_env" in str(refused.value)


def test_a_dry_run_reads_the_operators_database_when_the_variable_is_set(
        config, table, legacy, make_database, monkeypatch):
    empty = make_database()   # the sandbox's would-be legacy database: not read
    monkeypatch.setenv("LEGACY_DATABASE_URL", legacy)
    progress = Recorder()
    step = make_step(config, ClientFactory(REGION), progress, legacy_dsn=empty)
    state = step.read()
    assert (len(state.users), state.source) == (4, "$LEGACY_DATABASE_URL")
    assert any("read from the database $LEGACY_DATABASE_URL names (read only)" in line
               for line in progress.lines)
    assert legacy not in "\n".join(progress.lines)
    assert os.environ["LEGACY_DATABASE_URL"] == legacy


def test_thousands_of_users_are_produced_with_progress_every_thousand(
        config, table, legacy_dsn, kafka, broker):
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email, encrypted_password, "
                     "email_confirmed_at, raw_user_meta_data) SELECT gen_random_uuid(), "
                     "'bulk' || i || '@example.com', %s, now(), "
                     "jsonb_build_object('full_name', 'Bulk ' || i) "
                     "FROM generate_series(1, 2497) AS i",
                     (EXPECTED["anna.schmidt@example.com"][0],))
    aws, progress = ClientFactory(REGION), Recorder()
    loader = Loader(kafka, broker.bootstrap, table, expect=2500)
    try:
        _, outputs, _ = run(make_step(config, aws, progress, kafka=kafka,
                                      bootstrap=broker.bootstrap, legacy_dsn=legacy_dsn,
                                      sleep=loader), aws)
    finally:
        loader.close()
    assert (outputs.planned, outputs.produced, outputs.stored) == (2500, 2500, 2500)
    assert [line.split(" to ")[0] for line in progress.lines if "produced" in line] == [
        "  produced 1000/2500", "  produced 2000/2500", "  produced 2500/2500"]
    assert len({record.key for record in loader.records}) == 2500
    assert table.describe_table(TableName=TABLE)["Table"]["ItemCount"] == 2500
