"""What the commands do, apart from parsing options and printing: pick the steps,
make the client factory (live or sandbox), run or plan, and write the report.

Live:     check the caller's account, then run the requested steps.
Dry run:  start a sandbox, run from an empty account every phase up to --phase (or
          the --step steps and the steps they need), run the requested steps again as the verify pass (an idempotent step
          must make no write there), write the report under dry-run/, stop the sandbox.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runbook.output import report as reports
from runbook.aws.clients import ClientFactory
from runbook.engine import Runner, StepResult
from runbook.steps import new_runner
from runbook.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK,
                            AccountMismatch, BadInput, RunbookError)
from runbook.aws.journal import Journal, utc_now
from runbook.engine.lock import DEFAULT_WAIT_S as DEFAULT_LOCK_WAIT_S


@dataclass(frozen=True)
class Target:
    """What the operator asked for, resolved against the environment file."""

    name: str                 # report name: the phase, or the step names
    phase: str                # the phase of the (last) requested step
    requested: list[str]      # steps a live run runs, and a dry run verifies
    through: list[str]        # steps a dry run runs from an empty account: every phase
                              # up to --phase, or the --step steps and what they need
    by_phase: bool = False    # asked for with --phase (a plan then shows the phases before)


def resolve(config, phase: str | None, steps: tuple[str, ...] | list[str]) -> Target:
    if bool(phase) == bool(steps):
        raise BadInput("give either --phase or --step (one or more), not both or neither. "
                       f"Phases here: {', '.join(config.phases)}.")
    order = config.all_steps()
    if phase:
        _check_phases(config, [phase])
        return Target(phase, phase, list(config.phases[phase]), config.steps_through(phase),
                      by_phase=True)
    _check_steps(config, steps)
    from runbook.steps import CATALOGUE

    unbuilt = [s for s in steps if CATALOGUE[s].module is None]
    if unbuilt:
        raise BadInput(f"--step {unbuilt[0]}: the step is part of the design but not built "
                       "in this version of runbook, so it cannot run yet.")
    requested = sorted(set(steps), key=order.index)
    return Target("+".join(requested), config.phase_of(requested[-1]), requested,
                  _with_prerequisites(requested, order, config))


def select(config, phases: tuple[str, ...] | list[str] = (),
           steps: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The steps of `phases` and the `steps`, in the file's order; every step if neither.

    For `status`, which may look at any mix of phases and steps, built or not.
    """
    _check_phases(config, phases)
    _check_steps(config, steps)
    chosen = {step for phase in phases for step in config.phases[phase]} | set(steps)
    return [name for name in config.all_steps() if not chosen or name in chosen]


def _check_phases(config, phases) -> None:
    for phase in phases:
        if phase not in config.phases:
            raise BadInput(f"--phase {phase}: no such phase in the environment file; it "
                           f"defines {', '.join(config.phases)}.")


def _check_steps(config, steps) -> None:
    order = config.all_steps()
    unknown = [s for s in steps if s not in order]
    if unknown:
        raise BadInput(f"--step {unknown[0]}: not a step of any phase in the environment file; "
                       f"steps here: {', '.join(order)}.")


def _with_prerequisites(steps: list[str], order: list[str], config) -> list[str]:
    """`steps` and every step they need, directly or not, in the file's order.

    A dry run of `--step X` builds exactly what X consumes, not whole phases.
    """
    from runbook.steps import CATALOGUE

    needed, todo = set(), list(steps)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(CATALOGUE[name].needs(config))
    return [name for name in order if name in needed]


@dataclass
class RunOutcome:
    report: dict
    path: Path
    exit_code: int


