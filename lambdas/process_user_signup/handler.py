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

The relay: invoked by its schedule (an EventBridge "Scheduled Event"), it stores the
registrations that the registration outbox still holds, those whose publish failed in
Post-Confirmation (runbook.lambda_runtime.signups.relay), and raises when one could
not be stored, so that the errors alarm sees it.

The log names a refused message by its messageId and says what is wrong with it; it
shows no body and no e-mail address.

Environment: DB_DSN, or DB_AUTH=iam with DB_HOST, DB_PORT, DB_NAME, DB_USER and
DB_SSLROOTCERT, or DB_SECRET_ARN (runbook.lambda_runtime.db.from_environment);
DB_USERS_SCHEMA and DB_AUDIT_SCHEMA (runbook.lambda_runtime.schemas).
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import db, logs, signups, trigger
from runbook.lambda_runtime.connection import WarmConnection
from runbook.lambda_runtime.schemas import Schemas

# Opened by the first invocation of this container, kept for the next ones.
DATABASE = WarmConnection(os.environ, application_name="process-user-signup")


class BatchNotStored(RuntimeError):
    """No message of the batch could be stored; the message says why, without row values."""


class RelayIncomplete(RuntimeError):
    """The relay left registrations in the outbox; the log names them by Cognito id."""


def scheduled(event) -> bool:
    """Whether `event` is the relay's schedule firing (EventBridge's Scheduled Event)."""
    return isinstance(event, dict) and event.get("source") == "aws.events" \
        and event.get("detail-type") == "Scheduled Event"


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(request_id=trigger.request_id(context))
    if scheduled(event):
        return relay(log, started)
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

    schemas = Schemas.from_environment(os.environ)

    def work(conn):
        return signups.store(conn, good, schemas=schemas)

    stored: list[signups.Stored] = []
    if good:
        stored, refused = run(log, work, started, what="Batch", messages=len(records))
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


def relay(log: logs.Log, started: float) -> None:
    """Store what the registration outbox holds past its grace period."""
    schemas = Schemas.from_environment(os.environ)
    stored, refused = run(log, lambda conn: signups.relay(conn, schemas=schemas), started,
                          what="Relay")
    for row in refused:
        log.error("Registration not relayed", outbox=row.message_id, reason=row.reason)
    for row in stored:
        log.info("User relayed from the outbox" if row.inserted else "Outbox row already stored",
                 sub=row.cognito_id)
    log.info("Relay processed", stored=len(stored), failed=len(refused),
             duration_ms=logs.elapsed_ms(started))
    if refused:
        raise RelayIncomplete(f"{len(refused)} registration(s) left in the outbox")


def run(log: logs.Log, work, started: float, *, what: str, **fields):
    """`work(conn)` on the container's connection; an error is logged and raised as
    BatchNotStored, without row values."""

    def reconnecting(exc: BaseException) -> None:
        log.info("Database connection lost; reconnecting", reason=db.describe(exc))

    try:
        return DATABASE.run(work, on_reconnect=reconnecting)
    except Exception as exc:  # noqa: BLE001 - logged and raised again, without row values
        reason = db.describe(exc)
        log.error(f"{what} not stored", reason=reason, duration_ms=logs.elapsed_ms(started),
                  **fields)
        # Not chained: the original's text may quote a row, e-mail address and all.
        raise BatchNotStored(f"{what.lower()} not stored: {reason}") from None
