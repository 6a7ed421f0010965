"""Reading the hash table for the producer's diff and wait (runbook.legacy.table) against
in-process moto: 100 keys a BatchGetItem, consistent reads, UnprocessedKeys asked again,
and a table that does not exist yet read as empty. moto never leaves keys unprocessed:
a fault injector moves part of its real answer into UnprocessedKeys, as DynamoDB does
when throttled."""

from __future__ import annotations

import boto3
import pytest

from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.lambda_runtime.legacy_hashes import LegacyHash, write
from runbook.legacy import table as legacy_table
from tests.conftest import REGION

TABLE = "matbakh-prod-legacy-user-hashes"
HASH = "$2a$10$P9K.6PR42kIzhRUxj/inYOnj5IBu2CrzaSWeCKmRuSu8VEvpqm49O"


@pytest.fixture
def dynamodb(account):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "email", "AttributeType": "S"}])
    return client


class Calls:
    """The BatchGetItem requests sent, and (for the first `unprocessed` answers) half of
    each answer moved into UnprocessedKeys."""

    def __init__(self, client, unprocessed: int = 0):
        self.requests: list[dict] = []
        self.left = unprocessed
        client.meta.events.register("provide-client-params.dynamodb.BatchGetItem", self._sent)
        client.meta.events.register("after-call.dynamodb.BatchGetItem", self._answered)

    def _sent(self, params, **_):
        self.requests.append(params["RequestItems"][TABLE])

    def _answered(self, parsed, **_):
        if self.left <= 0:
            return
        self.left -= 1
        found = parsed["Responses"][TABLE]
        kept, moved = found[1::2], found[::2]
        parsed["Responses"][TABLE] = kept
        parsed["UnprocessedKeys"] = {TABLE: {"Keys": [{"email": i["email"]} for i in moved],
                                             "ConsistentRead": True}}


def users(n: int) -> list[LegacyHash]:
    return [LegacyHash(f"user{i}@example.com", HASH, {"role": "user"}) for i in range(n)]


def test_250_addresses_take_three_consistent_calls_and_only_stored_ones_come_back(dynamodb):
    write(dynamodb, TABLE, users(200), sleep=lambda s: None)
    api = Api(ClientFactory(REGION), sleep=lambda s: None)
    calls = Calls(api.client("dynamodb"))

    found = legacy_table.stored(api, TABLE, [u.email for u in users(250)])

    assert sorted(found) == sorted(u.email for u in users(200))
    assert found["user7@example.com"].to_value() == users(8)[7].to_value()
    assert [len(r["Keys"]) for r in calls.requests] == [100, 100, 50]
    assert all(r["ConsistentRead"] is True for r in calls.requests)


def test_unprocessed_keys_are_asked_again_after_a_backoff(dynamodb):
    write(dynamodb, TABLE, users(10), sleep=lambda s: None)
    slept: list[float] = []
    api = Api(ClientFactory(REGION), sleep=slept.append)
    calls = Calls(api.client("dynamodb"), unprocessed=2)

    found = legacy_table.stored(api, TABLE, [u.email for u in users(10)])

    assert len(found) == 10
    assert [len(r["Keys"]) for r in calls.requests] == [10, 5, 3]
    assert slept == [legacy_table.backoff(1), legacy_table.backoff(2)]


def test_keys_left_unprocessed_every_time_fail_the_read_counted(dynamodb):
    write(dynamodb, TABLE, users(4), sleep=lambda s: None)
    api = Api(ClientFactory(REGION), sleep=lambda s: None)
    Calls(api.client("dynamodb"), unprocessed=legacy_table.MAX_ATTEMPTS)
    with pytest.raises(legacy_table.NotRead, match="still unprocessed after 8"):
        legacy_table.stored(api, TABLE, [u.email for u in users(4)])


def test_a_table_not_made_yet_holds_nothing(account):
    api = Api(ClientFactory(REGION), sleep=lambda s: None)
    assert legacy_table.stored(api, TABLE, ["user1@example.com"]) == {}