def run(config, target: Target, *, dry_run: bool, report_dir: Path, progress,
        sleep=time.sleep, lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
        allow_reboot: bool = False) -> RunOutcome:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    journal_path = reports.run_dir(report_dir, config.env, dry_run) / "journal" / \
        f"{target.name}-{stamp}.jsonl"
    journal = Journal(journal_path)
    record = reports.RunRecord(env=config.env, name=target.name, phase=target.phase,
                               dry_run=dry_run, region=config.region, account=None,
                               started_at=utc_now())
    started = time.monotonic()
    try:
        if dry_run:
            _dry_run(config, target, record, journal, progress, lock_wait_s, allow_reboot)
        else:
            _live_run(config, target, record, journal, progress, sleep, lock_wait_s,
                      allow_reboot)
    except KeyboardInterrupt:
        record.interrupted = True
    finally:
        journal.close()
    reports.close(record, journal, journal_path, started)
    data = reports.build(record)
    path = reports.write(data, report_dir, stamp)
    for step in TEST_STEPS:
        _write_alone(record, step, report_dir, stamp)
    return RunOutcome(data, path, _exit_code(record))


# Their reports are also written alone, to be found and compared across runs.
TEST_STEPS = ("integration-test", "registration-test", "migration-test")


def _write_alone(record: reports.RunRecord, step: str, report_dir: Path, stamp: str) -> None:
    """Write `step`'s result of a run that ran more than it as a report of its own,
    `reports/<env>/[dry-run/]<step>.json`, with the run's times and sandbox notes."""
    result = next((r for r in record.results if r.name == step and r.evidence), None)
    if result is None or record.name == step:
        return
    alone = dataclasses.replace(
        record, name=step, phase=result.phase, results=[result],
        verify_results=[] if record.dry_run else None,
        journal=[e for e in record.journal if e.get("step") == step],
        journal_file=None, error=None)
    reports.write(reports.build(alone), report_dir, stamp)


def _live_run(config, target, record, journal, progress, sleep, lock_wait_s,
              allow_reboot=False) -> None:
    aws = ClientFactory(config.region, journal=journal)
    record.account = checked_account(config, aws)
    # The preflight reads under the lock: the run answers its steps' reads from what the
    # preflight read (runbook.aws.readcache), which no other run may change meanwhile. A
    # refused run writes nothing but its lock, which it deletes.
    with _locked(config, target, aws.sibling(), aws.caller_arn, progress, lock_wait_s,
                 sleep):
        _aws_would_refuse(config, aws, target.requested)
        progress.line(f"live run of {target.name} in account {record.account}, "
                      f"{config.region}", bold=True)
        _nothing_of_another_environment(config, aws, target.requested, progress)
        # Independent steps overlap (runbook.engine.schedule); dry runs stay serial.
        runner = new_runner(config, aws, progress, sleep=sleep, allow_reboot=allow_reboot,
                            parallel=True)
        try:
            runner.run(target.requested, record.results)
        finally:
            _keep_interrupted(runner, record.results)


def checked_account(config, aws) -> str:
    """The account the credentials belong to (a preflight read), refused unless it is
    the file's account_id: a live command never touches another account."""
    with aws.scoped("preflight"):
        account = aws.caller_account()
    if config.account_id and account != config.account_id:
        raise AccountMismatch(config.account_id, account)
    return account


def _aws_would_refuse(config, aws, steps: list[str]) -> None:
    """What AWS would refuse minutes into the run (runbook.preflight: engine version,
    capacity, zones, runtime), checked read-only before the first step."""
    from runbook import preflight

    with aws.scoped("preflight"):
        preflight.check(config, aws, steps)


def _nothing_of_another_environment(config, aws, steps: list[str], progress, **context) -> None:
    """runbook.preflight.ownership, with a line saying it was checked."""
    from runbook import preflight

    checked = preflight.ownership(config, aws, steps, sleep=_sandbox_sleep if context.get(
        "dry_run") else time.sleep, **context)
    progress.line(f"preflight: {checked} step{'s' * (checked != 1)} planned read-only; "
                  "nothing of another environment would be touched", dim=True)


def environment_lock(config):
    """The live lock of `config`'s environment, for `runbook unlock` (account checked)."""
    from runbook.engine import lock

    aws = ClientFactory(config.region)
    checked_account(config, aws)
    return lock.RunLock(aws.client("ssm"), config.env)


