"""The step engine: read, plan, apply, for each step of a run, in order.

A step's `read` makes only read calls and returns what exists. Its `plan` is a pure
function of that state and the config: a list of `Change`s, each naming the resource,
the action and the fields that differ. `apply` executes exactly those changes, one by
one, updating the state as it goes, and `outputs` derives the ids later steps consume.
An empty plan therefore means no mutating call, which the call counts in the report
prove.

Inputs from earlier steps are taken from the same run when they ran, and otherwise
read live (`Runner.upstream`): a step never needs the previous run's report.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from runbook.aws import retry
from runbook.errors import BadInput, PrerequisiteMissing, RunbookError, StepFailed
from runbook.steps import CATALOGUE, step_class

# Placeholder for a value that exists only once a planned change is applied.
UNKNOWN = "(known after apply)"


def is_known(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(is_known(item) for item in value)
    return value is not None and value != UNKNOWN


@dataclass(frozen=True)
class Change:
    """One planned change to one resource.

    `op` and `args` say how to apply it (`Step.apply_<op>(state, **args)`); they stay
    out of reports. `diff` is what a person reads: for a create, the main settings;
    for an update, {field: {"from": current, "to": desired}}. It never holds a secret.
    `detail` is longer text shown only on request (`plan --sql`): the SQL to be run.
    """

    action: str          # create | update | delete
    resource: str        # "<service>:<type> <name>", e.g. "ec2:vpc matbakh-prod-vpc"
    op: str
    args: dict = field(default_factory=dict)
    diff: dict = field(default_factory=dict)
    detail: str | None = None

    SYMBOLS: ClassVar[dict[str, str]] = {"create": "+", "update": "~", "delete": "-"}

    def describe(self) -> str:
        details = ", ".join(f"{key}: {_render(value)}" for key, value in self.diff.items())
        return f"{self.SYMBOLS[self.action]} {self.resource}" + (f" ({details})" if details else "")

    def as_report(self) -> dict:
        return {"resource": self.resource, "action": self.action, "diff": self.diff}


def _render(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        return f"{value['from']} -> {value['to']}"
    return str(value)


def diff_field(diffs: dict, name: str, current: Any, desired: Any) -> None:
    if current != desired:
        diffs[name] = {"from": current, "to": desired}


def tag_change(label: str, resource_id: str, desired: dict, current: dict, op: str) -> list[Change]:
    """The change that adds the desired tags `current` lacks, or none.

    Tags are only added: tags someone else put on a resource are left alone.
    """
    from runbook.aws.naming import missing_tags, tag_diff

    add = missing_tags(desired, current)
    if not add:
        return []
    return [Change("update", label, op, {"resource_id": resource_id, "tags": add},
                   {"tags": tag_diff(current, add)})]


@dataclass
class StepContext:
    config: Any
    aws: Any                      # ClientFactory
    progress: Any                 # Progress
    upstream: Callable[[str], dict]
    dry_run: bool = False
    plan_only: bool = False
    # `runbook run --allow-reboot`: a step may restart a database instance (step database,
    # to apply a new cluster parameter group). Without it the restart stays pending.
    allow_reboot: bool = False
    # A dry run's stand-in for the cluster: the sandbox's PostgreSQL database, and the
    # TLS front-end that takes IAM token logins for it (runbook.sandbox_tls).
    database_dsn: str | None = None
    database_tls: Any = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def retry_ec2(self, call: Callable[[], Any]) -> Any:
        return retry.retry(call, when=retry.is_ec2_propagation_error,
                           policy=retry.EC2_PROPAGATION, sleep=self.sleep)

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
        """Run a deployed function with `event` (runbook.invoke.invoke_for_step)."""
        from runbook.functions.invoke import invoke_for_step

        return invoke_for_step(self.aws, function_name, event, dry_run=self.dry_run,
                               database_dsn=self.database_dsn, database_tls=self.database_tls)


class Step:
    """Base of every step module's `STEP` class."""

    name: ClassVar[str]

    def __init__(self, ctx: StepContext):
        self.ctx = ctx
        self.config = ctx.config

    def read(self):
        raise NotImplementedError

    def plan(self, state) -> list[Change]:
        raise NotImplementedError

    def outputs(self, state) -> dict:
        """Ids later steps consume; UNKNOWN for what the plan has yet to create."""
        raise NotImplementedError

    def apply(self, state, change: Change) -> bool | None:
        """Apply one change. Returns False when it turned out to be done already (by a
        concurrent run), so that it is not counted as applied."""
        return getattr(self, f"apply_{change.op}")(state, **change.args)

    def settle(self, state) -> None:
        """Wait (read calls only) until what exists is ready for later steps."""

    def close(self) -> None:
        """Release what `read` opened (a database connection). Always called."""

    def evidence(self) -> dict:
        """What the step proved beyond its changes, for the report ({"checks": [...],
        "timings": {...}} for the integration test). Read even when the step failed."""
        return {}

    def client(self, service: str):
        return self.ctx.aws.client(service)

    def claim(self, resource: str, tags: dict | None, field: str) -> None:
        """Refuse a found resource that another environment owns (naming.claim)."""
        from runbook.aws.naming import claim

        claim(self.config, self.name, resource, tags, field)


