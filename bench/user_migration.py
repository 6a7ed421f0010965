"""The UserMigration trigger's latency for a cost-10 bcrypt hash, warm and cold.

    python bench/user_migration.py [--invocations 200] [--cold-runs 5]

Warm: the real handler (lambdas/user_migration/handler.py), imported once, invoked
--invocations times in this process against moto's DynamoDB (mock_aws) for a user
staged with a `$2a$10$` hash, as GoTrue makes them: p50 and p99 of a successful sign-in,
and of the two refusals that must take the same time (an unknown address and a wrong
password), next to the bcrypt check alone.

Cold: the function's package (runbook.functions.package.build_function, with the
runtime library) unpacked into a temporary directory, and a new Python process (-I -S,
seeing only the package and site-packages, as Lambda sees /var/task and the layer)
that imports the handler and invokes it once against a moto server. Init (the process's
start and the import, Lambda's "Init Duration") and the first invocation (the first
GetItem's connection, the check) are timed apart; each is the median of --cold-runs
processes.

Cognito gives the trigger 5 s. Lambda gives a 1024 MB function about 0.6 of a vCPU, so a
check there takes longer than on one core of this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, moto_server, percentile  # noqa: E402

EVENT = REPO / "tests" / "fixtures" / "events" / "user_migration_authentication.json"
TABLE = "bench-legacy-user-hashes"
REGION = "eu-central-1"
ADDRESS = "legacy.owner@example.com"   # the fixture's userName
PASSWORD = "correct horse battery staple"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": REGION}


def event(user_name: str = ADDRESS, password: str = PASSWORD) -> dict:
    data = json.loads(EVENT.read_text())
    data["userName"] = user_name
    data["request"]["password"] = password
    return data


def stage(dynamodb, hashed: str) -> None:
    """The table, and the one legacy user in it, as the loader writes it."""
    from runbook.lambda_runtime.legacy_hashes import LegacyHash

    dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "email", "AttributeType": "S"}])
    user = LegacyHash(ADDRESS, hashed, {"display_name": "Lena Maier", "language": "de",
                                         "role": "owner"})
    dynamodb.put_item(TableName=TABLE, Item=user.to_item())


def timed(work, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        work()
        latencies.append(time.perf_counter() - started)
    return latencies


def refusing(handler, data: dict):
    def work():
        try:
            handler(data, None)
        except Exception as exc:  # noqa: BLE001 - the refusal is what is timed
            assert type(exc).__name__ == "MigrationRefused", exc
    return work


def warm(count: int, hashed: str) -> dict[str, list[float]]:
    import boto3
    from moto import mock_aws

    from runbook.lambda_runtime import migration

    os.environ.update(CREDENTIALS, HASH_TABLE=TABLE, CUSTOM_ATTRIBUTES="role")
    with mock_aws():
        stage(boto3.client("dynamodb", region_name=REGION), hashed)
        spec = importlib.util.spec_from_file_location(
            "bench_user_migration", REPO / "lambdas" / "user_migration" / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        signing_in = event()
        with contextlib.redirect_stdout(io.StringIO()):  # its log lines, not measured here
            answer = module.handler(event(), None)  # warm: the client's connection is open
            assert answer["response"]["finalUserStatus"] == "CONFIRMED"
            return {
                "sign-in, migrated": timed(lambda: module.handler(signing_in, None), count),
                "refused, unknown address": timed(
                    refusing(module.handler, event("nobody@example.com")), count),
                "refused, wrong password": timed(
                    refusing(module.handler, event(password="wrong horse battery staple")),
                    count),
                "bcrypt check alone (passlib)": timed(
                    lambda: migration.CONTEXT.verify(PASSWORD, hashed), count),
            }


COLD = r"""
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started = time.monotonic()
import handler
imported = time.monotonic()
answer = handler.handler(json.loads(sys.argv[2]), None)
called = time.monotonic()
assert answer["response"]["finalUserStatus"] == "CONFIRMED"
print(json.dumps({"started": started, "imported": imported, "called": called}))
"""


def cold(runs: int, hashed: str) -> tuple[float, float, float]:
    """Medians, in ms, of (process start + import, the import alone, first invocation)."""
    import boto3

    from runbook.functions import package

    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp, moto_server() as url:
        with zipfile.ZipFile(io.BytesIO(package.build_function("user_migration").data)) as zf:
            zf.extractall(tmp)
        stage(boto3.client("dynamodb", region_name=REGION, endpoint_url=url,
                           aws_access_key_id="bench", aws_secret_access_key="bench"), hashed)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
               **CREDENTIALS, "AWS_ENDPOINT_URL": url, "HASH_TABLE": TABLE,
               "CUSTOM_ATTRIBUTES": "role", "AWS_CONFIG_FILE": os.devnull,
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        path = json.dumps([tmp, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        inits, imports, firsts = [], [], []
        for _ in range(runs):
            spawned = time.monotonic()
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", COLD, path, json.dumps(event())],
                                  env=env, cwd=tmp, capture_output=True, text=True, check=True)
            # CLOCK_MONOTONIC is the machine's: the child's readings compare with ours.
            times = json.loads(proc.stdout.strip().splitlines()[-1])
            inits.append((times["imported"] - spawned) * 1000)
            imports.append((times["imported"] - times["started"]) * 1000)
            firsts.append((times["called"] - times["imported"]) * 1000)
    return statistics.median(inits), statistics.median(imports), statistics.median(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=200)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    import bcrypt

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()
    print(f"machine: {machine()}; bcrypt {bcrypt.__version__}, hash $2a$10$; moto DynamoDB; "
          f"{args.invocations} warm invocations each, sequential")
    for label, latencies in warm(args.invocations, hashed).items():
        print(f"{label:<30} p50 {percentile(latencies, 50) * 1000:7.1f} ms   "
              f"p99 {percentile(latencies, 99) * 1000:7.1f} ms")
    init, imported, first = cold(args.cold_runs, hashed)
    print(f"{'cold start':<30} init {init:6.1f} ms (import {imported:5.1f} ms), first "
          f"invocation {first:6.1f} ms (median of {args.cold_runs} new processes)")


if __name__ == "__main__":
    main()
