"""The sandbox's start and teardown (runbook.sandbox.stack): PostgreSQL starts in a thread
while moto starts, and whatever was started is stopped on every exit path, an interrupt
during start-up included; concurrent dry runs share nothing but the cached template of
PostgreSQL's data directory; a closed sandbox leaves its process as it found it."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runbook.output.progress import Progress
from runbook.sandbox.stack import FULL_COLLECTION_AFTER, Sandbox
from tests.conftest import PROD_CONFIG
from tests.integration.test_dry_run import sandbox_processes

pytestmark = pytest.mark.slow


def test_a_closed_sandbox_leaves_its_process_as_it_found_it():
    threads = {t.ident for t in threading.enumerate()}
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    handler = signal.getsignal(signal.SIGTERM)
    with Sandbox(Progress(quiet=True)) as sandbox:
        workdir, pid = sandbox.workdir, sandbox._pg.pid
        with psycopg.connect(sandbox.database_dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == sandbox.database
        assert sandbox_processes(str(workdir))  # the server runs in the sandbox dir
        # While it runs, what start-up built is kept out of the collector's walks.
        assert gc.isenabled() and gc.get_freeze_count() > frozen
        assert gc.get_threshold()[2] == FULL_COLLECTION_AFTER
    assert sandbox_processes(str(workdir)) == [] and not Path(f"/proc/{pid}").exists()
    assert not workdir.exists()
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= threads
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen
    assert gc.isenabled() and signal.getsignal(signal.SIGTERM) is handler


@pytest.fixture
def private_tmp():
    """A TMPDIR of the test's own, so that every sandbox dir in it is the test's run's.
    Short: PostgreSQL's socket lives in the sandbox dir (107 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="rb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def dry_run(workdir: Path, tmp: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runbook", "run", *args, "--dry-run"],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                            "TMPDIR": str(tmp), **(env or {})})


@pytest.mark.parametrize("delay_s", [0.0, 0.3, 0.6])
def test_ctrl_c_during_start_up_stops_what_was_started(workdir, private_tmp, delay_s):
    """SIGINT while moto and PostgreSQL are still starting, at a few points of it: no
    process and no sandbox dir is left, whichever part had got how far."""
    proc = dry_run(workdir, private_tmp, "--phase", "a1")
    try:
        for line in proc.stdout:
            if "starting a sandbox" in line:
                break
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert sandbox_processes(str(private_tmp)) == []
    assert list(private_tmp.glob("runbook-sandbox-*")) == []


def test_two_dry_runs_at_once_share_nothing_but_the_template(tmp_path, private_tmp):
    """Two first runs on one machine with an empty cache: both make PostgreSQL's
    template, one keeps it, and neither sees the other's server or database."""
    cache = tmp_path / "cache"
    runs = []
    for name in ("one", "two"):
        (tmp_path / name / "config").mkdir(parents=True)
        shutil.copy(PROD_CONFIG, tmp_path / name / "config" / "prod.yaml")
        runs.append(dry_run(tmp_path / name, private_tmp, "--phase", "a1",
                            env={"RUNBOOK_CACHE_DIR": str(cache)}))
    outputs = [proc.communicate(timeout=300)[0] for proc in runs]
    for proc, output in zip(runs, outputs):
        assert proc.returncode == 0, output
        assert "verify pass: 0 writes" in output
    postgres = cache / "postgres"
    [template] = list(postgres.iterdir())  # one template, no temporary copy left
    assert template.name.startswith("pgdata-") and (template / "PG_VERSION").is_file()
    assert sandbox_processes(str(private_tmp)) == []
    assert list(private_tmp.glob("runbook-sandbox-*")) == []

    # A later run copies it.
    (tmp_path / "three" / "config").mkdir(parents=True)
    shutil.copy(PROD_CONFIG, tmp_path / "three" / "config" / "prod.yaml")
    later = dry_run(tmp_path / "three", private_tmp, "--phase", "a1",
                    env={"RUNBOOK_CACHE_DIR": str(cache)})
    output = later.communicate(timeout=300)[0]
    assert later.returncode == 0, output
    assert "a copy of the cached one" in output
