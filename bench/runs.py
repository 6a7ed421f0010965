"""Wall time and AWS calls of whole runs, as an operator starts them.

    python bench/runs.py [--repeat 3]

- `runbook run --phase a1` against an empty moto server, then the same run again
  (the no-op re-run): wall time, AWS calls read and write;
- `runbook run --phase a3 --dry-run`: wall time beside issue 19's goal (5 s), where
  it went (from when the run printed its lines: start-up, the sandbox, the preflight,
  the steps, the verify pass, teardown), and the time of each step;
- `runbook --help`: wall time.

Each figure is the median of --repeat runs, each in a new process. The moto server runs
in this process; the runs talk to it over HTTP as they would to AWS.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (calls, machine, moto_server, report, runbook,  # noqa: E402
                     runbook_timed, workdir)


def a1_live(repeat: int) -> None:
    fresh, again = [], []
    for _ in range(repeat):
        with moto_server() as url, workdir() as cwd:
            env = {"AWS_ENDPOINT_URL": url}
            seconds, proc = runbook("run", "--phase", "a1", cwd=cwd, env=env)
            assert proc.returncode == 0, proc.stderr
            fresh.append((seconds, report(cwd, "a1")))
            seconds, proc = runbook("run", "--phase", "a1", cwd=cwd, env=env)
            assert proc.returncode == 0, proc.stderr
            again.append((seconds, report(cwd, "a1")))
    for label, runs in (("a1 fresh (moto server)", fresh), ("a1 no-op re-run", again)):
        wall = statistics.median(s for s, _ in runs)
        data = runs[0][1]
        print(f"{label:<32} {wall:6.2f} s wall   {calls(data, 'read'):4d} reads "
              f"{calls(data, 'write'):4d} writes")


# Issue 19's goal for `runbook run --phase a3 --dry-run`, the median of 3 new processes.
A3_GOAL_S = 5.0


def a3_dry_run(repeat: int) -> None:
    runs = []
    for _ in range(repeat):
        with workdir() as cwd:
            seconds, code, lines, stderr = runbook_timed("run", "--phase", "a3", "--dry-run",
                                                         cwd=cwd)
            assert code == 0, stderr + "\n".join(line for _, line in lines)
            runs.append((seconds, lines, report(cwd, "a3", dry_run=True)))
    runs.sort(key=lambda run: run[0])
    seconds, lines, data = runs[len(runs) // 2]
    verdict = "met" if seconds <= A3_GOAL_S else "missed"
    print(f"{'a3 dry run':<32} {seconds:6.2f} s wall (median of {repeat}: "
          f"{', '.join(f'{run[0]:.2f}' for run in runs)})   goal <= {A3_GOAL_S:g} s: {verdict}")
    for label, part, note in timeline(seconds, lines):
        print(f"  {label:<30} {part:6.2f} s{note}")
        if label == "steps":
            for step in data["steps"]:
                print(f"    {step['name']:<28} {step['duration_ms'] / 1000:6.2f} s")


def timeline(seconds: float, lines: list[tuple[float, str]]) -> list[tuple[str, float, str]]:
    """Where a run's wall time went, from when it printed its lines: (part, seconds,
    a note)."""
    def at(prefix: str) -> float:
        return next(t for t, line in lines if line.startswith(prefix))

    def ready(what: str) -> str:
        line = next(line for _, line in lines if line.startswith("sandbox: ") and what in line)
        return line.split("ready after ", 1)[1].split(" s", 1)[0]

    started = at("dry run of ")
    sandbox = max(t for t, line in lines if line.startswith("sandbox: "))
    preflight, verify, done = at("preflight: "), at("verify pass: the same steps"), at("ok: ")
    verified = max(t for t, _ in lines if t < done)
    side_by_side = (f"   (moto ready after {ready('moto server')} s, PostgreSQL "
                    f"after {ready('PostgreSQL')} s, side by side)")
    return [
        ("python, imports, config", started, ""),
        ("sandbox start-up", sandbox - started, side_by_side),
        ("preflight", preflight - sandbox, "   (account, region, plans read-only)"),
        ("steps", verify - preflight, ""),
        ("verify pass", verified - verify, ""),
        ("sandbox teardown, report", done - verified, ""),
        ("exit", seconds - done, ""),
    ]


def help_time(repeat: int) -> None:
    with workdir() as cwd:
        times = []
        for _ in range(max(repeat, 5)):
            seconds, proc = runbook("--help", cwd=cwd)
            assert proc.returncode == 0
            times.append(seconds)
    print(f"{'runbook --help':<32} {statistics.median(times):6.3f} s wall "
          f"(median of {len(times)}, a new Python process each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    a1_live(args.repeat)
    a3_dry_run(args.repeat)
    help_time(args.repeat)


if __name__ == "__main__":
    main()
