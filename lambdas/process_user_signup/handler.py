"""process-user-signup: `user.registered` events from the SQS queue into the `users` table.

An SQS event source mapping with ReportBatchItemFailures invokes it with up to
BatchSize messages, each an EventBridge event that Post-Confirmation published. The
good messages are written in one transaction, a savepoint each; a redelivered one is a
no-op (runbook.lambda_runtime.signups). It returns the partial batch response naming
exactly the messages it could not store, malformed or refused by the database: SQS
offers only those again and, after maxReceiveCount receives, moves them to the DLQ.

It raises, failing the whole batch, only when no message could be stored at all: the
database cannot be reached, or the event is not an SQS event. Lambda counts that as an
error, which the consumer-errors alarm watches.

The log names a refused message by its messageId and says what is wrong with it; it
shows no body and no e-mail address.

Environment: DB_DSN, or DB_AUTH=iam with DB_HOST, DB_PORT, DB_NAME, DB_USER and
DB_SSLROOTCERT, or DB_SECRET_ARN (runbook.lambda_runtime.db.from_environment);
DB_SCHEMA (default public).
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import db, logs, signups, trigger
from runbook.lambda_runtime.connection import WarmConnection

# Opened by the first invocation of this container, kept for the next ones.
DATABASE = WarmConnection(os.environ, application_name="process-user-signup")


class BatchNotStored(RuntimeError):
    """No message of the batch could be stored; the message says why, without row values."""


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(request_id=trigger.request_id(context))
    try:
        records = signups.records(event)
    except signups.MalformedEvent as exc:
        log.error("SQS event rejected", reason=str(exc))
        raise

    good: list[signups.Signup] = []
    failed: set[str] = set()
    for record in records:
        try:
            good.append(signups.parse(record))
        except signups.MalformedMessage as exc:
            log.error("Message rejected", message_id=exc.message_id, reason=exc.problem,
                      receive_count=(record.get("attributes") or {}).get(
                          "ApproximateReceiveCount"))
            failed.add(exc.message_id)

    schema = os.environ.get("DB_SCHEMA") or "public"

    def work(conn):
        return signups.store(conn, good, schema=schema)

    def reconnecting(exc: BaseException) -> None:
        log.info("Database connection lost; reconnecting", reason=db.describe(exc))

    stored: list[signups.Stored] = []
    if good:
        try:
            stored, refused = DATABASE.run(work, on_reconnect=reconnecting)
        except Exception as exc:  # noqa: BLE001 - logged and raised again, without row values
            reason = db.describe(exc)
            log.error("Batch not stored", reason=reason, messages=len(records),
                      duration_ms=logs.elapsed_ms(started))
            # Not chained: the original's text may quote a row, e-mail address and all.
            raise BatchNotStored(f"batch not stored: {reason}") from None
        for row in refused:
            log.error("Message not stored", message_id=row.message_id, reason=row.reason)
            failed.add(row.message_id)
        for row in stored:
            log.info("User stored" if row.inserted else "User already stored",
                     message_id=row.message_id, sub=row.cognito_id)

    log.info("Batch processed", messages=len(records), stored=len(stored), failed=len(failed),
             duration_ms=logs.elapsed_ms(started))
    # In the batch's order: the ids Lambda must offer again, and no other.
    return signups.response(r["messageId"] for r in records if r["messageId"] in failed)
