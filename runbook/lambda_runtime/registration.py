"""A confirmed user's registration as an EventBridge `user.registered` entry, and publishing
it (phase a4: Post-Confirmation -> bus -> rule -> SQS -> process_user_signup -> users).

PutEvents answers HTTP 200 even when an entry failed: the answer's FailedEntryCount, and
the failed entry's ErrorCode in place of an EventId, say so. `publish` therefore reads
the answer, and sends a failed entry again (only the failed ones: here there is one),
with a short backoff, for as long as the trigger's deadline allows. What still fails is
a PublishFailed naming the error codes, never the entry: its detail holds an address.

`Source` is runbook's own (an `aws.*` source is refused by AWS), and the detail carries
what `users` needs: the Cognito id, the address, the name, the phone and whether the
address was verified. It is sent for PostConfirmation_ConfirmSignUp only: a password
reset confirms no new user.

No registration is lost: the detail is first written to the registration outbox
(`OUTBOX_INSERT`, templates/sql/0005, in the users' schema since 0006) in the transaction that writes the user's
profile, so the profile is never committed without it. The entry is published after
the commit. If publishing fails, the row stays, and process-user-signup's relay, run on
a schedule, stores it into `users` (runbook.lambda_runtime.signups.relay); the consumer
deletes the row in the transaction that stores the user, whichever path came first.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from runbook.lambda_runtime import round_trip
from runbook.lambda_runtime.profiles import NewUser

SOURCE = "runbook.registration"          # step event-bus's rule matches it
DETAIL_TYPE = "user.registered"
SIGN_UP = "PostConfirmation_ConfirmSignUp"

# The outbox row. A retried trigger finds its row there (or, if the consumer stored the
# user already, adds one the relay then finds stored): nothing to update.
OUTBOX_INSERT = """
INSERT INTO {schema}.registration_outbox (cognito_id, detail)
VALUES (%(cognito_id)s, %(detail)s)
ON CONFLICT DO NOTHING
"""

# table -> privilege -> columns: what Post-Confirmation's role needs for OUTBOX_INSERT,
# besides the profile's (runbook.lambda_runtime.profiles.PRIVILEGES).
PRIVILEGES: dict[str, dict[str, tuple[str, ...]]] = {
    "registration_outbox": {"INSERT": ("cognito_id", "detail")},
}

# Kept from the trigger's remaining time for what follows the publish (the log lines,
# returning to Cognito).
MARGIN_S = 0.5

# Between a failed attempt and the next: short, since Cognito waits at most 5 s in all.
BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8)
# The events client's timeouts: PutEvents answers in tens of milliseconds, and an attempt
# is made only while the longest it can take fits in the trigger's deadline (publish).
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 0.5, 1.0
ATTEMPT_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S
# Answers that the same entry would get again: sending it again only spends the
# trigger's seconds (a bus not made yet, a role without PutEvents, a refused entry).
NOT_RETRIED = frozenset({
    "ResourceNotFoundException", "AccessDeniedException", "ValidationException",
    "UnrecognizedClientException", "InvalidArgument", "MalformedDetail",
    "NotAuthorizedForSourceException", "NotAuthorizedForDetailTypeException"})


class PublishFailed(RuntimeError):
    """The entry was not accepted; the message names the error codes only."""


def events_client():
    """An EventBridge client for `publish`: short timeouts and no retries of its own,
    since `publish` retries within the trigger's deadline and botocore's own retries
    would not stop at it. Made once per container, on first use."""
    global _CLIENT
    if _CLIENT is None:
        import boto3
        from botocore.config import Config

        _CLIENT = boto3.client("events", config=Config(
            connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
            retries={"mode": "standard", "max_attempts": 1}))
    return _CLIENT


_CLIENT = None


def should_publish(trigger_source: str) -> bool:
    return trigger_source == SIGN_UP


def detail(user: NewUser, *, email_verified: bool) -> dict:
    """The event's detail: the user Post-Confirmation saves (profiles.new_user, from the
    trigger's attributes as trigger.parse checked them), and whether the address is
    verified."""
    return {"cognito_user_id": user.sub, "email": user.email, "name": user.display_name,
            "phone": user.phone, "email_verified": email_verified}


def add_to_outbox(conn, event_detail: dict, *, schema: str = "app") -> None:
    """Write the outbox row for `event_detail` on `conn`, inside the caller's
    transaction (profiles.write_profile's `also`). `schema`: the one that holds the
    outbox, the users' (runbook.lambda_runtime.schemas)."""
    from psycopg.types.json import Jsonb

    conn.execute(round_trip.statement(OUTBOX_INSERT, schema=schema),
                 {"cognito_id": event_detail["cognito_user_id"], "detail": Jsonb(event_detail)})


def deadline(context, started: float, *, clock: Callable[[], float] = time.monotonic,
             limit_s: float = 5.0) -> float:
    """The `clock` reading by which publishing must be over: Cognito's `limit_s` from
    `started` (the handler's first `clock` reading) or the invocation's remaining time,
    whichever ends first, less MARGIN_S."""
    end = started + limit_s
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        end = min(end, clock() + remaining() / 1000)
    return end - MARGIN_S


def entry(bus: str, event_detail: dict) -> dict:
    return {"EventBusName": bus, "Source": SOURCE, "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(event_detail, sort_keys=True)}


def publish(client, bus: str, event_detail: dict, *, deadline: float,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep,
            attempt_s: float = ATTEMPT_S) -> str:
    """Put the entry on `bus` and return its EventId. A failed entry, or a call that
    failed whole (throttled, the endpoint unreachable), is sent again, unless its code
    is one of NOT_RETRIED. An attempt is made only while `attempt_s` (the longest one
    attempt can take: the client's timeouts) fits before `deadline`, a `clock` reading,
    so that publishing never outlasts it; then PublishFailed with the codes seen."""
    request = entry(bus, event_detail)
    codes: list[str] = []
    for attempt in range(len(BACKOFF_S) + 1):
        if clock() + attempt_s > deadline:
            codes.append("no time left for an attempt")
            break
        try:
            answer = client.put_events(Entries=[request])
        except Exception as exc:  # noqa: BLE001 - an attempt that failed whole: named, sent again
            codes.append(_code(exc))
        else:
            result = (answer.get("Entries") or [{}])[0]
            if not answer.get("FailedEntryCount") and result.get("EventId"):
                return result["EventId"]
            codes.append(result.get("ErrorCode") or "no EventId")
        wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
        if codes[-1] in NOT_RETRIED or attempt == len(BACKOFF_S) or \
                clock() + wait + attempt_s > deadline:
            break
        sleep(wait)
    raise PublishFailed(f"PutEvents did not accept the {DETAIL_TYPE} entry after "
                        f"{len(codes)} attempt(s): {', '.join(codes)}")


def _code(exc: BaseException) -> str:
    """An exception's AWS error code, else its type: never its text, which may quote the
    request."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code or type(exc).__name__
