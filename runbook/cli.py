"""The `runbook` command: parse options, load the environment file, call `app`, render.

Only click is imported at module level, so `runbook --help` stays instant; boto3, moto,
psycopg and pydantic load when a command needs them. Errors are turned into a message
and an exit code once, in `main`: 2 for bad input, 1 for a failed step, 130 for Ctrl-C.
Tracebacks appear only with --debug.
"""

from __future__ import annotations

import json
import sys
import traceback
from functools import wraps
from pathlib import Path

import click

from runbook.errors import EXIT_FAILED, EXIT_INTERRUPTED, RunbookError
from runbook.functions import registry  # plain data: the functions `invoke` lists

_debug = False


def common_options(command):
    @click.option("--env", "env", default="prod", show_default=True,
                  help="Environment name; reads config/<env>.yaml.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Path of the environment file (instead of config/<env>.yaml).")
    @click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("reports"), show_default=True, help="Where reports go.")
    @click.option("--region", help="AWS region (overrides the environment file's).")
    @click.option("--debug", is_flag=True, help="Show tracebacks.")
    @wraps(command)
    def wrapper(*args, debug: bool, **kwargs):
        global _debug
        _debug = _debug or debug
        return command(*args, **kwargs)

    return wrapper


def _load_config(env: str, config_path: Path | None, region: str | None):
    from runbook import config

    path = config_path or Path("config") / f"{env}.yaml"
    loaded = config.load(path, env=env if config_path is None else None, region=region)
    warning = loaded.database.unverified_tls_warning
    if warning:
        click.echo(click.style(f"warning: {warning}", fg="yellow"), err=True)
    return loaded


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runbook")
def cli():
    """Provision and prove Cognito -> Lambda (VPC) -> Aurora PostgreSQL, step by step.

    Every step reads, plans, then applies only what differs; a re-run makes no change.
    Rehearse any run with --dry-run in a local sandbox (moto + embedded PostgreSQL).
    """


def _target_options(command):
    command = click.option("--step", "steps", multiple=True,
                           help="Run only this step (repeatable).")(command)
    command = click.option("--phase", help="Run every step of this phase, in order.")(command)
    return click.option("--dry-run", is_flag=True,
                        help="Rehearse in a throwaway local sandbox; never touches AWS.")(command)


@cli.command()
@_target_options
@click.option("--lock-wait", "lock_wait_s", type=click.FloatRange(min=0), default=30,
              show_default=True, metavar="SECONDS",
              help="How long to wait for another run of this environment to finish.")
@click.option("--allow-reboot", is_flag=True,
              help="Let step database reboot the cluster's instances that wait for it "
                   "(writer first) to apply a new parameter group (connections drop while "
                   "they restart).")
@common_options
def run(phase, steps, dry_run, lock_wait_s, allow_reboot, env, config_path, report_dir,
        region):
    """Converge a phase (or steps) and write its report.

    One run at a time per environment: a run holds a lock in the account (an SSM
    parameter, /runbook/<env>/lock). Another run waits --lock-wait seconds for it, then
    exits 2 naming the holder. A database restart is never made without --allow-reboot:
    the plan and the run say when one is pending.
    """
    from runbook import app
    from runbook.output.progress import Progress

    config = _load_config(env, config_path, region)
    target = app.resolve(config, phase, steps)
    outcome = app.run(config, target, dry_run=dry_run, report_dir=report_dir,
                      progress=Progress(), lock_wait_s=lock_wait_s,
                      allow_reboot=allow_reboot)
    report = outcome.report
    colour = "green" if report["status"] == "ok" else "red"
    click.echo(click.style(f"{report['status']}: ", fg=colour, bold=True)
               + f"{target.name}{' (dry run)' if dry_run else ''} in "
               + f"{report['duration_ms'] / 1000:.1f}s; report {outcome.path}")
    if dry_run and "verify_pass" in report:
        click.echo(f"verify pass: {report['verify_pass']['writes']} writes")
    if report.get("error"):
        click.echo(click.style(report["error"], fg="red"), err=True)
    steps = report["steps"] + report.get("verify_pass", {}).get("steps", [])
    failed = [s for s in steps if s["status"] in ("failed", "interrupted") and s.get("error")]
    for step in failed[:1]:
        click.echo(click.style(f"error: {step['error']}", fg="red"), err=True)
    skipped = sorted({s["name"] for s in steps if s["status"] == "not_run" and s.get("error")})
    if skipped and not failed:
        click.echo(f"skipped, not built in this version: {', '.join(skipped)}", err=True)
    if outcome.exit_code == EXIT_INTERRUPTED:
        click.echo("interrupted; the report records how far the run got", err=True)
    sys.exit(outcome.exit_code)


