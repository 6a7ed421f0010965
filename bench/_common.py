"""What the benchmark scripts share: a moto server, a scratch working directory with the
environment file, running `runbook` as an operator would, and percentiles."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def moto_server():
    """A moto server on 127.0.0.1 (what live runs talk to here), its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    from runbook.sandbox import rds as sandbox_rds

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sandbox_rds.install()  # DescribeDBEngineVersions, which moto 5.2.5 lacks
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def workdir():
    """A scratch directory holding config/prod.yaml, where reports are written."""
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp:
        (Path(tmp) / "config").mkdir()
        shutil.copy(REPO / "config" / "prod.yaml", Path(tmp) / "config" / "prod.yaml")
        yield Path(tmp)


def runbook(*args: str, cwd: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run `python -m runbook ARGS` in a new process; (wall seconds, the process)."""
    full = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-central-1", **(env or {})}
    full.pop("AWS_PROFILE", None)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runbook", *args], cwd=cwd, env=full,
                          capture_output=True, text=True)
    return time.perf_counter() - started, proc


def runbook_timed(*args: str, cwd: Path, env: dict | None = None) -> tuple[float, int, list, str]:
    """Run `python -m runbook ARGS` in a new process, reading its output as it comes:
    (wall seconds, exit code, [(seconds since the start, line)], stderr). Unbuffered,
    as on a terminal, so that each line's time is when it was printed."""
    full = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-central-1", "PYTHONUNBUFFERED": "1", **(env or {})}
    full.pop("AWS_PROFILE", None)
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "runbook", *args], cwd=cwd, env=full,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines = [(time.perf_counter() - started, line.rstrip("\n")) for line in proc.stdout]
        code = proc.wait()
        seconds = time.perf_counter() - started
        stderr.seek(0)
        return seconds, code, lines, stderr.read()


def report(cwd: Path, name: str, *, dry_run: bool = False) -> dict:
    path = cwd / "reports" / "prod" / ("dry-run" if dry_run else "") / f"{name}.json"
    return json.loads(path.read_text())


def calls(data: dict, kind: str) -> int:
    return sum(step["api_calls"][kind] for step in data["steps"])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(p) - 1]


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}"
