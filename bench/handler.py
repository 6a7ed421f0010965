"""The Post-Confirmation handler against the embedded PostgreSQL, next to a raw psycopg
loop doing the same two-row transaction on the same server.

    python bench/handler.py [--confirmations 1000]

Prints confirmations per second and p50/p99 latency of each, their ratio beside its goal
(what the handler's safety costs: advisory locks, the e-mail link, timeouts, the
upsert), and the cold start: importing the handler in a new Python process, and its
first invocation, which opens the connection. `RUNBOOK_PG_DSN` points it at another
server.

Both sides run in the same process, each on its own warm connection and its own
database migrated by fix-tables, in turns of TURN confirmations: the machine's load
then falls on both alike, and the ratio is of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, percentile  # noqa: E402

EVENT = REPO / "tests" / "fixtures" / "events" / "post_confirmation_confirm_signup.json"
GOAL = 0.8      # issue 19: the handler at >= 0.8x the raw rate
TURN = 50       # confirmations a side runs before the other side's turn
WARM = 20       # untimed ones first, on each side: the connection and the server warm
SPARE = 1       # and one more, whose round trips are counted


@contextlib.contextmanager
def server():
    if os.environ.get("RUNBOOK_PG_DSN"):
        yield os.environ["RUNBOOK_PG_DSN"], "RUNBOOK_PG_DSN"
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    with tempfile.TemporaryDirectory(prefix="runbook-bench-pg-") as tmp:
        srv = pgserver.get_server(Path(tmp) / "data", cleanup_mode="stop")
        try:
            yield srv.get_uri(), "embedded pgserver"
        finally:
            srv.cleanup()


def fresh_database(uri: str) -> str:
    """A new database migrated by fix-tables, as the handler finds it in production."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from runbook import config as config_mod
    from runbook.aws.clients import ClientFactory
    from runbook.engine import UNKNOWN
    from runbook.steps import new_runner
    from runbook.steps.database import DatabaseOutputs
    from runbook.steps.store_secrets import SecretsOutputs
    from runbook.output.progress import Progress

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(uri, dbname=name)
    runner = new_runner(config_mod.load(REPO / "config" / "prod.yaml"), ClientFactory("eu-central-1"),
                    Progress(quiet=True), dry_run=True, database_dsn=dsn)
    runner.outputs.update({"database": DatabaseOutputs.standing_in(name),
    "store-secrets": SecretsOutputs(UNKNOWN, UNKNOWN)})
    result = runner.run_step("fix-tables")
    assert result.status == "ok", result.error
    return dsn


def event(n: int) -> dict:
    data = json.loads(EVENT.read_text())
    attributes = data["request"]["userAttributes"]
    attributes["sub"] = str(uuid.UUID(int=n + 1))
    attributes["email"] = f"bench.user.{n}@example.com"
    return data


def load_handler(name: str, dsn: str):
    """lambdas/<name>/handler.py as Lambda loads it, reaching `dsn` through DB_DSN."""
    os.environ["DB_DSN"] = dsn
    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  REPO / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.DATABASE.connection()  # opened now, while DB_DSN names this database
    return module


def interleaved(sides: dict[str, Callable[[int], object]], count: int,
                turn: int = TURN) -> dict[str, list[float]]:
    """The latency of each of `count` calls step(n) per side, the sides taking turns of
    `turn` calls (in alternating order), after WARM untimed calls each."""
    for step in sides.values():
        for n in range(WARM):
            step(count + n)
    latencies: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides.items())
    for start in range(0, count, turn):
        for name, step in order:
            for n in range(start, min(start + turn, count)):
                started = time.perf_counter()
                step(n)
                latencies[name].append(time.perf_counter() - started)
        order.reverse()
    return latencies


def handler_side(dsn: str, count: int):
    """step(n): the handler confirming user n; and its connection."""
    module = load_handler("post_confirmation", dsn)
    events = [event(n) for n in range(count + WARM + SPARE)]
    return (lambda n: module.handler(events[n], None)), module.DATABASE.connection()


