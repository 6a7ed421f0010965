"""The destroy's crash sweep: fail each delete of `runbook destroy` in turn, run it again,
and check that the account ends empty of the environment.

A destroy keeps no state of its own: it lists the account afresh (runbook.teardown),
and each delete is idempotent. A destroy that failed at its k-th write and the destroy
run after it are therefore the same as a destroy that failed at its first write after
k-1 deletes had been made. So one build of the environment serves every point: a chain
of destroys, each failed at its first write, walks through every write of a whole
destroy in order. At each write k, two faults:

  throttling             the write is refused before it is sent (nothing happened);
then, at one point and the next in turn,
  response-lost          the write takes effect and its answer is lost (runbook stops);
  response-lost-retried  the write takes effect, the connection drops and botocore's
                         retry sends it again: AWS answers "not found", or "already being
                         deleted", to a delete that succeeded.

(runbook.sandbox.sweep says how each fault is made.) A point converges when the destroy
after it goes on from where the failed one stopped. The chain ends with a destroy that
makes no write; then the account (runbook.sandbox.leftovers, plain boto3) must hold
nothing of the environment, and the verify destroy after it must make no write.

Used by tests/integration/test_destroy_crash.py and bench/destroy_sweep.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from runbook import teardown as td
from runbook.aws.api import Api
from runbook.engine import lock
from runbook.errors import RunbookError
from runbook.output.progress import Progress
from runbook.resources.base import DeleteOptions
from runbook.sandbox import leftovers
from runbook.sandbox.sweep import (Account, Fault, Point, Write, _short_sleep, faulty,
                                   refused)

LOST = ("response-lost", "response-lost-retried")


@dataclass
class Attempt:
    """One destroy of the chain: the point it failed at, and what it did."""

    k: int                      # the write of the whole destroy it failed at (1-based)
    kind: str
    call: str | None            # the write that failed ("ec2:DeleteSubnet"), None: none made
    error: str | None


@dataclass
class Result:
    attempts: list[Attempt] = field(default_factory=list)
    writes: int = 0             # the writes a whole destroy made (the chain's length)
    left: dict = field(default_factory=dict)      # the environment's, after the chain
    verify_writes: int = 0
    seconds: float = 0.0
    stuck: str | None = None

    @property
    def converged(self) -> bool:
        return not self.left and not self.verify_writes and self.stuck is None


class ThenStop(Fault):
    """`point`'s fault, then the write after it refused: a destroy that botocore's retry
    carried over the fault (response-lost-retried) stops right after the point's write,
    so that the chain's next destroy starts at the write after it."""

    def before(self, service: str, operation: str, write: bool) -> None:
        if write and self.fired and len(self.writes) == self.point.k:
            self.writes.append(Write(len(self.writes) + 1, self._aws.scope,
                                     f"{service}:{operation}"))
            raise refused("throttling", self.point.k + 1, operation)
        super().before(service, operation, write)


def destroy(config, account: Account, options: DeleteOptions, fault: Fault | None = None):
    """One `runbook destroy` of the whole environment through a fresh factory (with the
    fault, if any), under the environment's run lock: the error it stopped on, or None."""
    aws = faulty(account, fault)
    run_lock = lock.RunLock(account.factory().client("ssm"), config.env, sleep=_short_sleep)
    with run_lock.held(lock.me("runbook destroy sweep", "destroy"), wait_s=0):
        try:
            teardown = td.plan(Api(aws, sleep=_short_sleep), config, config.all_steps(),
                               whole=True, options=options)
            td.Destroyer(aws, Progress(quiet=True), sleep=_short_sleep).run(teardown)
        except RunbookError as exc:
            return exc, aws
    return None, aws


def sweep(config, account: Account, options: DeleteOptions, *, stride: int = 1,
          on_attempt=None) -> Result:
    """Walk the chain over an account where `config`'s environment was built: at write k,
    a destroy refused there (throttling), then one whose write k takes effect and whose
    answer is lost (response-lost and response-lost-retried in turn). With `stride` s > 1
    (a sample), the refused destroy makes s - 1 writes before it fails, so only every
    s-th write is a point."""
    result, started, k = Result(), time.monotonic(), stride
    while True:
        lost = LOST[(k // stride) % 2]
        for kind, at in (("throttling", stride), (lost, 1)):
            fault = (ThenStop if kind == "response-lost-retried" else Fault)(Point(at, kind))
            error, _ = destroy(config, account, options, fault)
            if fault.fired is None:
                return _finish(config, account, options, result, started, k, error)
            attempt = Attempt(k, kind, fault.fired, str(error) if error else None)
            result.attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if error is None and kind != "response-lost-retried":
                result.stuck = f"write {k} failed ({kind}) and the destroy went on as if not"
                result.seconds = time.monotonic() - started
                return result
        k += stride


def _finish(config, account: Account, options: DeleteOptions, result: Result,
            started: float, k: int, error) -> Result:
    """The destroy that made no write: nothing was left to delete, or it is broken."""
    if error is not None:
        result.stuck = f"a destroy with no fault failed: {error}"
    result.writes = max((a.k for a in result.attempts), default=0)
    result.left = leftovers.of_env(account.client, config.env, config.function_name(""))
    _, verify = destroy(config, account, options)
    result.verify_writes = verify.total("write")
    result.seconds = time.monotonic() - started
    return result
