"""The staged record's shape (runbook.lambda_runtime.legacy_hashes), with no I/O: what a
record's value may hold, and the item it becomes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from runbook.lambda_runtime import legacy_hashes
from runbook.lambda_runtime.legacy_hashes import LegacyHash

BCRYPT = "$2a$10$" + "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
ARGON2ID = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"


def value(**fields) -> bytes:
    return json.dumps({"email": "Lena.Maier@Example.com", "hash": BCRYPT,
                       "profile": {"display_name": "Lena"}, **fields}).encode()


@pytest.mark.parametrize("hashed", [
    BCRYPT, BCRYPT.replace("$2a$", "$2b$"), BCRYPT.replace("$2a$", "$2y$"),
    BCRYPT.replace("$10$", "$06$"), ARGON2ID, ARGON2ID.replace("argon2id", "argon2i"),
])
def test_the_hash_formats_the_migration_verifies_are_accepted(hashed):
    assert LegacyHash.from_value(value(hash=hashed)).hash == hashed


@pytest.mark.parametrize("hashed", [
    "$2x$10$" + BCRYPT[7:], "$2a$10$" + BCRYPT[7:-1], "$2a$03$" + BCRYPT[7:],
    ARGON2ID.replace("argon2id", "argon2d"), ARGON2ID.replace("v=19", "v=16"),
    "$fbscrypt$v=1,n=14,r=8,p=1,ss=Bw==,sk=a2V5$c2FsdA==$aGFzaA==",
    "$1$saltsalt$hashhashhashhashhash", "plaintext", "", " " + BCRYPT,
])
def test_other_hashes_are_refused_without_showing_them(hashed):
    with pytest.raises(ValueError, match="hash is in no format") as refused:
        LegacyHash.from_value(value(hash=hashed))
    assert hashed not in str(refused.value) or not hashed


def test_the_email_is_stored_lower_case_and_the_value_round_trips():
    staged = LegacyHash.from_value(value())
    assert staged.email == "lena.maier@example.com"
    assert LegacyHash.from_value(staged.to_value()) == staged


def test_the_item_round_trips_with_one_spelling_per_number():
    profile = {"n": 1, "big": 10 ** 30, "half": 0.5, "hundred": 1e2, "zero": -0.0, "none": None,
               "yes": True, "list": ["a", 2, {"b": []}], "empty": {}, "text": ""}
    staged = LegacyHash.from_value(value(profile=profile))
    item = staged.to_item()
    assert item["email"] == {"S": "lena.maier@example.com"}
    numbers = item["profile"]["M"]
    assert [numbers[k]["N"] for k in ("n", "big", "half", "hundred", "zero")] == \
        ["1", "1" + "0" * 30, "0.5", "100", "0"]
    assert LegacyHash.from_item(item) == staged
    assert LegacyHash.from_item(item).profile["half"] == Decimal("0.5")


def test_a_producers_user_and_the_item_read_back_have_one_value():
    produced = LegacyHash("lena.maier@example.com", BCRYPT, {"rating": 0.1, "visits": 3})
    read_back = LegacyHash.from_item(produced.to_item())
    assert read_back.profile == {"rating": Decimal("0.1"), "visits": 3}
    assert read_back.to_value() == produced.to_value()
    assert LegacyHash.from_value(produced.to_value()).to_item() == produced.to_item()


@pytest.mark.parametrize(("data", "problem"), [
    (b"\xff\xfe", "value is not UTF-8"),
    (b"[1, 2]", "value is not a JSON object"),
    (value(email=None), "email is missing"),
    (value(email=42), "email is a number, not a string"),
    (value(email="two@@example.com"), "email is not an e-mail address"),
    (value(hash=None), "hash is missing"),
    (value(profile=None), "profile is missing"),
    (value(profile=["owner"]), "profile is a list, not an object"),
    (value(profile={"x": "\ud800"}), "profile.x contains a lone surrogate"),
    (value(profile={"": 1}), "profile has a key DynamoDB cannot store"),
    (value(profile={"n": 1e200}), "profile.n is a number DynamoDB cannot store"),
    (value(profile={"n": 12345678901234567.5}), None),   # a float's 17 digits are fine
    (value().replace(b'"Lena"}', b'"Lena", "n": 1.00000000000000000000000000000000000001}'),
     "profile.n is a number DynamoDB cannot store"),       # 39 significant digits
    (b'{"email": "a@example.com", "hash": "x", "profile": {"n": NaN}}', "value is not JSON"),
    (value(profile={"bio": "x" * legacy_hashes.MAX_VALUE_BYTES}), "value is longer than"),
])
def test_a_value_dynamodb_could_not_store_is_refused_naming_the_field(data, problem):
    if problem is None:
        LegacyHash.from_value(data)
        return
    with pytest.raises(ValueError) as refused:
        LegacyHash.from_value(data)
    assert str(refused.value).startswith(problem)
    assert "lena" not in str(refused.value).lower()


def test_a_profile_nested_too_deep_is_refused():
    profile: dict = {}
    inner = profile
    for _ in range(legacy_hashes.MAX_PROFILE_DEPTH):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(ValueError, match="nested deeper"):
        LegacyHash.from_value(value(profile=profile))


def test_chunks_refuse_an_email_twice_and_hold_at_most_25():
    users = [LegacyHash(f"u{n}@example.com", BCRYPT, {}) for n in range(60)]
    assert [len(c) for c in legacy_hashes.chunks(users)] == [25, 25, 10]
    with pytest.raises(ValueError, match="twice"):
        legacy_hashes.chunks(users + users[:1])


def test_the_backoff_doubles_up_to_its_cap_and_the_bound_is_a_few_seconds():
    waits = [legacy_hashes.backoff(a) for a in range(1, legacy_hashes.MAX_ATTEMPTS)]
    assert waits[:3] == [0.05, 0.1, 0.2]
    assert max(waits) <= legacy_hashes.BACKOFF_CAP_S
    assert sum(waits) < 10


def test_records_are_named_by_partition_and_offset_in_offset_order():
    event = {"eventSource": "aws:kafka", "records": {
        "t-1": [{"offset": 9}, {"offset": 3}, {"value": "x"}], "t-0": [{"offset": 5}]}}
    assert [name for name, _ in legacy_hashes.records(event)] == ["t-1#2", "t-1@3", "t-1@9",
                                                                 "t-0@5"]
    with pytest.raises(legacy_hashes.MalformedRecord, match="t-1#2: has no offset"):
        legacy_hashes.parse("t-1#2", {"value": "x"})


@pytest.mark.parametrize("event", [None, {}, {"Records": []}, {"records": []},
                                   {"eventSource": "aws:sqs", "records": {}},
                                   {"records": {"t-0": {}}}])
def test_an_event_that_is_not_from_msk_is_malformed(event):
    with pytest.raises(legacy_hashes.MalformedEvent):
        legacy_hashes.records(event)
