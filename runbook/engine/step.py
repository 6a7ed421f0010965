"""The step contract: read, plan, apply, settle, outputs.

A step's `read` makes only read calls and returns what exists. Its `plan` is a pure
function of that state and the config: the engine runs it with every AWS call refused.
`apply` executes exactly the planned changes, one by one, and `outputs` derives what
later steps consume: a small frozen dataclass (`Outputs`), with `Unknown` for what the
plan has yet to create.

A step reads the outputs of the steps it needs through `self.inputs`, by attribute
(`self.inputs.store_secrets` for step `store-secrets`). What a step needs is declared
once, in the catalogue (runbook.steps.CATALOGUE); asking for another step's outputs is
a programming error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar

from runbook.aws import retry
from runbook.aws.api import Api
from runbook.engine.plan import Change, Unknown, is_known
from runbook.errors import ImpurePlan, StepFailed


@dataclass(frozen=True)
class Outputs:
    """Base of a step's outputs. `as_report` is the JSON-able form the report shows."""

    def as_report(self) -> dict:
        return _jsonable(asdict(self))

    def unknown(self) -> list[str]:
        """The fields a consumer cannot use yet: those Unknown, or a list holding one.
        None is a field that does not apply (fix-tables' migrate_function without
        connect: lambda), and a mapping (vpc-integrate's endpoints by service) says what
        exists, so neither counts."""
        return [f.name for f in fields(self)
                if (value := getattr(self, f.name)) is not None and not is_known(value)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Unknown):
        return str(value)
    return value


class Inputs:
    """The outputs of the steps a step needs, read through `upstream` on first use:
    from this run when the step ran, and otherwise live (read calls only)."""

    def __init__(self, step: str, needs: tuple[str, ...], upstream: Callable[[str], Any]):
        self._step, self._needs, self._upstream = step, needs, upstream

    def __getattr__(self, attribute: str):
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        name = attribute.replace("_", "-")
        if name not in self._needs:
            raise AttributeError(
                f"step {self._step!r} reads the outputs of {name!r}, which its entry in "
                f"runbook.steps.CATALOGUE does not list (it needs {', '.join(self._needs)})")
        return self._upstream(name)


@dataclass
class StepContext:
    config: Any
    aws: Any                      # runbook.aws.clients.ClientFactory
    progress: Any                 # runbook.output.progress.Progress
    upstream: Callable[[str], Any]
    dry_run: bool = False
    plan_only: bool = False
    # The step is read for its outputs only (Runner.upstream), not to be planned: what
    # only its plan needs is not read.
    outputs_only: bool = False
    # `runbook run --allow-reboot`: a step may restart a database instance (step database,
    # to apply a new cluster parameter group). Without it the restart stays pending.
    allow_reboot: bool = False
    # A dry run's stand-in for the cluster: the sandbox's PostgreSQL database, and the
    # TLS front-end that takes IAM token logins for it (runbook.sandbox.tls).
    database_dsn: str | None = None
    database_tls: Any = None
    # How runbook's own Kafka clients reach an MSK cluster (runbook.aws.kafka): None, IAM
    # with the run's credentials; in a dry run, the sandbox's (its broker, token checked).
    kafka: Any = None
    # A dry run's legacy PostgreSQL (phase a5's source): the sandbox's database loaded
    # with the Supabase-era users, used unless the environment variable is set.
    legacy_dsn: str | None = None
    # Runs a deployed function: (function name, event) -> Invocation. The edge supplies
    # it (runbook.functions.invoke.for_steps): on Lambda live, locally in a dry run.
    invoker: Callable[[str, dict], Any] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def wait_for(self, service: str, waiter: str, *, what: str, timeout_s: float,
                 interval_s: float = 15, **kwargs) -> None:
        """Wait on a boto3 waiter, printing the elapsed time while it is pending."""
        poll = self.aws.client(service).get_waiter(waiter)
        try:
            retry.wait_until(lambda: retry.waiter_poll(poll, **kwargs), bool, what=what,
                             timeout_s=timeout_s, interval_s=interval_s, sleep=self.sleep,
                             clock=self.clock, on_wait=self.progress.waiting)
        except retry.WaitTimeout as exc:
            raise StepFailed(self.progress.current_step or "?", what, str(exc)) from None

    def invoke(self, function_name: str, event: dict):
        """Run a deployed function with `event` (see `invoker`). Refused while a plan runs,
        as every AWS call is: a dry run's invoker does not go through the run's clients."""
        refused = getattr(self.aws, "refused", lambda: None)()
        if refused is not None:
            raise ImpurePlan(refused, "lambda", "Invoke")
        if self.invoker is None:
            raise StepFailed(self.progress.current_step or "?", f"lambda:function {function_name}",
                             "this run has no way to invoke functions (no invoker given)")
        return self.invoker(function_name, event)


class Step:
    """Base of every step module's `STEP` class."""

    name: ClassVar[str]

    def __init__(self, ctx: StepContext, inputs: Inputs | None = None):
        self.ctx = ctx
        self.config = ctx.config
        self.inputs = inputs if inputs is not None else Inputs(self.name, (), ctx.upstream)
        self.api = Api(ctx.aws, sleep=ctx.sleep)

    def read(self):
        raise NotImplementedError

    def plan(self, state) -> list[Change]:
        raise NotImplementedError

    def outputs(self, state) -> Outputs:
        """What later steps consume; Unknown for what the plan has yet to create."""
        raise NotImplementedError

    def apply(self, state, change: Change) -> bool | None:
        """Apply one change: run what the plan put in it. Returns False when it turned out
        to be done already (by a concurrent run), so that it is not counted as applied."""
        return change.run(self.api, state, **change.args)

    def settle(self, state) -> None:
        """Wait (read calls only) until what this step proves or must hand over is ready.
        A resource that only a later step needs ready (a new cluster) is waited for by
        that step, so that the steps which need only its ids overlap the wait."""

    def close(self) -> None:
        """Release what `read` opened (a database connection). Always called."""

    def evidence(self) -> dict:
        """What the step proved beyond its changes, for the report ({"checks": [...],
        "timings": {...}} for the integration test). Read even when the step failed."""
        return {}

    def client(self, service: str):
        return self.ctx.aws.client(service)

    def wait_until(self, read: Callable[[], Any], done: Callable[[Any], bool], *, what: str,
                   resource: str, timeout_s: float, interval_s: float,
                   failed: Callable[[Any], str | None] = lambda _: None) -> Any:
        """retry.wait_until with the run's sleep, clock and progress (the elapsed time
        printed while it waits); a timeout, or a state `failed` names, fails this step
        on `resource`."""
        try:
            return retry.wait_until(read, done, what=what, timeout_s=timeout_s,
                                    interval_s=interval_s, sleep=self.ctx.sleep,
                                    clock=self.ctx.clock, failed=failed,
                                    on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout as exc:
            raise StepFailed(self.name, resource, str(exc)) from None