@cli.command()
@_target_options
@click.option("--destroy", "for_destroy", is_flag=True,
              help="Show what `runbook destroy` would delete and keep instead (with "
                   "--phase: that phase and every phase after it).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--sql", "show_sql", is_flag=True,
              help="Also print the SQL each database change would run.")
@common_options
def plan(phase, steps, dry_run, for_destroy, as_json, show_sql, env, config_path, report_dir,
         region):
    """Show what a run would change, resource by resource. Read-only.

    + create, ~ update (field: from -> to), - delete, grouped by step, then
    "Plan: N to add, N to change, N to destroy." A plan of --phase also plans the
    phases before it. With --destroy, what a destroy would delete (-), change (~) and
    keep (=), the steps last first. Exit code 0, or 1/2 when a step could not be planned.
    """
    from runbook import app
    from runbook.output import render
    from runbook.output.progress import Progress

    config = _load_config(env, config_path, region)
    if for_destroy:
        if steps:
            raise click.UsageError("plan --destroy takes --phase, not --step")
        sys.exit(_plan_destroy(config, phase, dry_run, as_json))
    target = app.resolve(config, phase, steps)
    outcome = app.plan(config, target, dry_run=dry_run,
                       progress=Progress(quiet=as_json, err=True, per_step=False))
    data = render.plan_data(outcome.results, env=config.env, target=target.name,
                            by_phase=target.by_phase, dry_run=dry_run, account=outcome.account,
                            region=config.region, show_sql=show_sql)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render.print_plan(data, render.console())
    sys.exit(outcome.exit_code)


def _destroy_options(command):
    command = click.option("--force-delete-secrets", is_flag=True,
                           help="Delete the secrets at once, with no recovery window (and "
                                "schedule KMS keys 7 days ahead, not 30).")(command)
    command = click.option("--skip-final-snapshot", is_flag=True,
                           help="Delete the Aurora cluster without a final snapshot.")(command)
    return command


def _plan_destroy(config, phase, dry_run, as_json) -> int:
    from runbook import destroying
    from runbook.output import render
    from runbook.output.progress import Progress

    target = destroying.scope(config, phase)
    opts = destroying.options(skip_final_snapshot=False, force_delete_secrets=False)
    outcome = destroying.plan(config, target, opts, dry_run=dry_run,
                              progress=Progress(quiet=as_json, err=True, per_step=False))
    data = render.teardown_data(outcome.teardown, account=outcome.account,
                                region=config.region, dry_run=dry_run,
                                protected=outcome.protected)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render.print_teardown(data, render.console())
    return outcome.exit_code


@cli.command()
@click.option("--phase", help="Destroy this phase and every phase after it "
                              "(default: the whole environment).")
@click.option("--dry-run", is_flag=True,
              help="Build the environment in a throwaway local sandbox, destroy it there, "
                   "and prove nothing of it is left; never touches AWS.")
@click.option("--yes", is_flag=True,
              help="Do not ask for the environment's name: for automation.")
@_destroy_options
@click.option("--lock-wait", "lock_wait_s", type=click.FloatRange(min=0), default=30,
              show_default=True, metavar="SECONDS",
              help="How long to wait for another run of this environment to finish.")
