"""`--dry-run`: the sandbox (moto server + real PostgreSQL), the verify pass, the report,
and teardown on every exit path."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from runbook.output.report import load_schema
from tests.conftest import read_report, run_cli


def sandbox_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (the sandbox dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((line for line in (entry / "status").read_text().splitlines()
                          if line.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmdline and "zombie" not in state:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.slow
def test_dry_run_of_a1_is_green_with_a_quiet_verify_pass(workdir, cli):
    result = cli("run", "--phase", "a1", "--dry-run")

    assert result.exit_code == 0, result.output
    path = workdir / "reports" / "prod" / "dry-run" / "a1.json"
    report = json.loads(path.read_text())
    jsonschema.validate(report, load_schema())
    assert report["dry_run"] is True and report["status"] == "ok"
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("network", "ok"), ("database", "ok"), ("store-secrets", "ok")]
    assert report["verify_pass"]["writes"] == 0
    assert [s["name"] for s in report["verify_pass"]["steps"]] == ["network", "database", "store-secrets"]
    assert all(s["api_calls"]["read"] > 0 for s in report["verify_pass"]["steps"])
    assert any("PostgreSQL" in line for line in report["simulated"])
    # Live and dry-run reports never mix.
    assert not (workdir / "reports" / "prod" / "a1.json").exists()
    assert "verify pass: 0 writes" in result.stdout


@pytest.mark.slow
def test_dry_run_of_one_step_runs_its_prerequisites_and_verifies_only_it(workdir, cli):
    result = cli("run", "--step", "database", "--dry-run")
    assert result.exit_code == 0, result.output
    report = read_report(workdir, "database", dry_run=True)
    assert [s["name"] for s in report["steps"]] == ["network", "database"]
    assert [s["name"] for s in report["verify_pass"]["steps"]] == ["database"]


@pytest.mark.slow
def test_dry_run_never_uses_the_operators_account_or_endpoint(workdir):
    # Credentials and an endpoint that would fail if used: the sandbox ignores both.
    result = run_cli("run", "--phase", "a1", "--dry-run", cwd=workdir, env={
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "AKIAREALLOOKING",
        "AWS_SECRET_ACCESS_KEY": "real-looking-secret"})
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "reports" / "prod" / "dry-run" / "a1.json").read_text())
    assert report["account"] == "123456789012"


@pytest.mark.slow
def test_dry_run_interrupted_with_sigint_leaves_no_process_behind(workdir):
    proc = subprocess.Popen([sys.executable, "-m", "runbook", "run", "--phase", "a1", "--dry-run"],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, sandbox_dir = [], None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"sandbox dir (\S+)\)", line)
            if match:
                sandbox_dir = match.group(1)
            if "embedded PostgreSQL" in line:
                break
        assert sandbox_dir, "".join(lines)
        assert sandbox_processes(sandbox_dir), "postgres should be running before the interrupt"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "Traceback" not in rest
    assert sandbox_processes(sandbox_dir) == []
    assert not Path(sandbox_dir).exists()


@pytest.mark.slow
def test_dry_run_terminated_with_sigterm_also_tears_down(workdir):
    proc = subprocess.Popen([sys.executable, "-m", "runbook", "run", "--phase", "a1", "--dry-run"],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    sandbox_dir = None
    try:
        for line in proc.stdout:
            match = re.search(r"sandbox dir (\S+)\)", line)
            if match:
                sandbox_dir = match.group(1)
            if "embedded PostgreSQL" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sandbox_dir and proc.returncode == 130
    assert sandbox_processes(sandbox_dir) == []
