"""The destroy's crash sweep: fail every write of a whole a1..a5 destroy, run it again,
and check that nothing of the environment is left.

    python bench/destroy_sweep.py                 # every write a point
    python bench/destroy_sweep.py --stride 4      # the sample tests/integration runs

It builds the environment once in its own sandbox (a moto server, an embedded PostgreSQL
and a Kafka broker; no AWS account is touched), then walks the chain of destroys
runbook/sandbox/destroy_sweep.py describes, printing one line a point, then the figures:
points, faults by kind, what is left of the environment, and the verify destroy's
writes. The exit code is 0 when the chain ended with nothing left, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runbook from this checkout, installed or not

from runbook import config as config_mod  # noqa: E402
from runbook.output.progress import Progress  # noqa: E402
from runbook.resources.base import DeleteOptions  # noqa: E402
from runbook.sandbox import destroy_sweep, sweep  # noqa: E402
from runbook.sandbox.stack import Sandbox  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "staging.yaml"))
    parser.add_argument("--stride", type=int, default=1, help="only every n-th write")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    config = config_mod.load(args.config)
    with Sandbox(Progress(quiet=True)) as box:
        account = sweep.Account.of(box)
        account.reset()
        started = time.monotonic()
        built = sweep.run(config, account)
        failed = [f"{r.name}: {r.error}" for r in built if not r.ok]
        if failed:
            print(f"the build failed: {failed[0]}")
            return 1
        print(f"built {config.env} (a1..a5) in {time.monotonic() - started:.1f} s", flush=True)
        result = destroy_sweep.sweep(config, account, DeleteOptions(final_snapshot_stamp="sweep"),
                                     stride=args.stride, on_attempt=_print)
    kinds = Counter(a.kind for a in result.attempts)
    figures = {"points": len(result.attempts), "last_write": result.writes,
               "by_kind": dict(kinds), "left": result.left,
               "verify_writes": result.verify_writes, "stuck": result.stuck,
               "seconds": round(result.seconds, 1), "converged": result.converged}
    print()
    print(f"{figures['points']} points over writes 1..{result.writes} "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) in "
          f"{result.seconds:.0f} s")
    print(f"left of {config.env} after the chain: {result.left or 'nothing'}; "
          f"verify destroy: {result.verify_writes} writes")
    if result.stuck:
        print(f"STUCK: {result.stuck}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if result.converged else 1


def _print(attempt: destroy_sweep.Attempt) -> None:
    print(f"k={attempt.k:<4} {attempt.kind:<22} {attempt.call or '-':<40} "
          f"{'stopped' if attempt.error else 'WENT ON'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
