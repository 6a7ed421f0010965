"""What `runbook destroy` and `runbook plan --destroy` do, apart from parsing options and
printing: choose the steps, check the account and the file's protection, plan the
teardown (runbook.teardown), ask, take the environment's lock, destroy, prove what is
left, and write the report.

Live:     the account checked, the plan read, shown and confirmed, then the destroy.
Dry run:  a sandbox where every step of the file has run, then the same destroy there;
          for a whole destroy, a listing of the sandbox account with plain boto3 that
          must hold nothing of the environment; then a second destroy that must find
          nothing to do (its writes are the verify pass's).
The report is `reports/<env>/[dry-run/]destroy.json` (`destroy-<phase>.json` for a
destroy from a phase on): one entry per step, its steps last first, with what was
deleted and what was kept, and, at the top, what a destroy keeps on purpose (the final
snapshot, the secrets and the key pending deletion) and what is left of the environment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from runbook import teardown as td
from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.aws.journal import Journal, utc_now
from runbook.engine import StepResult
from runbook.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BadInput,
                            RunbookError)
from runbook.output import report as reports
from runbook.resources.base import DeleteOptions

PHASE = "destroy"


@dataclass(frozen=True)
class Scope:
    """What a destroy takes down: the steps of a phase and every phase after it, or of
    the whole environment."""

    steps: list[str]
    whole: bool
    name: str                       # the report's name: destroy, destroy-<phase>


def scope(config, phase: str | None) -> Scope:
    if phase is None:
        return Scope(config.all_steps(), True, PHASE)
    phases = list(config.phases)
    if phase not in phases:
        raise BadInput(f"--phase {phase}: the environment file has no such phase (it has "
                       f"{', '.join(phases)}).")
    later = phases[phases.index(phase):]
    return Scope([s for p in later for s in config.phases[p]], False, f"{PHASE}-{phase}")


def options(*, skip_final_snapshot: bool, force_delete_secrets: bool) -> DeleteOptions:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return DeleteOptions(final_snapshot_stamp=None if skip_final_snapshot else stamp,
                         secret_recovery_days=None if force_delete_secrets else 30,
                         key_pending_days=7 if force_delete_secrets else 30)


@dataclass
class Outcome:
    teardown: td.Teardown | None
    account: str
    exit_code: int
    report: dict | None = None
    path: Path | None = None
    protected: list[str] | None = None


def plan(config, target: Scope, opts: DeleteOptions, *, dry_run: bool, progress) -> Outcome:
    """Read only: what a destroy would delete, keep and change. A dry run plans it in a
    sandbox where every step of the file has run."""
    if dry_run:
        from runbook.functions.invoke import sandbox_invoker
        from runbook.sandbox.stack import Sandbox

        with Sandbox(progress, region=config.region, invoker=sandbox_invoker) as sandbox:
            aws = _sandbox_factory(config, sandbox)
            account = _built(config, sandbox, progress)
            teardown = _plan(config, target, opts, aws)
    else:
        from runbook.app import checked_account

        aws = ClientFactory(config.region)
        account = checked_account(config, aws)
        teardown = _plan(config, target, opts, aws)
    return Outcome(teardown, account, EXIT_OK, protected=td.protected(config, target.steps))


def _plan(config, target: Scope, opts: DeleteOptions, aws) -> td.Teardown:
    before = aws.total("write")
    with aws.scoped("plan"):
        teardown = td.plan(Api(aws), config, target.steps, whole=target.whole, options=opts)
    writes = aws.total("write") - before
    if writes:  # a bug, never an operator's mistake
        raise RuntimeError(f"the destroy's plan made {writes} mutating AWS call(s)")
    return teardown


def destroy(config, target: Scope, opts: DeleteOptions, *, dry_run: bool, report_dir: Path,
            progress, show: Callable, confirm: Callable[[td.Teardown], bool],
            config_path: str, lock_wait_s: float, sleep=time.sleep) -> Outcome:
    """Plan, show (`show(teardown, account)`), confirm, destroy, and write the report.
    Refused, before any call, while the file keeps a deletion_protection it covers."""
    td.refuse_if_protected(config, target.steps, config_path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    journal_path = reports.run_dir(report_dir, config.env, dry_run) / "journal" / \
        f"{target.name}-{stamp}.jsonl"
    journal = Journal(journal_path)
    record = reports.RunRecord(env=config.env, name=target.name, phase=PHASE,
                               dry_run=dry_run, region=config.region, account=None,
                               started_at=utc_now())
    started, extra = time.monotonic(), {"scope": _scope_text(target), "steps": target.steps,
                                        "retained": [], "remaining": []}
    try:
        if dry_run:
            _dry_run(config, target, opts, record, extra, journal, progress, show,
                     lock_wait_s)
        else:
            _live(config, target, opts, record, extra, journal, progress, show, confirm,
                  lock_wait_s, sleep)
    except KeyboardInterrupt:
        record.interrupted = True
    except Declined:
        return Outcome(None, record.account or "", EXIT_FAILED)
    finally:
        journal.close()
    reports.close(record, journal, journal_path, started)
    data = {**reports.build(record), "destroy": extra}
    path = reports.write(data, report_dir, stamp)
    return Outcome(None, record.account or "", _exit_code(record), data, path)


class Declined(Exception):
    """The operator did not type the environment's name: nothing was deleted."""