def raw_side(dsn: str, count: int):
    """step(n): the same two rows in one transaction, by hand: no locks, no link, no
    upsert; and its connection."""
    import psycopg

    conn = psycopg.connect(dsn)
    rows = [(f"raw.user.{n}@example.com", str(uuid.uuid4()))
            for n in range(count + WARM + SPARE)]

    def step(n: int) -> None:
        with conn.transaction():
            profile = conn.execute(
                "INSERT INTO profiles (email, cognito_user_id, display_name, language, role) "
                "VALUES (%s, %s, %s, 'de', 'owner') RETURNING id",
                (*rows[n], "Raw User")).fetchone()[0]
            conn.execute("INSERT INTO private_profiles (user_id, first_name, last_name, phone) "
                         "VALUES (%s, %s, %s, %s)", (profile, "Raw", "User", "+49151"))

    return step, conn


def round_trips(conn, step: Callable[[int], object], n: int) -> int:
    """How many round trips step(n) makes on `conn`: the answers that end with
    ReadyForQuery in libpq's trace of the protocol."""
    from psycopg import pq

    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            step(n)
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        return sum("\tReadyForQuery\t" in line for line in trace)


def measure(sides: dict, count: int, turn: int = TURN) -> tuple[dict, dict]:
    """Each side's latencies (`interleaved`) and round trips for one more call; `sides`
    maps a name to (step, connection). The handlers' log lines are not measured."""
    steps = {name: step for name, (step, _) in sides.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        latencies = interleaved(steps, count, turn)
        trips = {name: round_trips(conn, step, count + WARM)
                 for name, (step, conn) in sides.items()}
    for _, conn in sides.values():
        conn.close()
    return latencies, trips


COLD = r"""
import importlib.util, json, sys, time, io, contextlib
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("cold", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    module.handler(json.loads(sys.argv[2]), None)
first = time.perf_counter()
print(json.dumps({"import_ms": (imported - started) * 1000, "first_ms": (first - imported) * 1000}))
"""


def cold_start(dsn: str, runs: int = 5) -> tuple[float, float]:
    imports, firsts = [], []
    for n in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", COLD, str(REPO / "lambdas" / "post_confirmation" / "handler.py"),
             json.dumps(event(10_000_000 + n))],
            env={**os.environ, "DB_DSN": dsn, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, check=True)
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        imports.append(figures["import_ms"])
        firsts.append(figures["first_ms"])
    return sorted(imports)[runs // 2], sorted(firsts)[runs // 2]


def describe(label: str, latencies: list[float], unit: str = "/s") -> float:
    rate = len(latencies) / sum(latencies)
    print(f"{label:<38} {rate:8.0f} {unit:<10} p50 {percentile(latencies, 50) * 1000:6.2f} ms   "
          f"p99 {percentile(latencies, 99) * 1000:6.2f} ms")
    return rate


def ratio(label: str, ratio: float, goal: float = GOAL) -> None:
    verdict = "met" if ratio >= goal else "NOT met"
    print(f"{label:<38} {ratio:8.2f} x the raw rate   (goal >= {goal}x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--confirmations", type=int, default=1000)
    args = parser.parse_args()
    count = args.confirmations
    with server() as (uri, where):
        print(f"machine: {machine()}; PostgreSQL: {where}; {count} confirmations a side, "
              f"each side on its own warm connection, in turns of {TURN}")
        latencies, trips = measure({"handler": handler_side(fresh_database(uri), count),
                                    "raw": raw_side(fresh_database(uri), count)}, count)
        rate = describe("post_confirmation handler", latencies["handler"])
        raw_rate = describe("raw psycopg two-row transaction", latencies["raw"])
        ratio("handler / raw", rate / raw_rate)
        print(f"{'round trips a confirmation':<38} handler {trips['handler']}, "
              f"raw {trips['raw']}")
        imported, first = cold_start(fresh_database(uri))
        print(f"{'cold start':<38} import {imported:6.1f} ms, first invocation (connect + "
              f"write) {first:6.1f} ms (median of 5 new processes)")


if __name__ == "__main__":
    main()
