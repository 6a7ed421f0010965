"""The legacy loader (lambdas/legacy_loader) against moto's DynamoDB: a real table keyed on
`email`, MSK events shaped as tests/fixtures/events/msk_legacy_users_batch.json.

BatchWriteItem calls are counted, and their requests read, on the client's wire
(botocore's before-call event, the JSON body sent). moto never leaves items unprocessed:
the fault injector takes moto's real answer and moves part of the request into
`UnprocessedItems`, deleting those items from the table first, as DynamoDB leaves an
unprocessed item unwritten."""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import itertools
import json
import math

import boto3
import pytest
from moto import mock_aws

from runbook.lambda_runtime import legacy_hashes
from tests.conftest import REGION, REPO
from tests.functional.conftest import Clock

EVENT = REPO / "tests" / "fixtures" / "events" / "msk_legacy_users_batch.json"
TOPIC = "legacy-users"
TABLE = "matbakh-prod-legacy-user-hashes"
_loads = itertools.count()
_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def load_handler():
    """lambdas/legacy_loader/handler.py as a new module: a cold Lambda container."""
    path = REPO / "lambdas" / "legacy_loader" / "handler.py"
    spec = importlib.util.spec_from_file_location(f"lambda_legacy_loader_{next(_loads)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bcrypt_like(seed: str) -> str:
    """A hash in GoTrue's bcrypt format ($2a$10$, 53 characters of salt and digest)."""
    digest = hashlib.sha512(seed.encode()).digest()
    return "$2a$10$" + "".join(_ALPHABET[b % 64] for b in digest[:53])


def argon2id_like(seed: str) -> str:
    digest = base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=")
    return f"$argon2id$v=19$m=65536,t=3,p=4${digest[:22]}${digest}"


def user(n: int, *, hashed: str | None = None) -> dict:
    return {"email": f"legacy.user{n:04d}@example.com",
            "hash": hashed or (argon2id_like(f"u{n}") if n % 7 == 0 else bcrypt_like(f"u{n}")),
            "profile": {"display_name": f"Legacy User {n}", "language": "de", "role": "owner",
                        "visits": n, "rating": 4.5, "tags": ["legacy"],
                        "address": {"city": "Berlin", "zip": None, "verified": True}}}


def encoded(value) -> str:
    """A record's base64 value: of a dict's JSON, of bytes as they are, or a str as given."""
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def msk_event(*partitions: list[tuple[int, object]]) -> dict:
    """The fixture event with partition i holding `partitions[i]`, (offset, value) pairs."""
    event = copy.deepcopy(json.loads(EVENT.read_text()))
    template = event["records"].pop(f"{TOPIC}-0")[0]
    for number, records in enumerate(partitions):
        event["records"][f"{TOPIC}-{number}"] = [
            {**copy.deepcopy(template), "partition": number, "offset": offset,
             "key": base64.b64encode(f"key-{offset}".encode()).decode(), "value": encoded(value)}
            for offset, value in records]
    return event


class Wire:
    """The BatchWriteItem requests the handler's client sends, as JSON on the wire."""

    def __init__(self, client):
        self.requests: list[list[dict]] = []
        client.meta.events.register("before-call.dynamodb.BatchWriteItem", self._sent)

    def _sent(self, params, context, **_):
        body = json.loads(params["body"])
        context["runbook_sent"] = body
        self.requests.append(body["RequestItems"][TABLE])

    @property
    def calls(self) -> int:
        return len(self.requests)

    def emails(self, call: int) -> list[str]:
        return [r["PutRequest"]["Item"]["email"]["S"] for r in self.requests[call]]


class LeaveUnprocessed:
    """Fault injection on the answer: for the first `times` calls, every other item of
    the request is deleted from the table and reported in UnprocessedItems."""

    def __init__(self, client, table_client, times: int):
        self.table_client = table_client
        self.left = times
        self.reported = 0
        client.meta.events.register("after-call.dynamodb.BatchWriteItem", self._answered)

    def _answered(self, parsed, context, **_):
        if self.left <= 0:
            return
        self.left -= 1
        sent = context["runbook_sent"]["RequestItems"][TABLE]
        unprocessed = sent[::2]
        for request in unprocessed:
            self.table_client.delete_item(
                TableName=TABLE, Key={"email": request["PutRequest"]["Item"]["email"]})
        parsed["UnprocessedItems"] = {TABLE: unprocessed}
        self.reported += len(unprocessed)


@pytest.fixture
def loader(monkeypatch):
    """(handler module, its wire log, a DynamoDB client) with an empty table."""
    monkeypatch.setenv("HASH_TABLE", TABLE)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "email",
                                                     "AttributeType": "S"}])
        module = load_handler()
        assert module.CLIENT is not None, "the client is made in the init"
        clock = Clock()
        module.sleep = clock.sleep
        module.clock = clock
        yield module, Wire(module.CLIENT), dynamodb