def _locked(config, target, lock_aws, identity, progress, wait_s, sleep):
    """The environment's lock (runbook.engine.lock), through `lock_aws`: a client factory of its
    own, so the lock's calls stay out of the steps' counts and the journal."""
    from runbook.engine import lock

    def waiting(holder, waited):
        progress.waiting(f"the lock held by {holder.user}@{holder.host} (pid {holder.pid})",
                         waited)

    run_lock = lock.RunLock(lock_aws.client("ssm"), config.env, sleep=sleep)
    return run_lock.held(lock.me(identity or "unknown", target.name), wait_s=wait_s,
                         on_wait=waiting)


def _dry_run(config, target, record, journal, progress, lock_wait_s,
             allow_reboot=False) -> None:
    from runbook.functions.invoke import sandbox_invoker
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox

    progress.line(f"dry run of {target.name}: starting a sandbox", bold=True)
    # With these, the sandbox runs the SQS event source mappings the steps make.
    with Sandbox(progress, region=config.region, invoker=sandbox_invoker) as sandbox:
        aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                            credentials=SANDBOX_CREDENTIALS, journal=journal)
        with aws.scoped("preflight"):
            record.account = aws.caller_account()
        record.simulated = sandbox.simulated
        record.verify_results = []
        _aws_would_refuse(config, aws, target.through)
        _nothing_of_another_environment(config, aws, target.through, progress, dry_run=True,
                                        **sandbox.step_context())
        runner = new_runner(config, aws, progress, dry_run=True, sleep=_sandbox_sleep,
                            allow_reboot=allow_reboot, **sandbox.step_context())
        lock_aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                                 credentials=SANDBOX_CREDENTIALS)
        with _locked(config, target, lock_aws, aws.caller_arn, progress, lock_wait_s,
                     _sandbox_sleep):
            _dry_run_passes(config, target, record, runner, aws, progress, sandbox)


def _dry_run_passes(config, target, record, runner, aws, progress, sandbox) -> None:
    """The run from an empty account, then the verify pass."""
    try:
        runner.run(target.through, record.results)
    finally:
        _keep_interrupted(runner, record.results)
    if any(not r.ok for r in record.results):
        return
    progress.line("verify pass: the same steps again; an idempotent step must make "
                  "no write", bold=True)
    # Only what can converge is run again: a step that is not idempotent (the
    # integration test) would just repeat itself.
    from runbook.steps import CATALOGUE

    again = [name for name in target.requested if CATALOGUE[name].idempotent]
    record.verify_results = new_runner(config, aws, progress, dry_run=True, scope_prefix="verify:",
                                       sleep=_sandbox_sleep,
                                       **sandbox.step_context()).run(again)
    noisy = [f"{r.name} ({r.api_calls['write']} writes, {r.applied} changes)"
             for r in record.verify_results
             if r.idempotent and (r.api_calls["write"] or r.applied)]
    if noisy:
        record.error = ("verify pass: a converged step must change nothing, but "
                        + ", ".join(noisy) + " did")


def _keep_interrupted(runner: Runner, results: list[StepResult]) -> None:
    if runner.interrupted is not None and runner.interrupted not in results:
        results.append(runner.interrupted)


def _sandbox_sleep(seconds: float) -> None:
    # moto reports resources ready at once; waits and retries need not sleep long.
    time.sleep(min(seconds, 0.2))


def _exit_code(record: reports.RunRecord) -> int:
    if record.interrupted:
        return EXIT_INTERRUPTED
    results: list[StepResult] = record.results + (record.verify_results or [])
    if any(r.error_kind == "input" for r in results):
        return EXIT_BAD_INPUT
    return EXIT_OK if record.status == "ok" else EXIT_FAILED


# -- plan ---------------------------------------------------------------------------

@dataclass
class PlanOutcome:
    results: list[StepResult]
    account: str
    exit_code: int


def plan(config, target: Target, *, dry_run: bool, progress) -> PlanOutcome:
    """Read-only: what a run of `target` would change. Makes no write (checked).

    A live plan of a phase also plans the phases before it: a run of a3 needs them
    converged, so the plan shows what they lack (or that they are unchanged) rather than
    a3's changes on top of ids that do not exist yet.
    """
    if dry_run:
        from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox

        with Sandbox(progress, region=config.region) as sandbox:
            aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                                credentials=SANDBOX_CREDENTIALS)
            return _plan(config, target.through, aws, progress, dry_run=True,
                         **sandbox.step_context())
    return plan_live(config, target.through if target.by_phase else target.requested,
                     progress)