@common_options
def destroy(phase, dry_run, yes, force_delete_secrets, skip_final_snapshot, lock_wait_s, env,
            config_path, report_dir, region):
    """Take a non-production environment down: what runbook created, and only that.

    Reads the account, shows what would be deleted (-), changed (~) and kept (=), and
    asks for the environment's name before deleting anything (--yes: don't ask).
    Resources runbook adopted are kept. Refused while the environment file says
    deletion_protection: true for what it would delete. By default the Aurora cluster
    leaves a final snapshot and the secrets a 30-day recovery window (a later `runbook
    run` restores them). Interrupted, it is run again and finishes the job.
    """
    from runbook import destroying
    from runbook.output import render
    from runbook.output.progress import Progress

    config = _load_config(env, config_path, region)
    target = destroying.scope(config, phase)
    opts = destroying.options(skip_final_snapshot=skip_final_snapshot,
                              force_delete_secrets=force_delete_secrets)

    def show(teardown, account):
        render.print_teardown(render.teardown_data(
            teardown, account=account, region=config.region, dry_run=dry_run),
            render.console())

    def confirm(teardown) -> bool:
        if yes or not (teardown.deletes or any(i.action == "update" for i in teardown.items)):
            return True
        typed = click.prompt(f"Type the environment's name ({config.env}) to destroy it",
                             default="", show_default=False, err=True)
        if typed.strip() == config.env:
            return True
        click.echo("that is not the environment's name: nothing was deleted", err=True)
        return False

    path = str(config_path or Path("config") / f"{env}.yaml")
    outcome = destroying.destroy(config, target, opts, dry_run=dry_run, report_dir=report_dir,
                                 progress=Progress(), show=show, confirm=confirm,
                                 config_path=path, lock_wait_s=lock_wait_s)
    report = outcome.report
    if report is None:
        sys.exit(outcome.exit_code)
    colour = "green" if report["status"] == "ok" else "red"
    click.echo(click.style(f"{report['status']}: ", fg=colour, bold=True)
               + f"{target.name} of {config.env}{' (dry run)' if dry_run else ''} in "
               + f"{report['duration_ms'] / 1000:.1f}s; report {outcome.path}")
    for line in report["destroy"]["retained"]:
        click.echo(f"kept on purpose: {line}")
    if dry_run and "verify_pass" in report:
        click.echo(f"verify pass: {report['verify_pass']['writes']} writes")
    if report.get("error"):
        click.echo(click.style(report["error"], fg="red"), err=True)
    failed = [s for s in report["steps"] if s["status"] == "failed" and s.get("error")]
    for step in failed[:1]:
        click.echo(click.style(f"error: {step['error']}", fg="red"), err=True)
    sys.exit(outcome.exit_code)


@cli.command()
@click.option("--live", is_flag=True,
              help="Plan the steps read-only against the account and report drift.")