def scan(dynamodb) -> dict[str, dict]:
    items = [item for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE)
             for item in page["Items"]]
    return {item["email"]["S"]: item for item in items}


def stored(dynamodb) -> dict[str, legacy_hashes.LegacyHash]:
    return {email: legacy_hashes.LegacyHash.from_item(item)
            for email, item in scan(dynamodb).items()}


def thousand_in_ten_events() -> list[dict]:
    """1,000 users in ten events of 100 records, two partitions each."""
    events = []
    for batch in range(10):
        numbers = range(batch * 100, batch * 100 + 100)
        events.append(msk_event([(n, user(n)) for n in numbers if n % 2 == 0],
                                [(n, user(n)) for n in numbers if n % 2 == 1]))
    return events


def assert_matches(table: dict[str, legacy_hashes.LegacyHash], numbers) -> None:
    for n in numbers:
        expected = user(n)
        got = table[expected["email"]]
        assert got.hash == expected["hash"]
        assert json.loads(json.dumps(got.profile, default=float)) == expected["profile"]


def output_of(capfd) -> str:
    out = capfd.readouterr()
    return out.out + out.err


# -- storing -----------------------------------------------------------------------------

def test_a_thousand_records_in_ten_events_take_at_most_forty_batch_writes(loader, capfd):
    handler, wire, dynamodb = loader
    for event in thousand_in_ten_events():
        answer = handler.handler(event, None)
        assert answer == {"records": 100, "stored": 100, "superseded": 0, "refused": []}

    assert wire.calls <= math.ceil(1000 / legacy_hashes.BATCH_LIMIT) == 40
    assert wire.calls == 40
    assert all(len(request) <= legacy_hashes.BATCH_LIMIT for request in wire.requests)
    table = stored(dynamodb)
    assert len(table) == 1000
    assert_matches(table, range(1000))
    logged = output_of(capfd)
    assert '"message": "Batch processed"' in logged
    for n in range(1000):
        assert user(n)["hash"] not in logged
        assert user(n)["email"] not in logged


def test_the_fixture_event_stores_its_one_user_lower_cased(loader):
    handler, wire, dynamodb = loader
    event = json.loads(EVENT.read_text())
    value = json.loads(base64.b64decode(event["records"][f"{TOPIC}-0"][0]["value"]))
    assert handler.handler(event, None)["stored"] == 1
    item = stored(dynamodb)[value["email"].lower()]
    assert (item.hash, item.profile) == (value["hash"], value["profile"])


def test_a_replayed_batch_changes_nothing(loader):
    handler, wire, dynamodb = loader
    events = thousand_in_ten_events()[:3]
    for event in events:
        handler.handler(event, None)
    before = scan(dynamodb)

    for event in events:
        handler.handler(copy.deepcopy(event), None)

    assert scan(dynamodb) == before
    assert len(before) == 300


def test_unprocessed_items_are_sent_again_until_all_are_stored(loader):
    handler, wire, dynamodb = loader
    event = thousand_in_ten_events()[0]
    faults = LeaveUnprocessed(handler.CLIENT, dynamodb, times=3)

    assert handler.handler(event, None)["stored"] == 100

    # Chunk 1: 25 sent, 13 left, 7 left, 4 left, then all stored: 3 retries; chunks 2-4 once.
    assert faults.reported == 13 + 7 + 4
    assert [len(r) for r in wire.requests] == [25, 13, 7, 4, 25, 25, 25]
    table = stored(dynamodb)
    assert len(table) == 100
    assert_matches(table, range(100))
    assert handler.clock.now == pytest.approx(sum(legacy_hashes.backoff(a) for a in (1, 2, 3)))