def _scope_text(target: Scope) -> str:
    return "the whole environment" if target.whole else \
        f"phase {target.name.removeprefix(PHASE + '-')} and every phase after it"


def _live(config, target, opts, record, extra, journal, progress, show, confirm,
          lock_wait_s, sleep) -> None:
    from runbook.app import _locked, checked_account

    aws = ClientFactory(config.region, journal=journal)
    record.account = checked_account(config, aws)
    teardown = _plan(config, target, opts, aws)
    show(teardown, record.account)
    if not confirm(teardown):
        raise Declined
    with _locked(config, _LockTarget(target.name), ClientFactory(config.region),
                 aws.caller_arn, progress, lock_wait_s, sleep):
        _destroy(config, teardown, aws, record, extra, progress, sleep)


@dataclass(frozen=True)
class _LockTarget:
    name: str


def _dry_run(config, target, opts, record, extra, journal, progress, show,
             lock_wait_s) -> None:
    from runbook.app import _locked, _sandbox_sleep
    from runbook.functions.invoke import sandbox_invoker
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox

    progress.line(f"dry run of {target.name}: starting a sandbox", bold=True)
    with Sandbox(progress, region=config.region, invoker=sandbox_invoker) as sandbox:
        record.account = _built(config, sandbox, progress)
        record.simulated = sandbox.simulated
        aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                            credentials=SANDBOX_CREDENTIALS, journal=journal)
        teardown = _plan(config, target, opts, aws)
        show(teardown, record.account)
        lock_aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                                 credentials=SANDBOX_CREDENTIALS)
        with _locked(config, _LockTarget(target.name), lock_aws, aws.caller_arn, progress,
                     lock_wait_s, _sandbox_sleep):
            _destroy(config, teardown, aws, record, extra, progress, _sandbox_sleep)
            if record.status != "ok":
                return
            progress.line("verify pass: the same destroy again; it must find nothing to "
                          "do", bold=True)
            record.verify_results = []
            again = _plan(config, target, opts, aws)
            destroyer = td.Destroyer(aws, progress, sleep=_sandbox_sleep, scope_prefix="verify:")
            destroyer.run(again)
            record.verify_results = _results(config, again, destroyer, aws, "verify:")
            writes = sum(r.api_calls["write"] for r in record.verify_results)
            if writes or again.deletes:
                record.error = (f"verify pass: a second destroy found {again.deletes} "
                                f"resources to delete and made {writes} writes")
        if target.whole:        # the lock released: nothing of the environment is left
            _nothing_left(config, sandbox, record, extra)


