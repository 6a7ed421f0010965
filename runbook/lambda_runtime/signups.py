"""The process-user-signup function's work: `user.registered` events from SQS into `users`.

EventBridge puts each event on the queue as its whole envelope (JSON, with `detail` an
object), and Lambda hands the function up to BatchSize messages at once. Each message is
read on its own: a malformed one is refused by its messageId, naming what is wrong, and
never half-written. The good ones are written in one transaction: all of them at once,
in one block (a subtransaction, as a savepoint); should a row fail (a unique e-mail
address owned by another Cognito user, say), that block is rolled back and each is
written in a block of its own, so that the failing row loses no other. That transaction
is one statement, the function store_signups that the migrations create
(templates/sql/0007, replaced by 0008), sent with its timeouts in one round trip
(runbook.lambda_runtime.round_trip). The function
returns the ids of exactly the messages it could not store (`response`), and SQS makes
only those visible again, up to the queue's maxReceiveCount, then moves them to the
dead-letter queue.

SQS delivers at least once, and EventBridge may deliver an event twice: a message seen
again is a no-op. The row is keyed on the Cognito id, and `INSERT ... ON CONFLICT
(cognito_id) DO NOTHING` keeps the row there is.

The envelope's `account` is not read: moto's envelope has none, and the row does not
need it.

`PRIVILEGES` lists exactly the column privileges the statement needs; fix-tables grants
them to the role the function logs in as (runbook.lambda_runtime.dbroles).
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from typing import Iterable

from runbook.lambda_runtime import db, emails, round_trip
from runbook.lambda_runtime.schemas import Schemas

# The partial batch response. Lambda reads a misspelled key as "no failures", and
# deletes the messages that failed: both names are used from here only, and a test
# checks them against the shape AWS documents.
BATCH_ITEM_FAILURES = "batchItemFailures"
ITEM_IDENTIFIER = "itemIdentifier"

DETAIL_TYPE = "user.registered"
# The Cognito id in `detail`: cognito_user_id (as the profiles table names it), or
# Cognito's own attribute name, sub. A detail that gives both must give one value.
SUB_KEYS = ("cognito_user_id", "sub")

# The column widths of 0003_users / 0004_users_cognito: a longer value is refused as
# malformed, as retrying it could never store it.
MAX_LENGTH = {"cognito_id": 128, "email": 255, "name": 255, "phone": 20}

# A batch has up to 10 messages and the function 30 s by default: a lock held by a stuck
# session makes a user's row fail after LOCK_TIMEOUT_MS, and the batch's other rows
# still commit. The batch is one statement, whose timeout is STATEMENT_TIMEOUT_MS for
# each of its rows, as when each row was statements of its own.
STATEMENT_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 3000

# The batch, in the order given (by Cognito id), each user in a subtransaction of its own:
# - INSERT ... ON CONFLICT (cognito_id) DO NOTHING. Untargeted ON CONFLICT would also
#   swallow a clash on the e-mail address (another Cognito user owns it), reporting a
#   message as stored whose user has no row. Targeted on the Cognito id, that clash
#   fails the message instead, and it reaches the DLQ.
# - The user's registration leaves the outbox (templates/sql/0005), whichever path
#   stored it: the queue, or the relay.
# - A user whose row is new gets one audit row (all of the batch's in one statement at
#   its end); a message seen again adds none, so the audit schema counts each stored
#   user once.
# - A unique violation is tried once more; any other error, or a second unique
#   violation, rolls back that user alone, and its row names the SQLSTATE and the
#   primary message, which quote no row value.
# The batch goes as one JSON parameter (BATCH_FIELDS of each user): quoting one string
# costs the client a tenth of quoting six arrays. The function is found in the users'
# schema (DB_USERS_SCHEMA); its tables are those fix-tables rendered it with, the same
# database.users_schema and audit_schema the function's environment names.
FUNCTION = "store_signups"
STORE_SIGNUPS = """
SELECT message, inserted, refused_state, refused_message
  FROM {users}.store_signups(%s::jsonb, %s)
"""
BATCH_FIELDS = ("message_id", "cognito_id", "email", "name", "phone", "email_verified")
QUEUE, RELAY = "queue", "relay"

# The relay's rows: those Post-Confirmation wrote more than `grace_s` ago, so that it
# leaves alone a registration whose publish is still under way, and whose next attempt
# is due, the longest due first.
OUTBOX_DUE = """
SELECT cognito_id, detail FROM {users}.registration_outbox
 WHERE created_at < now() - make_interval(secs => %(grace_s)s)
   AND next_attempt_at <= now()
 ORDER BY next_attempt_at, cognito_id
 LIMIT %(limit)s
