"""`runbook status`: the last run of every step, live and dry-run apart, read from the
reports (history included, so a `--step` run does not hide the rest of its phase)."""

from __future__ import annotations

import json
from pathlib import Path

MODES = (("live", False), ("dry-run", True))


def collect(report_dir: Path, env: str, step_order: list[str] | None = None) -> list[dict]:
    """One row per (mode, step): the newest report that ran that step."""
    from runbook.report import run_dir

    latest: dict[tuple[str, str], dict] = {}
    for mode, dry in MODES:
        directory = run_dir(report_dir, env, dry)
        # History holds every run; the latest copies only matter if history was pruned.
        files = sorted((directory / "history").glob("*.json")) + sorted(directory.glob("*.json"))
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a foreign or damaged file is not a run
            for step in data.get("steps", ()):
                key = (mode, step.get("name", "?"))
                row = {
                    "mode": mode,
                    "phase": step.get("phase", data.get("phase", "?")),
                    "step": step.get("name", "?"),
                    "status": step.get("status", "?"),
                    "changed": bool(step.get("changed")),
                    "changes": len(step.get("changes", ())),
                    "duration_ms": step.get("duration_ms", 0),
                    "finished_at": data.get("finished_at", ""),
                    "report": str(path),
                }
                if key not in latest or row["finished_at"] > latest[key]["finished_at"]:
                    latest[key] = row
    order = {name: index for index, name in enumerate(step_order or [])}
    return sorted(latest.values(),
                  key=lambda r: (r["mode"] != "live", order.get(r["step"], len(order)), r["step"]))


def render(rows: list[dict], env: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120, no_color=True)
    if not rows:
        console.print(f"No reports for environment {env!r} yet. Start with "
                      "`runbook run --phase a1 --dry-run`.")
        return
    table = Table(title=f"runbook status: {env}", title_justify="left")
    for column in ("phase", "step", "mode", "status", "last run (UTC)", "changes", "duration"):
        table.add_column(column, justify="right" if column in ("changes", "duration") else "left")
    colours = {"ok": "green", "failed": "red", "not_run": "yellow", "interrupted": "yellow"}
    for row in rows:
        status = row["status"] if row["changed"] or row["status"] != "ok" else "ok (unchanged)"
        table.add_row(row["phase"], row["step"], row["mode"],
                      f"[{colours.get(row['status'], 'white')}]{status}[/]",
                      row["finished_at"].replace("T", " ")[:19], str(row["changes"]),
                      f"{row['duration_ms'] / 1000:.1f}s")
    console.print(table)
