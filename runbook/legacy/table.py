"""Reading the hash table's items for a list of addresses: BatchGetItem, 100 keys a call
(its limit), strongly consistent (the producer's wait must see what the loader just
wrote), and the keys DynamoDB left in UnprocessedKeys (throttling, the 16 MB answer
limit) asked again after a backoff.

A table that does not exist yet (a plan before hash-table has run) holds nothing.
"""

from __future__ import annotations

from typing import Iterable

from runbook.aws.api import Api, not_found
from runbook.lambda_runtime.legacy_hashes import EMAIL, LegacyHash

BATCH_LIMIT = 100          # BatchGetItem: at most 100 keys a call
MAX_ATTEMPTS = 8           # per batch, before the read fails
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.05, 2.0


class NotRead(RuntimeError):
    """Keys still unprocessed after MAX_ATTEMPTS calls; the message counts them."""


def backoff(attempt: int) -> float:
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))


def stored(api: Api, table: str, addresses: Iterable[str]) -> dict[str, LegacyHash]:
    """{address: the user its item holds} for those of `addresses` the table has."""
    client = api.client("dynamodb")
    addresses = list(dict.fromkeys(addresses))   # BatchGetItem refuses a key twice
    found: dict[str, LegacyHash] = {}
    for start in range(0, len(addresses), BATCH_LIMIT):
        keys = [{EMAIL: {"S": address}} for address in addresses[start:start + BATCH_LIMIT]]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                api.sleep(backoff(attempt - 1))
            try:
                answer = client.batch_get_item(RequestItems={
                    table: {"Keys": keys, "ConsistentRead": True}})
            except Exception as exc:  # noqa: BLE001 - only "no such table" is an answer
                if not_found(exc):
                    return {}
                raise
            for item in answer.get("Responses", {}).get(table, []):
                user = LegacyHash.from_item(item)
                found[user.email] = user
            keys = (answer.get("UnprocessedKeys") or {}).get(table, {}).get("Keys") or []
            if not keys:
                break
        else:
            raise NotRead(f"{len(keys)} key(s) of table {table} still unprocessed after "
                          f"{MAX_ATTEMPTS} BatchGetItem calls")
    return found
