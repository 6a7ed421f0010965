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
"""

from __future__ import annotations

import json
import time
from typing import Callable

from runbook.lambda_runtime.profiles import NewUser

SOURCE = "runbook.registration"          # step event-bus's rule matches it
DETAIL_TYPE = "user.registered"
SIGN_UP = "PostConfirmation_ConfirmSignUp"

# Between a failed attempt and the next: short, since Cognito waits at most 5 s in all.
BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8)


class PublishFailed(RuntimeError):
    """The entry was not accepted; the message names the error codes only."""


def should_publish(trigger_source: str) -> bool:
    return trigger_source == SIGN_UP


def detail(user: NewUser, *, email_verified: bool) -> dict:
    """The event's detail: the user Post-Confirmation saves (profiles.new_user, from the
    trigger's attributes as trigger.parse checked them), and whether the address is
    verified."""
    return {"cognito_user_id": user.sub, "email": user.email, "name": user.display_name,
            "phone": user.phone, "email_verified": email_verified}


def entry(bus: str, event_detail: dict) -> dict:
    return {"EventBusName": bus, "Source": SOURCE, "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(event_detail, sort_keys=True)}


def publish(client, bus: str, event_detail: dict, *, deadline: float,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> str:
    """Put the entry on `bus` and return its EventId. A failed entry is sent again until
    `deadline` (a `clock` reading); after that, PublishFailed with the codes seen."""
    request = entry(bus, event_detail)
    codes: list[str] = []
    for attempt in range(len(BACKOFF_S) + 1):
        answer = client.put_events(Entries=[request])
        result = (answer.get("Entries") or [{}])[0]
        if not answer.get("FailedEntryCount") and result.get("EventId"):
            return result["EventId"]
        codes.append(result.get("ErrorCode") or "no EventId")
        wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
        if attempt == len(BACKOFF_S) or clock() + wait >= deadline:
            break
        sleep(wait)
    raise PublishFailed(f"PutEvents did not accept the {DETAIL_TYPE} entry after "
                        f"{len(codes)} attempt(s): {', '.join(codes)}")
