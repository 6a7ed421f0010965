"""The full crash-consistency sweep: fail every write of an a1..a5 run, run again, compare.

    python bench/crash_sweep.py                # every point
    python bench/crash_sweep.py --ci           # the sample tests/integration runs
    python bench/crash_sweep.py --k 1 --k 25 --kind response-lost-retried

For each point (a write number k and a fault kind, see runbook/sandbox/sweep.py) it prints one
line, then the figures per fault kind: points tried, converged, duplicates, orphans,
resources missing or configured differently, and second runs that failed. The exit code
is 0 when every point converged, 1 otherwise. It starts its own sandbox (a moto server
and an embedded PostgreSQL) and touches no AWS account.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runbook from this checkout, installed or not

from runbook import config as config_mod  # noqa: E402
from runbook.output.progress import Progress  # noqa: E402
from runbook.sandbox.stack import Sandbox  # noqa: E402
from runbook.sandbox import sweep  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "prod.yaml"))
    parser.add_argument("--ci", action="store_true", help="only the CI sample")
    parser.add_argument("--k", type=int, action="append", help="only these write numbers")
    parser.add_argument("--kind", action="append", choices=sweep.KINDS,
                        help="only these fault kinds (with --k: every kind given, at each k)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    config = config_mod.load(args.config)
    with Sandbox(Progress(quiet=True)) as box:
        account = sweep.Account.of(box)
        clean = sweep.baseline(config, account)
        print(f"clean run: {len(clean.writes)} writes outside the tests, "
              f"{clean.seconds:.1f} s", flush=True)
        if args.k:
            points = [sweep.Point(k, kind) for k in args.k for kind in (args.kind or sweep.KINDS)
                      if kind != sweep.UNTAGGED or clean.write(k).call in sweep.LEFTOVERS]
        else:
            points = sweep.ci_points(clean) if args.ci else sweep.every_point(clean)
            if args.kind:
                points = [p for p in points if p.kind in args.kind]
        started = time.monotonic()
        outcomes = sweep.sweep(config, account, clean, points, on_point=_print_point)
        seconds = time.monotonic() - started
    print()
    print(sweep.render(clean, outcomes, seconds))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "writes": len(clean.writes), "writes_per_step": clean.per_step(),
            "inventory": clean.inventory.counts(), "seconds": round(seconds, 1),
            "figures": sweep.figures(outcomes),
            "not_converged": [o.describe() for o in outcomes if not o.converged]}, indent=2))
    return 0 if all(o.converged for o in outcomes) else 1


def _print_point(outcome: sweep.Outcome) -> None:
    verdict = "converged" if outcome.converged else "NOT CONVERGED"
    print(f"{str(outcome.point):<28} {outcome.write.call:<38} {outcome.write.step:<25} "
          f"{verdict} ({outcome.seconds:.1f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
