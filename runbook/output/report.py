"""Run reports: `reports/<env>/[dry-run/]<name>.json`, plus a timestamped copy in
`history/`. Files are written atomically (temp file + rename), so a crash never leaves
half a report. The shape is `runbook/schema/report.schema.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from runbook.files import write_atomically

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parents[1] / "schema" / "report.schema.json"


@dataclass
class RunRecord:
    env: str
    name: str                 # phase name, or step name(s) for a --step run
    phase: str
    dry_run: bool
    region: str
    account: str | None
    started_at: str
    finished_at: str = ""
    duration_ms: int = 0
    results: list = field(default_factory=list)          # engine.StepResult
    verify_results: list | None = None
    simulated: list[str] | None = None
    journal: list[dict] = field(default_factory=list)
    journal_file: str | None = None
    interrupted: bool = False
    error: str | None = None

    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.error or any(not r.ok for r in self.results):
            return "failed"
        if self.verify_results is not None and any(not r.ok for r in self.verify_results):
            return "failed"
        return "ok"


def close(record: RunRecord, journal, journal_path: Path, started: float) -> None:
    """Record how a run that has ended ended, however it ended: when, how long after
    `started` (time.monotonic), and its journal (runbook.aws.journal.Journal), whose file
    the report names once it holds an entry."""
    import time

    from runbook.aws.journal import utc_now

    record.finished_at = utc_now()
    record.duration_ms = int((time.monotonic() - started) * 1000)
    record.journal = journal.entries
    if journal.entries:
        record.journal_file = str(journal_path)


def build(record: RunRecord) -> dict:
    report = {
        "schema_version": SCHEMA_VERSION,
        "env": record.env,
        "phase": record.phase,
        "name": record.name,
        "dry_run": record.dry_run,
        "status": record.status,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration_ms": record.duration_ms,
        "account": record.account,
        "region": record.region,
        "steps": [_step(r) for r in record.results],
    }
    if record.error:
        report["error"] = record.error
    if record.dry_run:
        report["simulated"] = list(record.simulated or [])
        verify = record.verify_results or []
        report["verify_pass"] = {
            "writes": sum(r.api_calls["write"] for r in verify if r.idempotent),
            "steps": [_step(r) for r in verify],
        }
    if record.status != "ok":
        report["journal"] = list(record.journal)
    if record.journal_file:
        report["journal_file"] = record.journal_file
    return report


def _step(result) -> dict:
    step = {
        "name": result.name,
        "phase": result.phase,
        "status": result.status,
        "changed": result.changed,
        "idempotent": result.idempotent,
        "duration_ms": result.duration_ms,
        "changes": [c.as_report() for c in result.changes],
        "api_calls": dict(result.api_calls),
        "outputs": result.outputs,
    }
    if result.error:
        step["error"] = result.error
    step.update(result.evidence)
    return step


def run_dir(report_dir: Path, env: str, dry_run: bool) -> Path:
    base = Path(report_dir) / env
    return base / "dry-run" if dry_run else base


def write(report: dict, report_dir: Path, stamp: str) -> Path:
    """Write the latest copy and the history copy; return the latest's path."""
    directory = run_dir(report_dir, report["env"], report["dry_run"])
    latest = directory / f"{report['name']}.json"
    text = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    write_atomically(directory / "history" / f"{report['name']}-{stamp}.json", text.encode())
    write_atomically(latest, text.encode())
    return latest


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