def test_items_left_unprocessed_past_the_bound_fail_the_batch_and_a_retry_stores_it(
        loader, capfd):
    handler, wire, dynamodb = loader
    event = thousand_in_ten_events()[0]
    LeaveUnprocessed(handler.CLIENT, dynamodb, times=legacy_hashes.MAX_ATTEMPTS)

    with pytest.raises(handler.BatchNotStored, match="still unprocessed after 8"):
        handler.handler(event, None)
    assert wire.calls == legacy_hashes.MAX_ATTEMPTS
    assert handler.clock.now == pytest.approx(
        sum(legacy_hashes.backoff(a) for a in range(1, legacy_hashes.MAX_ATTEMPTS)))
    assert handler.clock.now < 10
    logged = output_of(capfd)
    assert '"message": "Batch not stored"' in logged
    assert "legacy.user" not in logged and "$2a$" not in logged and "$argon2" not in logged

    # Lambda invokes it again with the same batch: the injector is spent, all is stored.
    assert handler.handler(event, None)["stored"] == 100
    assert_matches(stored(dynamodb), range(100))


def test_duplicate_emails_in_one_event_end_as_the_later_offsets_item(loader):
    handler, wire, dynamodb = loader
    first = user(1, hashed=bcrypt_like("old"))
    second = {**user(1, hashed=bcrypt_like("newer")), "email": "Legacy.User0001@Example.COM"}
    last = {**user(1, hashed=argon2id_like("newest")), "profile": {"display_name": "Last"}}
    others = [(20 + n, user(n)) for n in range(2, 12)]
    # Offsets out of order in the event: the higher offset wins, not the later position.
    event = msk_event([(12, second), (13, last), (11, first), *others])

    answer = handler.handler(event, None)

    assert answer == {"records": 13, "stored": 11, "superseded": 2, "refused": []}
    assert wire.calls == 1
    emails = wire.emails(0)
    assert len(emails) == len(set(emails)) == 11
    item = stored(dynamodb)["legacy.user0001@example.com"]
    assert (item.hash, item.profile) == (last["hash"], last["profile"])


# -- refusing ----------------------------------------------------------------------------

FBSCRYPT = "$fbscrypt$v=1,n=14,r=8,p=1,ss=Bw==,sk=c2VjcmV0LWtleQ==$c2FsdHNhbHQ=$aGFzaGhhc2g="
NO_EMAIL_HASH = bcrypt_like("no-email")
TRUNCATED = b'{"email": "broken.json@example.com", "hash": "' + bcrypt_like("broken").encode()


@pytest.mark.parametrize(("value", "reason"), [
    ("this is not base64 at all!", "value is not base64"),
    (TRUNCATED, "value is not JSON"),
    ({"hash": NO_EMAIL_HASH, "profile": {}}, "email is missing"),
    ({"email": "fb.user@example.com", "hash": FBSCRYPT, "profile": {}},
     "hash is in no format the migration verifies"),
    ({"email": "not an address", "hash": bcrypt_like("x"), "profile": {}},
     "email is not an e-mail address"),
    ({"email": "p.user@example.com", "hash": bcrypt_like("p"), "profile": "owner"},
     "profile is a string, not an object"),
])
def test_a_malformed_record_is_refused_by_name_and_not_written(loader, capfd, value, reason):
    handler, wire, dynamodb = loader
    event = msk_event([(1, user(1)), (2, value), (3, user(3))])
    raw = event["records"][f"{TOPIC}-0"][1]["value"]

    answer = handler.handler(event, None)

    assert answer == {"records": 3, "stored": 2, "superseded": 0, "refused": [f"{TOPIC}-0@2"]}
    assert sorted(stored(dynamodb)) == ["legacy.user0001@example.com",
                                        "legacy.user0003@example.com"]
    logged = output_of(capfd)
    refusal = next(json.loads(line) for line in logged.splitlines()
                   if '"Record refused"' in line)
    assert refusal["record"] == f"{TOPIC}-0@2"
    assert refusal["reason"].startswith(reason)
    for secret in (raw, FBSCRYPT, NO_EMAIL_HASH, bcrypt_like("broken"), bcrypt_like("x"),
                   bcrypt_like("p"), "broken.json@", "fb.user@", "p.user@", "not an address"):
        assert secret not in logged


def test_an_event_of_only_malformed_records_writes_nothing_and_succeeds(loader):
    handler, wire, dynamodb = loader
    answer = handler.handler(msk_event([(7, "%%%"), (8, b"[]")]), None)
    assert answer["refused"] == [f"{TOPIC}-0@7", f"{TOPIC}-0@8"]
    assert wire.calls == 0
    assert scan(dynamodb) == {}


def test_an_event_that_is_not_from_msk_fails_the_batch(loader):
    handler, wire, dynamodb = loader
    with pytest.raises(legacy_hashes.MalformedEvent):
        handler.handler({"Records": []}, None)
    assert wire.calls == 0
