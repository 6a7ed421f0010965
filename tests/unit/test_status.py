"""`runbook status` from the reports alone: live and dry-run apart, the last run of each
phase and step, and the integration checks summed up. Reports are written by the test."""

from __future__ import annotations

import json

import pytest

CHECKS = ["cognito_signup", "post_confirmation_trigger", "profile_row", "private_profile_row",
          "authentication", "jwt_validation", "cloudwatch_logs", "db_consistency",
          "database_grants", "cleanup"]
A1 = ["network", "database", "store-secrets"]
A3 = ["vpc-integrate", "fix-tables", "db-proxy", "deploy-post-confirmation", "integration-test"]


def step(name: str, phase: str, status: str = "ok", **extra) -> dict:
    return {"name": name, "phase": phase, "status": status, "changed": True, "idempotent": True,
            "duration_ms": 120, "changes": [{"resource": "x", "action": "create", "diff": {}}],
            "api_calls": {"read": 1, "write": 1}, "outputs": {}, **extra}


def checks(failed: dict[str, str] | None = None) -> list[dict]:
    failed = failed or {}
    return [{"name": name, "status": "failed" if name in failed else "ok", "duration_ms": 10,
             "detail": failed.get(name, "")} for name in CHECKS]


def write_report(workdir, name: str, phase: str, steps: list[dict], *, dry_run: bool = False,
                 finished: str = "2026-11-22T01:00:00.000Z", status: str = "ok",
                 **extra) -> None:
    directory = workdir / "reports" / "prod" / ("dry-run" if dry_run else "")
    report = {"schema_version": 1, "env": "prod", "phase": phase, "name": name,
              "dry_run": dry_run, "status": status, "started_at": finished,
              "finished_at": finished, "duration_ms": 1000, "account": "123456789012",
              "region": "eu-central-1", "steps": steps, **extra}
    stamp = finished.replace("-", "").replace(":", "").replace(".", "")
    for path in (directory / f"{name}.json", directory / "history" / f"{name}-{stamp}.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))


@pytest.fixture
def dry_run_a3(workdir):
    """A dry run of a3 (a1 and a2 ran in it too), the integration test all green."""
    write_report(workdir, "a3", "a3", [step(n, "a1") for n in A1] + [step("cognito", "a2")]
                 + [step(n, "a3") for n in A3[:-1]]
                 + [step("integration-test", "a3", idempotent=False, checks=checks())],
                 dry_run=True)
    return workdir


def test_live_and_dry_run_are_shown_apart_with_the_checks_summed_up(dry_run_a3, cli):
    write_report(dry_run_a3, "a1", "a1", [step(n, "a1") for n in A1])

    result = cli("status")

    assert result.exit_code == 0, result.output
    live, dry = result.stdout.split("runbook status: prod, dry-run runs")
    assert "runbook status: prod, live runs" in live
    assert "network" in live and "cognito" not in live
    for name in A1 + ["cognito"] + A3:
        assert name in dry
    integration = next(line for line in dry.splitlines() if "integration-test" in line)
    assert "10/10 ok" in integration
    assert "\x1b[" not in result.stdout  # no colour outside a terminal


def test_the_last_run_of_a_phase_counts_the_phases_a_dry_run_ran_on_the_way(dry_run_a3, cli):
    data = json.loads(cli("status", "--json").stdout)
    assert [(p["mode"], p["phase"], p["status"], p["run"]) for p in data["phases"]] == [
        ("dry-run", "a1", "ok", "a3"), ("dry-run", "a2", "ok", "a3"), ("dry-run", "a3", "ok", "a3")]
    assert [(r["step"], r["status"]) for r in data["steps"]] == \
        [(n, "ok") for n in A1 + ["cognito"] + A3]
    integration = data["steps"][-1]
    assert integration["checks"] == {"total": 10, "ok": 10, "not_ok": []}


def test_failed_checks_are_named_with_their_detail(workdir, cli):
    write_report(workdir, "a3", "a3", [step(n, "a3") for n in A3[:-1]] + [
        step("integration-test", "a3", status="failed",
             checks=checks({"jwt_validation": "bad signature", "cleanup": "user left behind"}))],
                 status="failed")

    result = cli("status")

    row = next(line for line in result.stdout.splitlines() if "integration-test" in line)
    assert "8/10 ok, 2 failed" in row
    assert "integration-test (live): jwt_validation failed: bad signature" in result.stdout
    assert "integration-test (live): cleanup failed: user left behind" in result.stdout
    data = json.loads(cli("status", "--json").stdout)
    assert data["steps"][-1]["checks"]["not_ok"] == [
        {"name": "jwt_validation", "status": "failed", "detail": "bad signature"},
        {"name": "cleanup", "status": "failed", "detail": "user left behind"}]
    assert data["phases"] == [{"mode": "live", "phase": "a3", "status": "failed", "run": "a3",
                               "finished_at": "2026-11-22T01:00:00.000Z",
                               "report": data["phases"][0]["report"]}]


def test_a_step_this_version_does_not_build_shows_as_skipped_and_not_against_its_phase(
        workdir, cli):
    write_report(workdir, "a3", "a3", [step(n, "a3") for n in A3[:-1]] + [
        step("integration-test", "a3", status="not_run", changed=False, changes=[],
             error="step 'integration-test' is not built in this version of runbook")])

    data = json.loads(cli("status", "--json").stdout)

    assert data["steps"][-1]["status"] == "skipped"
    assert data["phases"][0]["status"] == "ok"


def test_the_newest_run_of_each_step_wins_and_filters_keep_their_steps(workdir, cli):
    write_report(workdir, "a1", "a1", [step(n, "a1") for n in A1])
    write_report(workdir, "network", "a1", [step("network", "a1", changed=False, changes=[])],
                 finished="2026-11-22T02:00:00.000Z")

    data = json.loads(cli("status", "--json", "--step", "network").stdout)

    assert [(r["step"], r["run"], r["changed"]) for r in data["steps"]] == [
        ("network", "network", False)]
    assert [p["phase"] for p in data["phases"]] == ["a1"]
    assert "ok (unchanged)" in cli("status", "--phase", "a1").stdout


def test_a_destroy_shows_the_steps_it_took_down_and_only_those(workdir, cli):
    write_report(workdir, "a3", "a3", [step(n, "a1") for n in A1] + [step("cognito", "a2")]
                 + [step(n, "a3") for n in A3])
    # A destroy of a3 on: its steps, the last first; cognito's pool stays and loses a trigger.
    write_report(workdir, "destroy-a3", "destroy",
                 [step(n, "a3", kept=[]) for n in reversed(A3)]
                 + [step("cognito", "a2", changes=[{"resource": "pool", "action": "update",
                                                    "diff": {}}], kept=[])],
                 finished="2026-11-22T02:00:00.000Z",
                 destroy={"scope": "phase a3 and every phase after it", "steps": A3,
                          "retained": [], "remaining": []})

    data = json.loads(cli("status", "--json").stdout)

    status = {r["step"]: (r["status"], r["run"]) for r in data["steps"]}
    assert {s: status[s] for s in A3} == {s: ("destroyed", "destroy-a3") for s in A3}
    assert status["cognito"] == ("ok", "destroy-a3")
    assert status["network"] == ("ok", "a3")
    phases = {p["phase"]: (p["status"], p["run"]) for p in data["phases"]}
    assert phases == {"a1": ("ok", "a3"), "a2": ("ok", "a3"), "a3": ("destroyed", "destroy-a3")}
    assert "destroyed" in cli("status").stdout


def test_an_unknown_phase_filter_exits_2_naming_the_phases(workdir, cli):
    result = cli("status", "--phase", "a9")
    assert result.exit_code == 2
    assert "--phase a9" in result.stderr and "a1, a2, a3" in result.stderr
    assert "Traceback" not in result.output


def test_no_reports_says_how_to_start(workdir, cli):
    result = cli("status")
    assert result.exit_code == 0
    assert "runbook run --phase a1 --dry-run" in result.stdout


def test_statuses_and_checks_are_coloured_on_a_terminal(dry_run_a3):
    import io

    from rich.console import Console

    from runbook.output import status

    out = Console(file=io.StringIO(), width=140, force_terminal=True, color_system="standard")
    status.render(status.collect(dry_run_a3 / "reports", "prod"), out)
    text = out.file.getvalue()
    assert "\x1b[32mok" in text and "\x1b[32m10/10 ok" in text
