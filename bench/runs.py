"""Wall time and AWS calls of whole runs, as an operator starts them.

    python bench/runs.py [--repeat 3]

- `runbook run --phase a1` against an empty moto server, then the same run again
  (the no-op re-run): wall time, AWS calls read and write;
- `runbook run --phase a3 --dry-run`: wall time, and the time of each step;
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

from _common import calls, machine, moto_server, report, runbook, workdir  # noqa: E402


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


def a3_dry_run(repeat: int) -> None:
    runs = []
    for _ in range(repeat):
        with workdir() as cwd:
            seconds, proc = runbook("run", "--phase", "a3", "--dry-run", cwd=cwd)
            assert proc.returncode == 0, proc.stderr
            runs.append((seconds, report(cwd, "a3", dry_run=True)))
    runs.sort(key=lambda run: run[0])
    seconds, data = runs[len(runs) // 2]
    print(f"{'a3 dry run':<32} {seconds:6.2f} s wall (median of {repeat})")
    steps = 0
    for step in data["steps"]:
        steps += step["duration_ms"]
        print(f"  {step['name']:<30} {step['duration_ms'] / 1000:6.2f} s")
    verify = sum(step["duration_ms"] for step in data["verify_pass"]["steps"])
    print(f"  {'verify pass':<30} {verify / 1000:6.2f} s")
    rest = seconds - (steps + verify) / 1000
    print(f"  {'sandbox, start-up, report':<30} {rest:6.2f} s")


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