@dataclass
class StepResult:
    name: str
    phase: str
    status: str = "ok"            # ok | failed | not_run | interrupted
    changes: list[Change] = field(default_factory=list)
    applied: int = 0
    duration_ms: int = 0
    api_calls: dict = field(default_factory=lambda: {"read": 0, "write": 0})
    outputs: dict = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # "input" (exit 2) or "failure" (exit 1)
    idempotent: bool = True
    unbuilt: bool = False          # named by the design, not built in this version
    evidence: dict = field(default_factory=dict)  # Step.evidence(): checks and timings
    # The input error behind `error`, for callers that tell kinds apart (runbook.preflight.ownership).
    exception: BadInput | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Ran and succeeded, or was skipped because this version does not build it."""
        return self.status == "ok" or self.unbuilt

    @property
    def changed(self) -> bool:
        return self.applied > 0


class Runner:
    """Runs (or only plans) a list of steps against one ClientFactory."""

    def __init__(self, config, aws, progress, *, dry_run: bool = False, plan_only: bool = False,
                 scope_prefix: str = "", sleep=time.sleep, clock=time.monotonic,
                 database_dsn: str | None = None, database_tls=None,
                 allow_reboot: bool = False):
        self.config, self.aws, self.progress = config, aws, progress
        self.database_dsn, self.database_tls = database_dsn, database_tls
        self.allow_reboot = allow_reboot
        self.dry_run, self.plan_only = dry_run, plan_only
        self.scope_prefix = scope_prefix
        self.sleep, self.clock = sleep, clock
        self.outputs: dict[str, dict] = {}
        self.interrupted: StepResult | None = None
        self._current: str | None = None

    def context(self) -> StepContext:
        return StepContext(self.config, self.aws, self.progress, self.upstream,
                           dry_run=self.dry_run, plan_only=self.plan_only,
                           allow_reboot=self.allow_reboot,
                           database_dsn=self.database_dsn, database_tls=self.database_tls,
                           sleep=self.sleep, clock=self.clock)

    def run(self, names: list[str], results: list[StepResult] | None = None) -> list[StepResult]:
        """Run `names` in order; stop at the first failure (the rest are `not_run`).

        A plan goes on past a step it could not plan: only the steps that consume that
        step's outputs are left out (`not_run`, saying which step they wait for), so one
        unreachable database does not hide what the other steps would change.

        Results are appended to `results` as each step ends, so a caller that passed a
        list still has them when Ctrl-C interrupts the run.
        """
        results = [] if results is None else results
        for name in names:
            info = CATALOGUE[name]
            blocked = self._blocked_by(name, results)
            if info.module is None:
                result = StepResult(name, self.config.phase_of(name), status="not_run",
                                    idempotent=info.idempotent, unbuilt=True,
                                    error=f"step {name!r} is not built in this version of "
                                          "runbook; it was skipped")
                self.progress.step_skipped(name, "not built in this version of runbook")
                results.append(result)
            elif blocked:
                error = (f"it needs {blocked}, which could not be planned"
                         if self.plan_only else None)
                results.append(StepResult(name, self.config.phase_of(name), status="not_run",
                                          idempotent=info.idempotent, error=error))
            else:
                results.append(self.run_step(name))
        return results

    def _blocked_by(self, name: str, results: list[StepResult]) -> str | None:
        """The step that keeps `name` from running: in a run, any earlier failure; in a
        plan, a step of this plan that `name` consumes and that was not planned."""
        failed = [r.name for r in results if not r.ok]
        if not self.plan_only:
            return failed[0] if failed else None
        return next((need for need in CATALOGUE[name].needs(self.config) if need in failed),
                    None)

    def run_step(self, name: str) -> StepResult:
        result = StepResult(name, self.config.phase_of(name),
                            idempotent=CATALOGUE[name].idempotent)
        started = time.monotonic()
        self.progress.step_started(name, plan_only=self.plan_only)
        self._current = name
        try:
            with self.aws.scoped(self.scope_prefix + name) as counts:
                step = None
                try:
                    step = step_class(name)(self.context())
                    state = step.read()
                    result.changes = step.plan(state)
                    if not self.plan_only:
                        for change in result.changes:
                            self.progress.change(change)
                            if self._apply(step, state, change, name) is not False:
                                result.applied += 1
                        step.settle(state)
                    else:
                        for change in result.changes:
                            self.progress.change(change)
                    result.outputs = step.outputs(state)
                    if not self.plan_only:
                        _require_known(name, result.outputs)
                    self.outputs[name] = result.outputs
                except BadInput as exc:
                    result.status, result.error, result.error_kind = "failed", str(exc), "input"
                    result.exception = exc
                except RunbookError as exc:
                    result.status, result.error, result.error_kind = "failed", str(exc), "failure"
                except KeyboardInterrupt:
                    result.status, result.error = "interrupted", "interrupted by the operator"
                    self.interrupted = result
                    raise
                except Exception as exc:  # noqa: BLE001 - an AWS or programming error
                    result.status, result.error_kind = "failed", "failure"
                    result.error = f"step {name!r} failed: {explain(exc)}"
                finally:
                    if step is not None:
                        result.evidence = step.evidence()
                        step.close()
                    result.api_calls = dict(counts)
                    result.duration_ms = int((time.monotonic() - started) * 1000)
        finally:
            self._current = None
            self.progress.step_done(result)
        return result

    def _apply(self, step: Step, state, change: Change, name: str) -> bool | None:
        try:
            return step.apply(state, change)
        except RunbookError:
            raise
        except Exception as exc:  # noqa: BLE001 - converted with the resource named
            raise StepFailed(name, change.resource, explain(exc)) from exc

    def upstream(self, name: str) -> dict:
        """Outputs of step `name`: from this run, or read live (read calls only)."""
        if name in self.outputs:
            return self.outputs[name]
        consumer = self._current or "?"
        step = step_class(name)(self.context())
        try:
            state = step.read()
            outputs = step.outputs(state)
        finally:
            step.close()
        if not self.plan_only:
            missing = [key for key, value in outputs.items() if not is_known(value)]
            if missing:
                raise PrerequisiteMissing(consumer, f"{name}'s {missing[0]}",
                                          self.config.phase_of(name))
        self.outputs[name] = outputs
        return outputs


def _require_known(name: str, outputs: dict) -> None:
    unknown = [key for key, value in outputs.items() if not is_known(value)]
    if unknown:
        raise StepFailed(name, "outputs", f"{', '.join(unknown)} still unknown after apply")


def explain(exc: BaseException) -> str:
    if type(exc).__name__ == "ParamValidationError":
        # botocore quotes the offending value, which may be a password.
        text = re.sub(r"value: .*?, type:", "value: (withheld), type:", str(exc), flags=re.S)
        return f"ParamValidationError: {text}"
    from runbook.lambda_runtime.db import describe_error, redact_emails

    if getattr(exc, "sqlstate", None) and hasattr(exc, "diag"):
        return describe_error(exc)
    code = retry.error_code(exc)
    if code:
        message = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return redact_emails(f"{code}: {message}".rstrip(": "))
    return redact_emails(f"{type(exc).__name__}: {exc}")
