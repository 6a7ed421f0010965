"""`runbook status`: the last run of every phase and step, live and dry-run apart, read
from the reports.

History is read too, so that a `--step` run does not hide the rest of its phase: a step's
row is the newest report that ran it, and a phase's row the newest report that ran all
of its steps (a dry run of a3 runs a1 and a2 on the way).
A step that ran integration checks (`checks: [{name, status, duration_ms, detail}]` in
its report entry) gets them summed up, `10/10 ok` or which failed, because "ok" alone
does not say what was proven.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.table import Table
from rich.text import Text

from runbook.output.render import print_line

MODES = (("live", False), ("dry-run", True))
DESTROYED = "destroyed"
COLOURS = {"ok": "green", "failed": "red", "not_run": "yellow", "interrupted": "yellow",
           "skipped": "yellow", DESTROYED: "cyan"}


def collect(report_dir: Path, env: str, phases: dict[str, list[str]] | None = None,
            only: list[str] | None = None) -> dict:
    """{"env", "phases": [row], "steps": [row]}: per mode, the newest run of each phase
    and of each step (of `only`, when given), in the order of `phases` (the
    environment file's; without it, phases are known only by runs named after them)."""
    phase_rows: dict[tuple[str, str], dict] = {}
    step_rows: dict[tuple[str, str], dict] = {}
    for mode, report, path in _reports(report_dir, env):
        entries = [step for step in report.get("steps", ()) if isinstance(step, dict)]
        destroyed = _destroyed(report)
        for step in entries:
            row = {
                "mode": mode,
                "phase": step.get("phase", report.get("phase", "?")),
                "step": step.get("name", "?"),
                "status": _status_of(step, destroyed),
                "changed": bool(step.get("changed")),
                "changes": len(step.get("changes", ())),
                "checks": summarise_checks(step.get("checks")),
                "duration_ms": step.get("duration_ms", 0),
                "run": report.get("name", "?"),
                "finished_at": report.get("finished_at", ""),
                "report": str(path),
            }
            if only is None or row["step"] in only:
                _keep_newest(step_rows, (mode, row["step"]), row)
        for phase, statuses in _phases_run(report, entries, phases, destroyed).items():
            _keep_newest(phase_rows, (mode, phase), {
                "mode": mode, "phase": phase, "status": _worst(statuses),
                "run": report.get("name", "?"), "finished_at": report.get("finished_at", ""),
                "report": str(path)})
    step_rank = _ranks(step for steps in (phases or {}).values() for step in steps)
    phase_rank = _ranks(phases or ())
    wanted = {row["phase"] for row in step_rows.values()}
    return {
        "env": env,
        "phases": sorted((row for row in phase_rows.values()
                          if only is None or row["phase"] in wanted),
                         key=lambda r: (r["mode"] != "live", phase_rank(r["phase"]))),
        "steps": sorted(step_rows.values(),
                        key=lambda r: (r["mode"] != "live", step_rank(r["step"]))),
    }


def _ranks(names):
    """A sort key: the position in `names`; names not in it after them, by name."""
    index = {name: position for position, name in enumerate(names)}
    return lambda name: (index.get(name, len(index)), name)


def _status_of(step: dict, destroyed: set[str] = frozenset()) -> str:
    """The step's status; "skipped" for a `not_run` with an error, which is how a run
    records a step this version does not build (a step left out after a failure has no
    error); "destroyed" for a step a destroy took down."""
    status = step.get("status", "?")
    if step.get("name") in destroyed:
        return DESTROYED if status == "ok" else status
    return "skipped" if status == "not_run" and step.get("error") else status


def _destroyed(report: dict) -> set[str]:
    """The steps a destroy report took down (a step it only changed, a user pool that
    stays losing a trigger, is not one)."""
    section = report.get("destroy")
    return set(section.get("steps", ())) if isinstance(section, dict) else set()


def _phases_run(report: dict, entries: list[dict], phases: dict[str, list[str]] | None,
                destroyed: set[str] = frozenset()) -> dict[str, list[str]]:
    """{phase: its steps' statuses} for every phase all of whose steps this report ran
    (a dry run of a3 runs a1 and a2 too), or a destroy took down. A skipped step does
    not count against its phase."""
    statuses = {entry.get("name"): _status_of(entry, destroyed) for entry in entries
                if _status_of(entry, destroyed) != "skipped"}
    ran = {entry.get("name") for entry in entries
           if not report.get("destroy") or entry.get("name") in destroyed}
    if phases is None:  # without the file, only a run named after its phase says so
        name = report.get("name")
        return {name: list(statuses.values())} if name == report.get("phase") else {}
    return {phase: [statuses[s] for s in steps if s in statuses]
            for phase, steps in phases.items() if steps and set(steps) <= ran}


def _worst(statuses: list[str]) -> str:
    for status in ("failed", "interrupted", "not_run"):
        if status in statuses:
            return status
    if statuses and all(status == DESTROYED for status in statuses):
        return DESTROYED
    return "ok" if statuses else "not_run"


def _reports(report_dir: Path, env: str):
    """(mode, report, path) for every report of `env`, history first."""
    from runbook.output.report import run_dir

    for mode, dry in MODES:
        directory = run_dir(report_dir, env, dry)
        # History holds every run; the latest copies only matter if history was pruned.
        for path in sorted((directory / "history").glob("*.json")) + sorted(directory.glob("*.json")):
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a foreign or damaged file is not a run
            if isinstance(report, dict):
                yield mode, report, path


def _keep_newest(rows: dict, key: tuple[str, str], row: dict) -> None:
    if key not in rows or row["finished_at"] > rows[key]["finished_at"]:
        rows[key] = row


def summarise_checks(checks) -> dict | None:
    """{"total", "ok", "not_ok": [{"name", "status", "detail"}]}, or None without checks."""
    if not isinstance(checks, list) or not checks:
        return None
    checks = [c for c in checks if isinstance(c, dict)]
    not_ok = [{"name": c.get("name", "?"), "status": c.get("status", "?"),
               "detail": c.get("detail")} for c in checks if c.get("status") != "ok"]
    return {"total": len(checks), "ok": len(checks) - len(not_ok), "not_ok": not_ok}


def checks_text(summary: dict | None) -> str:
    """"9/9 ok", or "7/9 ok, 2 failed" (`render` names them under the table)."""
    if summary is None:
        return ""
    by_status: dict[str, int] = {}
    for check in summary["not_ok"]:
        by_status[check["status"]] = by_status.get(check["status"], 0) + 1
    return ", ".join([f"{summary['ok']}/{summary['total']} ok"]
                     + [f"{count} {status}" for status, count in by_status.items()])


def render(data: dict, out) -> None:
    """A table per mode: each phase's last whole run, then its steps' last runs; then
    the integration checks that did not pass, with their detail."""
    if not data["steps"] and not data["phases"]:
        out.print(f"No reports for environment {data['env']!r} yet. Start with "
                  "`runbook run --phase a1 --dry-run`.")
        return
    first = True
    for mode, _ in MODES:
        steps = [r for r in data["steps"] if r["mode"] == mode]
        phases = {r["phase"]: r for r in data["phases"] if r["mode"] == mode}
        if not steps and not phases:
            continue
        if not first:
            out.print()
        first = False
        print_line(out, f"runbook status: {data['env']}, {mode} runs", "bold")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in ("phase / step", "status", "last run (UTC)", "run", "changes", "checks",
                       "duration"):
            table.add_column(column, justify="right" if column in ("changes", "duration")
                             else "left")
        for phase in dict.fromkeys([*phases, *(r["phase"] for r in steps)]):
            run = phases.get(phase)
            table.add_row(Text(phase, style="bold"),
                          _status(run["status"], True) if run else Text("never run whole",
                                                                        style="dim"),
                          _when(run), run["run"] if run else "", "", "", "")
            for row in (r for r in steps if r["phase"] == phase):
                table.add_row(f"  {row['step']}", _status(row["status"], row["changed"]),
                              _when(row), row["run"], str(row["changes"]),
                              _checks(row["checks"]), _duration(row))
        out.print(table)
    failed = [(row, check) for row in data["steps"] if row["checks"]
              for check in row["checks"]["not_ok"]]
    for row, check in failed:
        out.print(Text(f"{row['step']} ({row['mode']}): {check['name']} {check['status']}"
                       + (f": {check['detail']}" if check.get("detail") else ""), style="red"))


def _status(status: str, changed: bool):
    label = status if changed or status != "ok" else "ok (unchanged)"
    if status == DESTROYED:
        label = status
    return Text(label, style=COLOURS.get(status, ""))


def _checks(summary: dict | None):
    return Text(checks_text(summary), style="green" if summary and not summary["not_ok"]
                else "red" if summary else "")


def _when(row: dict | None) -> str:
    return row["finished_at"].replace("T", " ")[:19] if row else ""


def _duration(row: dict) -> str:
    return f"{row['duration_ms'] / 1000:.1f}s"
