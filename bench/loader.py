"""The legacy loader's round trips: BatchWriteItem calls for MSK events of legacy users,
next to the fewest DynamoDB allows, and its rate against moto's DynamoDB.

    python bench/loader.py [--events 10] [--records 100]

Invokes the real handler (lambdas/legacy_loader/handler.py), imported once, with
--events events of --records records each (distinct users, two partitions, as the MSK
mapping hands them over, 100 a batch by default) against moto's DynamoDB (mock_aws,
in-process). BatchWriteItem takes at most 25 items a call (AWS-FACTS C), so an event of
n distinct e-mails needs ceil(n / 25) calls at least: the loader's calls are printed
beside that floor. The rate is records a second through the handler, moto's own work
included; against DynamoDB each call is a network round trip.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine  # noqa: E402

TABLE = "bench-legacy-user-hashes"
TOPIC = "legacy-users"
BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def value(n: int) -> str:
    """Record n's base64 value: a user with a bcrypt-shaped hash (not a real one)."""
    digest = hashlib.sha512(str(n).encode()).digest()
    user = {"email": f"legacy.user{n:06d}@example.com",
            "hash": "$2a$10$" + "".join(BCRYPT[b % 64] for b in digest[:53]),
            "profile": {"display_name": f"Legacy User {n}", "language": "de", "role": "owner"}}
    return base64.b64encode(json.dumps(user).encode()).decode()


def msk_event(first: int, count: int) -> dict:
    """Records first .. first+count-1, alternately in two partitions."""
    partitions: dict[str, list] = {f"{TOPIC}-0": [], f"{TOPIC}-1": []}
    for n in range(first, first + count):
        partitions[f"{TOPIC}-{n % 2}"].append(
            {"topic": TOPIC, "partition": n % 2, "offset": n, "timestamp": 1756390000000,
             "timestampType": "CREATE_TIME", "key": base64.b64encode(str(n).encode()).decode(),
             "value": value(n), "headers": []})
    return {"eventSource": "aws:kafka", "records": partitions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--records", type=int, default=100)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="eu-central-1", HASH_TABLE=TABLE)
    os.environ.pop("AWS_PROFILE", None)

    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "email", "AttributeType": "S"}])
        spec = importlib.util.spec_from_file_location(
            "bench_legacy_loader", REPO / "lambdas" / "legacy_loader" / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        calls = []
        module.CLIENT.meta.events.register("before-call.dynamodb.BatchWriteItem",
                                           lambda **_: calls.append(1))
        events = [msk_event(e * args.records, args.records) for e in range(args.events)]
        with contextlib.redirect_stdout(io.StringIO()):  # its log lines, not measured here
            started = time.perf_counter()
            for event in events:
                module.handler(event, None)
            took = time.perf_counter() - started
    records = args.events * args.records
    floor = args.events * math.ceil(args.records / 25)
    print(f"machine: {machine()}; moto DynamoDB in-process; {args.events} events of "
          f"{args.records} records (distinct users)")
    print(f"{'BatchWriteItem calls':<38} {len(calls):8d}   floor {floor} "
          f"(ceil({args.records} / 25) an event)   {len(calls) / args.events:.1f} an event")
    print(f"{'legacy loader':<38} {records / took:8.0f} records/s")


if __name__ == "__main__":
    main()
