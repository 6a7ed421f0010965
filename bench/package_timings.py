"""Print how long runbook.functions.package takes: each function package, a cold layer and a cached one.

    /tmp/venv/bin/python bench/package_timings.py [--runtime python3.11] [--no-pip-cache]

The layer is built into a temporary cache directory, so the user's cache is untouched.
"Cold" means no runbook cache entry; pip's own download cache still applies unless
--no-pip-cache is given (then every wheel is downloaded again). Needs the network.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import contextmanager

from runbook.functions import package


@contextmanager
def timed(label: str):
    start = time.perf_counter()
    result = {}
    yield result
    seconds = time.perf_counter() - start
    print(f"{label:<40} {seconds:8.3f} s  {result.get('note', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.11")
    parser.add_argument("--no-pip-cache", action="store_true")
    args = parser.parse_args()
    if args.no_pip_cache:
        os.environ["PIP_NO_CACHE_DIR"] = "1"
    for name in package.function_names():
        with timed(f"function {name}") as out:
            artifact = package.build_function(name)
            out["note"] = f"{artifact.size / 1e3:.1f} kB, {len(artifact.files)} files"
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as cache:
        with timed(f"layer {args.runtime}, cold") as out:
            layer = package.build_layer(args.runtime, cache_dir=cache)
            out["note"] = f"{layer.size / 1e6:.1f} MB, {len(layer.files)} files"
        with timed(f"layer {args.runtime}, cached") as out:
            again = package.build_layer(args.runtime, cache_dir=cache)
            out["note"] = f"cached={again.cached}"


if __name__ == "__main__":
    main()
