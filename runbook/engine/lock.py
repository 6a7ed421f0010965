"""One run at a time per environment, with the lock kept in the account itself.

Two operators on two machines share nothing but the AWS account, so the lock is an SSM
parameter, `/runbook/<env>/lock`, created with `Overwrite=False`: SSM creates it for
exactly one caller and answers every other one `ParameterAlreadyExists`. Its value says
who holds it (the AWS identity, user, host and process) and since when. A run takes it
before its first write and deletes it when it ends, also after a failure or Ctrl-C; the
second runner polls for a short while (`--lock-wait`), then stops with exit code 2,
naming the holder.

A run that was killed (kill -9, a lost laptop) leaves its lock behind. Nothing expires
it on its own: a long Aurora create is indistinguishable from a dead run, and breaking
a live lock is how two runs interleave. `runbook unlock` shows the holder and deletes the
lock after the operator confirms.

A dry run takes the same lock in its own sandbox's account and never in the real one.
The lock's calls go through a client factory of their own, so they stay out of the
steps' call counts and out of the journal.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from runbook.errors import BadInput
from runbook.aws.retry import error_code, format_duration

POLL_INTERVAL_S = 2.0
DEFAULT_WAIT_S = 30.0


def parameter_name(env: str) -> str:
    return f"/runbook/{env}/lock"


@dataclass(frozen=True)
class Holder:
    identity: str          # the caller's ARN
    user: str
    host: str
    pid: int
    run: str               # what it runs: "a3", "network+database", ...
    since: str             # ISO 8601, UTC
    token: str             # this run's, to release only its own lock

    def describe(self) -> str:
        return (f"{self.user}@{self.host} (pid {self.pid}, {self.identity}), running "
                f"{self.run} since {self.since}{_age(self.since)}")

    def as_value(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_value(cls, value: str) -> "Holder":
        try:
            data = json.loads(value)
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            # Someone else's parameter at this name: still a lock, just not described.
            return cls("unknown", "unknown", "unknown", 0, "unknown", "unknown", "")


class LockHeld(BadInput):
    def __init__(self, env: str, holder: Holder, waited_s: float):
        self.holder = holder
        super().__init__(
            f"environment {env!r} is locked by another runbook run: {holder.describe()}. "
            f"Waited {format_duration(waited_s)}. Let that run finish and try again; if it "
            f"crashed, break the lock with `runbook unlock --env {env}`.")


class RunLock:
    """The lock of one environment, through `ssm` (a boto3 client)."""

    def __init__(self, ssm, env: str, *, sleep=time.sleep, clock=time.monotonic):
        self.ssm = ssm
        self.env = env
        self.name = parameter_name(env)
        self.sleep, self.clock = sleep, clock

    def holder(self) -> Holder | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        return Holder.from_value(value)

    @contextmanager
    def held(self, me: Holder, *, wait_s: float = DEFAULT_WAIT_S, on_wait=None):
        """Take the lock (waiting up to `wait_s`), run the block, release it."""
        self.acquire(me, wait_s=wait_s, on_wait=on_wait)
        try:
            yield me
        finally:
            self.release(me)

    def acquire(self, me: Holder, *, wait_s: float = DEFAULT_WAIT_S, on_wait=None) -> None:
        started = self.clock()
        while True:
            try:
                self.ssm.put_parameter(
                    Name=self.name, Value=me.as_value(), Type="String", Overwrite=False,
                    Description="runbook: the run converging this environment (runbook unlock "
                                "breaks it)")
                return
            except Exception as exc:  # noqa: BLE001 - only "held" is expected
                if error_code(exc) != "ParameterAlreadyExists":
                    raise
            holder = self.holder()
            waited = self.clock() - started
            if holder is None:
                continue  # released between the two calls: try again at once
            if waited >= wait_s:
                raise LockHeld(self.env, holder, waited)
            if on_wait is not None:
                on_wait(holder, waited)
            self.sleep(min(POLL_INTERVAL_S, max(0.0, wait_s - waited)))

    def release(self, me: Holder) -> None:
        """Delete the lock if it is still this run's (`runbook unlock` may have broken it)."""
        holder = self.holder()
        if holder is not None and holder.token == me.token:
            try:
                self.ssm.delete_parameter(Name=self.name)
            except self.ssm.exceptions.ParameterNotFound:
                pass

    def break_lock(self) -> Holder | None:
        """Delete the lock whoever holds it; the holder it had, or None."""
        holder = self.holder()
        if holder is not None:
            try:
                self.ssm.delete_parameter(Name=self.name)
            except self.ssm.exceptions.ParameterNotFound:
                return None
        return holder


def me(identity: str, run: str) -> Holder:
    """This process, as the lock's value names it."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return Holder(identity=identity, user=user, host=socket.gethostname(), pid=os.getpid(),
                  run=run, since=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  token=uuid.uuid4().hex)


def _age(since: str) -> str:
    try:
        then = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return ""
    seconds = (datetime.now(timezone.utc) - then).total_seconds()
    return f" ({format_duration(max(0.0, seconds))} ago)"