"""
# A row the relay could not store is tried again after 5 minutes, then 10, 20, ... and at
# most a day later: it stays visible (the relay fails, and the errors alarm fires, on each
# attempt) without holding up the rows behind it.
OUTBOX_LATER = """
UPDATE {users}.registration_outbox
   SET attempts = attempts + 1,
       next_attempt_at = now() + least(make_interval(days => 1),
                                       make_interval(mins => 5 * power(2, least(attempts, 10))::int))
 WHERE cognito_id = ANY(%(cognito_ids)s)
"""
RELAY_GRACE_S = 60
RELAY_LIMIT = 100          # rows per relay run; the next run takes the rest
OUTBOX_PREFIX = "outbox:"  # how the relay names a row where the queue names a message

# table -> privilege -> columns (an empty tuple: the whole table, as DELETE is granted).
# The ON CONFLICT target needs SELECT on its column, and a DELETE's WHERE on its own;
# id, created_at and updated_at take their defaults. The relay reads the outbox rows it
# stores, which a write-only grant on the users' schema does not let it. The audit row's
# id is an identity column, which needs no privilege on its sequence.
PRIVILEGES: dict[str, dict[str, tuple[str, ...]]] = {
    "users": {
        "SELECT": ("cognito_id",),
        "INSERT": ("cognito_id", "email", "name", "phone", "email_verified"),
    },
    "registration_outbox": {
        "SELECT": ("cognito_id", "detail", "created_at", "attempts", "next_attempt_at"),
        "UPDATE": ("attempts", "next_attempt_at"),
        "DELETE": (),
    },
    "registrations": {
        "INSERT": ("cognito_id", "source", "message_id"),
    },
}

_NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")
# The batch parameter's encoder, made once (json.dumps with options makes one per call).
_ENCODE_BATCH = json.JSONEncoder(separators=(",", ":")).encode
_BATCH_VALUES = operator.attrgetter(*BATCH_FIELDS)  # a Signup's, in BATCH_FIELDS' order


class MalformedEvent(ValueError):
    """The invocation is not an SQS event at all (no Records, a record without a
    messageId): no message can be named, so the whole batch fails."""


class MalformedMessage(ValueError):
    """One message cannot become a row. The text names the field, never its value."""

    def __init__(self, message_id: str, problem: str):
        self.message_id = message_id
        self.problem = problem
        super().__init__(f"message {message_id}: {problem}")


@dataclass(frozen=True)
class Signup:
    message_id: str
    cognito_id: str
    email: str
    name: str | None
    phone: str | None
    email_verified: bool
    receive_count: str | None = None   # ApproximateReceiveCount, for the log


@dataclass(frozen=True)
class Stored:
    message_id: str
    cognito_id: str
    inserted: bool                     # False: the user's row was there already


@dataclass(frozen=True)
class Failed:
    message_id: str
    reason: str                        # SQLSTATE and primary message: no row values


def response(failed_ids: Iterable[str]) -> dict:
    """The partial batch response naming `failed_ids` (each once, in order)."""
    return {BATCH_ITEM_FAILURES: [{ITEM_IDENTIFIER: i} for i in dict.fromkeys(failed_ids)]}


def records(event) -> list[dict]:
    """The SQS records of an invocation, each with a messageId (else MalformedEvent)."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise MalformedEvent("the event has no Records list: not an SQS event")
    for index, record in enumerate(event["Records"]):
        if not isinstance(record, dict) or not isinstance(record.get("messageId"), str) \
                or not record["messageId"]:
            raise MalformedEvent(f"Records[{index}] has no messageId")
    return event["Records"]


def parse(record: dict) -> Signup:
    """The user in one SQS record, or MalformedMessage naming what is wrong."""
    message_id = record["messageId"]

    def bad(problem: str) -> MalformedMessage:
        return MalformedMessage(message_id, problem)

    body = record.get("body")
    if not isinstance(body, str):
        raise bad("body is missing or not a string")
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        # The decoder's message names a position, never the text.
        raise bad(f"body is not JSON ({getattr(exc, 'msg', 'invalid')} at "
                  f"{getattr(exc, 'pos', '?')})") from None
    if not isinstance(envelope, dict):
        raise bad("body is not a JSON object (an EventBridge event)")
    if envelope.get("detail-type") != DETAIL_TYPE:
        raise bad(f"detail-type is not {DETAIL_TYPE}")
    attributes = record.get("attributes") if isinstance(record.get("attributes"), dict) else {}
    return from_detail(message_id, envelope.get("detail"),
                       attributes.get("ApproximateReceiveCount"))