@click.option("--phase", "phases", multiple=True, help="Only this phase's steps (repeatable).")
@click.option("--step", "steps", multiple=True, help="Only this step (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@common_options
def status(live, phases, steps, as_json, env, config_path, report_dir, region):
    """The last run of every phase and step, live and dry-run apart.

    With --live, plan the steps read-only against the account instead, and report
    each step's pending changes (drift). Exit codes with --live: 3 drift found in any
    step; 0 every step planned and in sync; 2 or 1 no drift found, but a step could
    not be planned (its error says why).
    """
    if live:
        sys.exit(_live_status(phases, steps, as_json, env, config_path, region))
    from runbook import app
    from runbook.output import status as status_mod

    phases_of = only = None
    try:
        config = _load_config(env, config_path, region)
        phases_of = config.phases
        only = app.select(config, phases, steps) if phases or steps else None
    except RunbookError:
        if phases or steps:
            raise  # choosing steps needs a valid file
        # Otherwise status only reads reports; an invalid file only loses the order.
    name = env if config_path is None else config_path.stem
    data = status_mod.collect(report_dir, name, phases_of, only)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        from runbook.output.render import console

        status_mod.render(data, console())


def _live_status(phases, steps, as_json, env, config_path, region) -> int:
    from runbook import app
    from runbook.output import drift
    from runbook.output import render
    from runbook.output.progress import Progress

    config = _load_config(env, config_path, region)
    outcome = app.plan_live(config, app.select(config, phases, steps),
                            Progress(quiet=as_json, err=True, per_step=False))
    data = drift.drift_data(outcome.results, env=config.env, account=outcome.account,
                            region=config.region, plan_exit_code=outcome.exit_code)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        drift.print_drift(data, render.console())
    return data["exit_code"]


@cli.command(help=registry.invoke_help())
@click.argument("function")
@click.option("--event", "event_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file with the event to invoke the function with.")
@click.option("--dry-run", is_flag=True,
              help="Run the handler locally in a throwaway sandbox; never touches AWS.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@common_options
def invoke(function, event_path, dry_run, as_json, env, config_path, report_dir, region):
    # The help lists the functions of runbook.functions.registry.
    from runbook import app
    from runbook.errors import BadInput
    from runbook.output.progress import Progress

    try:
        event = json.loads(event_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--event {event_path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"--event {event_path}: not a JSON file ({exc})") from None
    if not isinstance(event, dict):
        raise BadInput(f"--event {event_path}: the event must be a JSON object")
    config = _load_config(env, config_path, region)
    outcome = app.invoke(config, function, event, dry_run=dry_run,
                         progress=Progress(quiet=as_json, err=True))
    invocation = outcome.invocation
    # The result of a Cognito trigger is the event, e-mail address and all: masked.
    from runbook.lambda_runtime.emails import mask

    if as_json:
        click.echo(mask(json.dumps({**invocation.as_dict(), "log": invocation.log_lines},
                                   indent=2, default=str, ensure_ascii=False)))
    else:
        click.echo(click.style(f"log of {invocation.function} (request {invocation.request_id}):",
                               bold=True))
        for line in invocation.log_lines:
            click.echo(f"  {mask(line)}")
        if invocation.ok:
            click.echo(click.style("result (e-mail addresses masked):", fg="green", bold=True))
            click.echo(mask(json.dumps(invocation.result, indent=2, default=str,
                                       ensure_ascii=False)))
        else:
            click.echo(click.style(f"error: {invocation.error_type}: "
                                   f"{mask(str(invocation.error_message))}", fg="red"), err=True)
    sys.exit(outcome.exit_code)


@cli.command()
@click.option("--yes", is_flag=True, help="Break the lock without asking.")
@common_options
def unlock(yes, env, config_path, report_dir, region):
    """Break the lock a crashed run left on this environment.

    Shows who holds it and since when, and asks before deleting it. Breaking the lock
    of a run that is still going lets two runs interleave: check that run first.
    """
    from runbook import app

    config = _load_config(env, config_path, region)
    run_lock = app.environment_lock(config)
    holder = run_lock.holder()
    if holder is None:
        click.echo(f"environment {config.env!r} is not locked ({run_lock.name} does not exist)")
        return
    click.echo(f"environment {config.env!r} is locked by {holder.describe()}")
    if not yes and not click.confirm("Break this lock?", default=False, err=True):
        click.echo("the lock was left in place", err=True)
        sys.exit(EXIT_FAILED)
    run_lock.break_lock()
    click.echo(f"lock {run_lock.name} broken")


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # runbook is the process, not a call from Python
        _no_collection_at_exit()
    try:
        code = cli.main(args=argv, prog_name="runbook", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RunbookError as exc:
        if _debug:
            traceback.print_exc()
        click.echo(click.style("error: ", fg="red", bold=True) + str(exc), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if _debug:
            traceback.print_exc()
        click.echo(f"internal error: {type(exc).__name__}: {exc}\n"
                   "This is a bug in runbook. Re-run with --debug for the traceback.", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code or 0)


def _no_collection_at_exit() -> None:
    """Skip the garbage collection Python makes as the process exits: after a dry run
    it walks half a million objects (moto's) that are about to go anyway, 0.5 to 2.5 s
    on the 2-core machine. Frozen by the last exit handler, after the others; what
    must reach the disk (reports, the journal) is closed by its owner before."""
    import atexit
    import gc

    atexit.register(gc.freeze)


if __name__ == "__main__":
    main()
