"""Named, bounded retries and waits, with an injected sleep so tests take no time.

AWS is eventually consistent: an id returned by CreateVpc can be unknown to the next
ModifyVpcAttribute for a second or two, and a new IAM role is not assumable by Lambda
for up to ~10 s. Each known propagation error has a predicate here, and each wait a
policy whose comment gives the longest it can take.

A retry or a wait asks AWS again because the last answer may be out of date, so the reads
it makes are always sent: `polling()` marks them, and the run's read cache
(runbook.aws.clients) neither answers nor keeps a read made inside it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    name: str
    attempts: int
    first_delay_s: float
    max_delay_s: float

    def delays(self):
        delay = self.first_delay_s
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_delay_s)


# 1 + 2 + 4 + 8 + 8 = 23 s at most: EC2 ids propagate within a few seconds.
EC2_PROPAGATION = Policy("ec2 id propagation", attempts=6, first_delay_s=1, max_delay_s=8)


# 1 + 2 + 4 + 8 + 10 + 10 + 10 = 45 s at most: a new IAM role is usually assumable by
# Lambda within ~10 s; AWS documents no bound.
IAM_PROPAGATION = Policy("iam role propagation", attempts=8, first_delay_s=1, max_delay_s=10)

# 2 + 4 + 8 + 15 + 15 = 44 s: a function whose previous update has not finished.
LAMBDA_UPDATE = Policy("lambda update in progress", attempts=6, first_delay_s=2, max_delay_s=15)


_polls = threading.local()


@contextmanager
def polling():
    """Mark the calls made inside the block, in this thread, as a retry's or a wait's:
    sent to AWS, never answered from the read cache."""
    _polls.depth = getattr(_polls, "depth", 0) + 1
    try:
        yield
    finally:
        _polls.depth -= 1


def is_polling() -> bool:
    return getattr(_polls, "depth", 0) > 0


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", "")


def is_ec2_propagation_error(exc: BaseException) -> bool:
    """`InvalidVpcID.NotFound` and friends right after the id was created."""
    code = error_code(exc)
    return code.startswith("Invalid") and code.endswith(".NotFound")


def is_role_not_assumable(exc: BaseException) -> bool:
    """Lambda's answer while a new role (or its trust policy) has not propagated."""
    return (error_code(exc) == "InvalidParameterValueException"
            and "cannot be assumed" in str(exc))


def is_role_missing_permission(exc: BaseException) -> bool:
    """Lambda's answer to CreateEventSourceMapping while the execution role's new
    statement for the source (sqs:ReceiveMessage, say) has not propagated: "The provided
    execution role does not have permissions to call ReceiveMessage on SQS"."""
    return (error_code(exc) == "InvalidParameterValueException"
            and "does not have permissions" in str(exc))


def is_lambda_update_in_progress(exc: BaseException) -> bool:
    return error_code(exc) == "ResourceConflictException" and "in progress" in str(exc)


def retry(call: Callable[[], T], *, when: Callable[[BaseException], bool], policy: Policy,
          sleep: Callable[[float], None] = time.sleep) -> T:
    delays = policy.delays()
    while True:
        try:
            with polling():
                return call()
        except Exception as exc:  # noqa: BLE001 - filtered by `when`
            if not when(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            sleep(delay)


class WaitTimeout(Exception):
    pass


def wait_until(read: Callable[[], T], done: Callable[[T], bool], *, what: str,
               timeout_s: float, interval_s: float, sleep: Callable[[float], None],
               clock: Callable[[], float] = time.monotonic,
               failed: Callable[[T], str | None] = lambda _: None,
               on_wait: Callable[[str, float], None] = lambda what, elapsed: None) -> T:
    """Poll `read` until `done`; report elapsed time through `on_wait` while waiting.

    `failed` returns a reason when the resource reached a state it will not leave
    (for example an RDS instance in `failed`), which ends the wait at once.
    """
    start = clock()
    while True:
        with polling():
            value = read()
        if done(value):
            return value
        reason = failed(value)
        if reason:
            raise WaitTimeout(f"{what}: {reason}")
        elapsed = clock() - start
        if elapsed >= timeout_s:
            raise WaitTimeout(f"{what}: still not ready after {format_duration(elapsed)}")
        on_wait(what, elapsed)
        sleep(interval_s)


def waiter_poll(waiter, **kwargs) -> bool:
    """One attempt of a boto3 waiter: True when ready, False while still pending.

    The waiter's own acceptors decide, so AWS's definition of a terminal failure state
    (an instance in `failed`, say) ends the wait at once with WaitTimeout. Polling one
    attempt at a time lets the caller print the elapsed time and inject the sleep.
    """
    from botocore.exceptions import WaiterError

    try:
        waiter.wait(WaiterConfig={"Delay": 1, "MaxAttempts": 1}, **kwargs)
        return True
    except WaiterError as exc:
        if "Max attempts exceeded" in str(exc):
            return False
        raise WaitTimeout(str(exc).replace("Waiter ", "", 1)) from None


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60:02d}s"