def _nothing_left(config, sandbox, record, extra) -> None:
    """The proof of a whole destroy in the sandbox: its account listed service by
    service with plain boto3 clients (runbook.sandbox.leftovers), not runbook's own
    listings, holds nothing of the environment."""
    import boto3

    from runbook.sandbox import leftovers
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS

    session = boto3.Session(region_name=config.region, **SANDBOX_CREDENTIALS)
    left = leftovers.of_env(lambda service: session.client(service, endpoint_url=sandbox.aws_url),
                            config.env, config.function_name(""))
    found = [f"{kind} {name}" for kind, names in left.items() for name in names]
    extra["remaining"] += [f"{item} (listed with boto3)" for item in found]
    if found:
        record.error = (f"the sandbox account still holds {len(found)} resources of "
                        f"{config.env}: " + ", ".join(found[:5]))


def _sandbox_factory(config, sandbox) -> ClientFactory:
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS

    return ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                         credentials=SANDBOX_CREDENTIALS)


def _built(config, sandbox, progress) -> str:
    """Run every step of the file in the sandbox, with clients of their own (the build is
    not the destroy's: its calls stay out of the destroy's counts and journal)."""
    from runbook.app import _sandbox_sleep
    from runbook.steps import new_runner

    aws = _sandbox_factory(config, sandbox)
    progress.line("the sandbox builds the environment first: every step of the file",
                  bold=True)
    results = new_runner(config, aws, progress, dry_run=True, sleep=_sandbox_sleep,
                         **sandbox.step_context()).run(config.all_steps())
    failed = next((r for r in results if not r.ok), None)
    if failed is not None:
        error = BadInput if failed.error_kind == "input" else RunbookError
        raise error(f"the sandbox could not build the environment to destroy: step "
                    f"{failed.name}: {failed.error}")
    return aws.caller_account()


def _destroy(config, teardown, aws, record, extra, progress, sleep) -> None:
    """Run the teardown, then read what is left of it."""
    destroyer = td.Destroyer(aws, progress, sleep=sleep)
    progress.line(f"destroy: {teardown.deletes} to delete, "
                  f"{sum(i.action == 'keep' for i in teardown.items)} kept", bold=True)
    error = None
    try:
        destroyer.run(teardown)
    except RunbookError as exc:
        error = exc
    finally:
        record.results = _results(config, teardown, destroyer, aws, "", error)
    if error is not None:
        return
    extra["retained"] = td.retained(teardown)
    left = _plan(config, Scope(teardown.steps, teardown.whole, ""), teardown.options, aws)
    extra["remaining"] = [i.title for i in left.items if i.action != "keep"]
    if extra["remaining"]:
        record.error = (f"{len(extra['remaining'])} resources of {config.env} are still "
                        "there after the destroy: " + ", ".join(extra["remaining"][:5]))


def _results(config, teardown, destroyer, aws, prefix: str,
             error: RunbookError | None = None) -> list[StepResult]:
    """One result per step, its steps last first: what was deleted and what was kept."""
    failed_step = getattr(error, "step", None) if error else None
    out = []
    for step, items in teardown.by_step():
        done = destroyer.done.get(step, [])
        planned = [i for i in items if i.action != "keep"]
        result = StepResult(
            name=step, phase=_phase(config, step), changes=[i.change() for i in done],
            applied=len(done), api_calls=dict(aws.counts.get(prefix + step)
                                              or {"read": 0, "write": 0}),
            evidence={"kept": [{"resource": i.title, "why": i.why}
                               for i in items if i.action == "keep"]})
        if error is not None and (step == failed_step or (
                failed_step is None and len(done) < len(planned))):
            result.status, result.error = "failed", str(error)
            result.error_kind = "input" if isinstance(error, BadInput) else "failure"
        elif len(done) < len(planned):
            result.status = "not_run"
            result.error = "the destroy stopped before it was done"
        out.append(result)
    return out


def _phase(config, step: str) -> str:
    try:
        return config.phase_of(step)
    except KeyError:
        return "-"           # a step the file no longer lists


def _exit_code(record: reports.RunRecord) -> int:
    if record.interrupted:
        return EXIT_INTERRUPTED
    if any(r.error_kind == "input" for r in record.results):
        return EXIT_BAD_INPUT
    return EXIT_OK if record.status == "ok" else EXIT_FAILED
