"""Time to mask and redact e-mail addresses in a huge text, and how it grows.

    python bench/emails.py [--size 200000] [--repeat 9]

A trigger may log an attribute of any length, and its log line goes through
runbook.lambda_runtime.db.redact_emails (and `runbook invoke` output through emails.mask),
within Cognito's 5 s. For each shape of text in which the address pattern used to
restart at every position (and for ordinary addresses), this prints the time of mask +
redact at --size characters and at ten times fewer (the fastest of --repeat runs), and
their ratio, measured in one run: about 10 where the work is linear, about 100 where it
is quadratic. The pattern before the fix (without its look-behind) is timed once at the
smaller size. tests/unit/test_emails.py checks the linearity by counting the
characters the pattern examines, not by time.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402

from runbook.lambda_runtime import emails  # noqa: E402
from runbook.lambda_runtime.db import redact_emails  # noqa: E402

SHAPES = {
    "letters": lambda n: "a" * n,
    "dotted": lambda n: "a." * (n // 2),
    "domain without a dot": lambda n: "x@" + "a-" * (n // 2),
    "addresses": lambda n: ("lena.maier@example.com, " * n)[:n],
}
# IN_TEXT before the look-behind was added.
BEFORE = re.compile(r"(?P<local>[\w.+-]+)@(?P<domain>(?:[\w-]+\.)+[\w-]+)")


def seconds(work, repeat: int) -> float:
    """The fastest of `repeat` runs: on a shared machine, the least disturbed one."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    large, small = args.size, args.size // 10
    print(f"machine: {machine()}")
    print(f"{'text':<22} {f'{small:,} chars':>14} {f'{large:,} chars':>14}   ratio"
          f"   {'before the fix, ' + f'{small:,} chars':>28}")
    for name, shape in SHAPES.items():
        short, long = shape(small), shape(large)
        t_small = seconds(lambda: (emails.mask(short), redact_emails(short)), args.repeat)
        t_large = seconds(lambda: (emails.mask(long), redact_emails(long)), args.repeat)
        t_before = seconds(lambda: BEFORE.sub("<e-mail>", short), 1)
        print(f"{name:<22} {t_small * 1000:11.2f} ms {t_large * 1000:11.2f} ms "
              f"{t_large / t_small:7.1f}   {t_before * 1000:25.1f} ms")


if __name__ == "__main__":
    main()
