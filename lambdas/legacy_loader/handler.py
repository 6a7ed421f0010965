"""legacy-loader: legacy users' password hashes from the MSK topic into the hash table.

An MSK event source mapping invokes it with up to BatchSize records, which the producer
(step stage-legacy-users) sent, one per legacy user. Each record is read on its own
(runbook.lambda_runtime.legacy_hashes): a malformed one is refused by its name,
`<topic>-<partition>@<offset>`, logged and counted, and the batch goes on without it,
since retrying could never store it. Each e-mail's last record is written with
BatchWriteItem, 25 distinct e-mails a call, UnprocessedItems sent again with backoff.

It raises, failing the whole batch, when a well-formed record could not be stored
(DynamoDB refused a call, or items stayed unprocessed), or when the event is no MSK
event. The mapping has no partial batch response: Lambda invokes it again with the
same batch, which writes the same items (a replay changes nothing), and commits the
offsets only after a success. What it returns (counts and the refused records' names)
is for an operator; Lambda ignores it.

The log names records by topic, partition and offset and counts them; it never shows a
value, a hash or an e-mail address.

Environment: HASH_TABLE, the table's name.
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import legacy_hashes, logs, trigger

TABLE_VARIABLE = "HASH_TABLE"

# Made in the init, as Lambda advises for SDK clients, not in the first batch's time.
# Should it fail, the first invocation makes it again, and fails with the reason.
try:
    CLIENT = legacy_hashes.dynamodb_client()
except Exception:  # noqa: BLE001 - see above
    CLIENT = None

# The backoff's sleep between BatchWriteItem calls; tests put a clock here.
sleep = time.sleep


class BatchNotStored(RuntimeError):
    """A record of the batch could not be stored; the message says why, without values."""


def client():
    global CLIENT
    if CLIENT is None:
        CLIENT = legacy_hashes.dynamodb_client()
    return CLIENT


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(request_id=trigger.request_id(context))
    try:
        records = legacy_hashes.records(event)
    except legacy_hashes.MalformedEvent as exc:
        log.error("MSK event rejected", reason=str(exc))
        raise
    table = os.environ.get(TABLE_VARIABLE)
    if not table:
        log.error("Batch not stored", reason=f"{TABLE_VARIABLE} is not set", records=len(records))
        raise BatchNotStored(f"{TABLE_VARIABLE} is not set")

    good: list[legacy_hashes.Received] = []
    refused: list[str] = []
    for name, record in records:
        try:
            good.append(legacy_hashes.parse(name, record))
        except legacy_hashes.MalformedRecord as exc:
            log.error("Record refused", record=exc.name, reason=exc.problem)
            refused.append(exc.name)
    users, superseded = legacy_hashes.latest(good)

    try:
        written = legacy_hashes.write(client(), table, users, sleep=sleep)
    except Exception as exc:  # noqa: BLE001 - logged and raised again, without values
        reason = describe(exc)
        log.error("Batch not stored", reason=reason, records=len(records), table=table,
                  duration_ms=logs.elapsed_ms(started))
        # Not chained: a client error's text may quote the request.
        raise BatchNotStored(f"batch not stored: {reason}") from None

    log.info("Batch processed", records=len(records), stored=written.items,
             superseded=superseded, refused=len(refused), calls=written.calls,
             retries=written.retries, duration_ms=logs.elapsed_ms(started))
    return {"records": len(records), "stored": written.items, "superseded": superseded,
            "refused": refused}


def describe(exc: BaseException) -> str:
    """What failed, without a value: the error code of a ClientError, the message of
    NotStored (counts only), else the exception's type."""
    if isinstance(exc, legacy_hashes.NotStored):
        return str(exc)
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") \
        if isinstance(getattr(exc, "response", None), dict) else None
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__