def from_detail(message_id: str, detail, receive_count: str | None = None) -> Signup:
    """The user in a `user.registered` detail (an event's, or the outbox row's), or
    MalformedMessage naming what is wrong."""

    def bad(problem: str) -> MalformedMessage:
        return MalformedMessage(message_id, problem)

    if not isinstance(detail, dict):
        raise bad("detail is missing or not an object")

    def text(key: str, column: str, *, required: bool) -> str | None:
        value = detail.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise bad(f"detail.{key} is {'missing' if value is None else 'empty'}")
            return None
        if not isinstance(value, str):
            raise bad(f"detail.{key} is a {type(value).__name__}, not a string")
        value = value.strip()
        if _NOT_STORABLE.search(value):
            raise bad(f"detail.{key} contains a character PostgreSQL text cannot hold")
        if len(value) > MAX_LENGTH[column]:
            raise bad(f"detail.{key} is longer than {MAX_LENGTH[column]} characters")
        return value

    given = [key for key in SUB_KEYS if detail.get(key) is not None]
    if not given:
        raise bad(f"detail.{SUB_KEYS[0]} is missing")
    subs = {text(key, "cognito_id", required=True) for key in given}
    if len(subs) > 1:
        raise bad(f"detail.{' and detail.'.join(SUB_KEYS)} differ")
    email = text("email", "email", required=True)
    if not emails.well_formed(email):
        raise bad("detail.email is not an e-mail address")
    verified = detail.get("email_verified", False)
    if isinstance(verified, str) and verified in ("true", "false"):
        verified = verified == "true"  # Cognito's spelling of its attribute
    if not isinstance(verified, bool):
        raise bad("detail.email_verified is not true or false")
    return Signup(message_id, subs.pop(), email, text("name", "name", required=False),
                  text("phone", "phone", required=False), verified, receive_count)


def store(conn, signups: list[Signup], *, schemas: Schemas = Schemas(), source: str = QUEUE,
          statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
          lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> tuple[list[Stored], list[Failed]]:
    """Write `signups` in one transaction on `conn` (an autocommit connection), all in
    one subtransaction, or, should a row fail, each user in one of its own: a failing
    row is rolled back alone and reported in `Failed`. One round trip.

    Rows are written in Cognito-id order, so two batches that share users take their
    row locks in the same order and never deadlock. Two deliveries of one user racing
    past ON CONFLICT's check can still meet on the e-mail index (a unique violation for
    the later one, once the earlier commits); that row is tried once more, and then
    finds the earlier one's row.

    An error outside a row (the connection, the batch's statement timeout) raises: no
    message is stored.
    """
    if not signups:
        return [], []
    ordered = sorted(signups, key=lambda s: (s.cognito_id, s.message_id))
    batch = _ENCODE_BATCH([dict(zip(BATCH_FIELDS, _BATCH_VALUES(s))) for s in ordered])
    rows = round_trip.run(conn, STORE_SIGNUPS, (batch, source),
                          identifiers={"users": schemas.users},
                          statement_timeout_ms=statement_timeout_ms * len(ordered),
                          lock_timeout_ms=lock_timeout_ms).fetchall()
    stored: list[Stored] = []
    failed: list[Failed] = []
    for signup, (_, inserted, state, problem) in zip(ordered, rows, strict=True):
        if state is None:
            stored.append(Stored(signup.message_id, signup.cognito_id, inserted))
        else:
            failed.append(Failed(signup.message_id, db.describe_state(state, problem)))
    return stored, failed


def relay(conn, *, schemas: Schemas = Schemas(), grace_s: int = RELAY_GRACE_S,
          limit: int = RELAY_LIMIT) -> tuple[list[Stored], list[Failed]]:
    """Store the registrations the outbox still holds after `grace_s` (their publish
    failed, or their event is still on its way) into `users`, as `store` does, up to
    `limit` of those due. Each is named `outbox:<cognito id>`; a row that cannot be
    stored stays in the outbox, due again later (OUTBOX_LATER), and is in `Failed`."""
    due = conn.execute(round_trip.statement(OUTBOX_DUE, users=schemas.users),
                       {"grace_s": grace_s, "limit": limit}).fetchall()
    good: list[Signup] = []
    failed: list[Failed] = []
    for cognito_id, detail in due:
        try:
            good.append(from_detail(f"{OUTBOX_PREFIX}{cognito_id}", detail))
        except MalformedMessage as exc:
            failed.append(Failed(exc.message_id, exc.problem))
    stored, refused = store(conn, good, schemas=schemas, source=RELAY)
    failed += refused
    if failed:
        conn.execute(round_trip.statement(OUTBOX_LATER, users=schemas.users),
                     {"cognito_ids": [f.message_id.removeprefix(OUTBOX_PREFIX) for f in failed]})
    return stored, failed
