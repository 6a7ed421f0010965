"""The step engine: read, plan, apply, for each step of a run, in order.

A step's `read` makes only read calls and returns what exists. Its `plan` is a pure
function of that state and the config, run with every AWS call refused (a plan that
reads fails loudly): a list of `Change`s, each naming the resource, the action and the
fields that differ. `apply` executes exactly those changes, one by one, and `outputs`
derives what later steps consume. An empty plan therefore means no mutating call, which
the call counts in the report prove.

Inputs from earlier steps are taken from the same run when they ran, and otherwise
read live (`Runner.upstream`): a step never needs the previous run's report.

Steps run one after the other, or with `parallel` (a live run) each as soon as the
steps it waits for are done (runbook.engine.schedule); either way the results are in
the order the steps are listed.

The engine knows steps only through the catalogue it is given (runbook.steps): it
imports no step, sandbox or output module.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from runbook.aws import retry
from runbook.engine.plan import Change
from runbook.engine.schedule import Overlap
from runbook.engine.step import Inputs, Outputs, Step, StepContext
from runbook.errors import BadInput, PrerequisiteMissing, RunbookError, StepFailed


@dataclass
class StepResult:
    name: str
    phase: str
    status: str = "ok"            # ok | failed | not_run | interrupted
    changes: list[Change] = field(default_factory=list)
    applied: int = 0
    duration_ms: int = 0
    api_calls: dict = field(default_factory=lambda: {"read": 0, "write": 0})
    outputs: dict = field(default_factory=dict)   # Outputs.as_report(): what the report shows
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

    def __init__(self, config, aws, progress, *, catalogue, dry_run: bool = False,
                 plan_only: bool = False, scope_prefix: str = "", sleep=time.sleep,
                 clock=time.monotonic, database_dsn: str | None = None, database_tls=None,
                 allow_reboot: bool = False, invoker: Callable[[str, dict], Any] | None = None,
                 kafka=None, legacy_dsn: str | None = None, parallel: bool = False):
        self.config, self.aws, self.progress = config, aws, progress
        # {step name: StepInfo}: what each step needs, and `load()` for its class.
        self.catalogue = catalogue
        self.invoker = invoker
        self.database_dsn, self.database_tls = database_dsn, database_tls
        self.kafka, self.legacy_dsn = kafka, legacy_dsn
        self.allow_reboot = allow_reboot
        self.dry_run, self.plan_only = dry_run, plan_only
        self.scope_prefix = scope_prefix
        self.sleep, self.clock = sleep, clock
        # Overlap independent steps (runbook.engine.schedule). Plans, and the runs that
        # must be reproducible call for call (dry runs, the crash sweep), run serially.
        self.parallel = parallel
        self.outputs: dict[str, Outputs] = {}
        self.interrupted: StepResult | None = None
        # Set on Ctrl-C while steps overlap: each running step stops at its next wait.
        self.stopping = threading.Event()
        self._running = threading.local()      # .name: the step this thread runs
        self._reading = threading.Lock()       # guards _read_locks
        self._read_locks: dict[str, threading.Lock] = {}

    @property
    def _current(self) -> str | None:
        return getattr(self._running, "name", None)

    def context(self) -> StepContext:
        return StepContext(self.config, self.aws, self.progress, self.upstream,
                           dry_run=self.dry_run, plan_only=self.plan_only,
                           allow_reboot=self.allow_reboot,
                           database_dsn=self.database_dsn, database_tls=self.database_tls,
                           kafka=self.kafka, legacy_dsn=self.legacy_dsn, invoker=self.invoker,
                           sleep=self._sleep if self.parallel else self.sleep,
                           clock=self.clock)

    def _sleep(self, seconds: float) -> None:
        """The injected sleep, ended by Ctrl-C while steps overlap: the operator's
        interrupt reaches only the main thread, so a step's thread stops when it next
        waits (and at its next AWS call, runbook.engine.schedule). A real sleep wakes
        at once."""
        if not self.stopping.is_set():
            if self.sleep is time.sleep:
                self.stopping.wait(seconds)
            else:
                self.sleep(seconds)
        if self.stopping.is_set():
            raise KeyboardInterrupt

    def step(self, name: str, *, outputs_only: bool = False) -> Step:
        """A new instance of step `name`, with its declared inputs."""
        info = self.catalogue[name]
        context = self.context()
        context.outputs_only = outputs_only
        return info.load()(context, Inputs(name, info.needs(self.config), context.upstream))

    def run(self, names: list[str], results: list[StepResult] | None = None) -> list[StepResult]:
        """Run `names` in order; stop at the first failure (the rest are `not_run`).

        A plan goes on past a step it could not plan: only the steps that consume that
        step's outputs are left out (`not_run`, saying which step they wait for), so one
        unreachable database does not hide what the other steps would change.

        Results are appended to `results` as each step ends, so a caller that passed a
        list still has them when Ctrl-C interrupts the run.

        With `parallel` (not for a plan), steps overlap instead: Overlap keeps the same
        rules and fills `results` in the same order.
        """
        results = [] if results is None else results
        if self.parallel and not self.plan_only and len(names) > 1:
            return Overlap(self, names).run(results)
        for name in names:
            blocked = self._blocked_by(name, results)
            if self.catalogue[name].module is None:
                results.append(self.skipped(name))
            elif blocked:
                error = (f"it needs {blocked}, which could not be planned"
                         if self.plan_only else None)
                results.append(self.not_run(name, error))
            else:
                results.append(self.run_step(name))
        return results

    def skipped(self, name: str) -> StepResult:
        """The result of a step the design names and this version does not build."""
        self.progress.step_skipped(name, "not built in this version of runbook")
        return StepResult(name, self.config.phase_of(name), status="not_run",
                          idempotent=self.catalogue[name].idempotent, unbuilt=True,
                          error=f"step {name!r} is not built in this version of "
                                "runbook; it was skipped")

    def not_run(self, name: str, error: str | None = None) -> StepResult:
        return StepResult(name, self.config.phase_of(name), status="not_run",
                          idempotent=self.catalogue[name].idempotent, error=error)

    def _blocked_by(self, name: str, results: list[StepResult]) -> str | None:
        """The step that keeps `name` from running: in a run, any earlier failure; in a
        plan, a step of this plan that `name` consumes and that was not planned."""
        failed = [r.name for r in results if not r.ok]
        if not self.plan_only:
            return failed[0] if failed else None
        return next((need for need in self.catalogue[name].needs(self.config) if need in failed),
                    None)

    def run_step(self, name: str) -> StepResult:
        """Run one step. Ctrl-C is re-raised once the step is recorded `interrupted`."""
        result = self.attempt(name)
        if result.status == "interrupted":
            self.interrupted = result
            raise KeyboardInterrupt
        return result

    def attempt(self, name: str) -> StepResult:
        """Run one step and return its result, `interrupted` on Ctrl-C."""
        result = StepResult(name, self.config.phase_of(name),
                            idempotent=self.catalogue[name].idempotent)
        started = time.monotonic()
        self.progress.step_started(name, plan_only=self.plan_only)
        self._running.name = name
        try:
            with self.aws.scoped(self.scope_prefix + name) as counts:
                step = None
                try:
                    step = self.step(name)
                    state = step.read()
                    with self.aws.refusing(f"step {name!r}'s plan"):
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
                    outputs = step.outputs(state)
                    result.outputs = outputs.as_report()
                    if not self.plan_only:
                        _require_known(name, outputs)
                    self.outputs[name] = outputs
                except BadInput as exc:
                    result.status, result.error, result.error_kind = "failed", str(exc), "input"
                    result.exception = exc
                except RunbookError as exc:
                    result.status, result.error, result.error_kind = "failed", str(exc), "failure"
                except KeyboardInterrupt:
                    result.status, result.error = "interrupted", "interrupted by the operator"
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
            self._running.name = None
            self.progress.step_done(result)
        return result

    def _apply(self, step: Step, state, change: Change, name: str) -> bool | None:
        try:
            return step.apply(state, change)
        except RunbookError:
            raise
        except Exception as exc:  # noqa: BLE001 - converted with the resource named
            raise StepFailed(name, change.resource, explain(exc)) from exc

    def upstream(self, name: str) -> Outputs:
        """Outputs of step `name`: from this run, or read live (read calls only), once
        however many overlapping steps ask."""
        if name in self.outputs:
            return self.outputs[name]
        with self._reading:
            lock = self._read_locks.setdefault(name, threading.Lock())
        with lock:
            if name in self.outputs:
                return self.outputs[name]
            return self._read_live(name)

    def _read_live(self, name: str) -> Outputs:
        consumer = self._current or "?"
        step = self.step(name, outputs_only=True)
        try:
            state = step.read()
            outputs = step.outputs(state)
        finally:
            step.close()
        if not self.plan_only:
            missing = outputs.unknown()
            if missing:
                raise PrerequisiteMissing(consumer, f"{name}'s {missing[0]}",
                                          self.config.phase_of(name))
        self.outputs[name] = outputs
        return outputs


def _require_known(name: str, outputs: Outputs) -> None:
    unknown = outputs.unknown()
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