def plan_live(config, steps: list[str], progress) -> PlanOutcome:
    """Plan `steps` read-only against the account the credentials belong to."""
    aws = ClientFactory(config.region)
    return _plan(config, steps, aws, progress, checked_account(config, aws))


def _plan(config, steps, aws, progress, account: str | None = None, *, dry_run: bool = False,
          **context) -> PlanOutcome:
    """`context`: a sandbox's step_context() in a dry run."""
    account = account or aws.caller_account()
    _aws_would_refuse(config, aws, steps)
    results = new_runner(config, aws, progress, plan_only=True, dry_run=dry_run,
                         **context).run(steps)
    writes = aws.total("write")
    if writes:  # a bug, never an operator's mistake: say so loudly
        raise RuntimeError(f"plan made {writes} mutating AWS call(s); plans must only read")
    code = EXIT_OK
    if any(r.error_kind == "input" for r in results):
        code = EXIT_BAD_INPUT
    elif any(not r.ok for r in results):
        code = EXIT_FAILED
    return PlanOutcome(results, account, code)


# -- invoke -------------------------------------------------------------------------

@dataclass
class InvokeOutcome:
    invocation: object          # runbook.functions.invoke.Invocation
    exit_code: int


def invoke(config, function: str, event: dict, *, dry_run: bool, progress) -> InvokeOutcome:
    """Run one function with `event`: in a dry run, locally against a sandbox where the
    steps up to the one deploying it have run; live, through Lambda's Invoke."""
    from runbook.functions import registry

    entry = registry.find(function)
    if entry is None:
        raise BadInput(f"unknown function {function!r}; runbook deploys "
                       f"{', '.join(registry.FUNCTIONS)}.")
    name = config.function_name(entry.key)
    trigger = "triggerSource" in event
    if dry_run:
        invocation = _invoke_in_sandbox(config, entry, name, event, trigger, progress)
    else:
        aws = ClientFactory(config.region)
        checked_account(config, aws)
        from runbook.functions.invoke import invoke_deployed

        invocation = invoke_deployed(aws, name, event)
    return InvokeOutcome(invocation, EXIT_OK if invocation.ok else EXIT_FAILED)


def _invoke_in_sandbox(config, entry, name, event, trigger, progress):
    from runbook.functions import registry
    from runbook.functions.invoke import LocalInvoker
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox

    key, step = entry.key, entry.step
    if step not in config.all_steps():
        raise BadInput(f"{key} is deployed by step {step!r}, which no phase of the "
                       "environment file runs.")
    if not entry.deployed(config):
        field, value = entry.only_with
        raise BadInput(f"{key} is deployed by step {step!r} only with {field}: {value}; the "
                       f"environment file has {field}: {registry.setting(config, field)}, "
                       f"so the sandbox would have no {key} to run.")
    progress.line(f"dry run: a sandbox with {name} deployed", bold=True)
    with Sandbox(progress, region=config.region) as sandbox:
        aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                            credentials=SANDBOX_CREDENTIALS)
        runner = new_runner(config, aws, progress, dry_run=True, sleep=_sandbox_sleep,
                            **sandbox.step_context())
        results = runner.run(_with_prerequisites([step], config.all_steps(), config))
        failed = next((r for r in results if not r.ok), None)
        if failed is not None:
            error = BadInput if failed.error_kind == "input" else RunbookError
            raise error(f"the sandbox could not deploy {name}: step {failed.name}: "
                        f"{failed.error}")
        invoker = LocalInvoker(aws, endpoint_url=sandbox.aws_url,
                               credentials=SANDBOX_CREDENTIALS,
                               database_dsn=sandbox.database_dsn,
                               database_tls=sandbox.database_tls)
        with aws.scoped("invoke"):
            return invoker.invoke(name, event, trigger=trigger)
