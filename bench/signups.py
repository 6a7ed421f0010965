"""process_user_signup storing SQS batches of 10 `user.registered` messages against the
embedded PostgreSQL, next to a raw psycopg transaction inserting the same 10 rows on
the same server.

    python bench/signups.py [--batches 300]

Prints batches per second and p50/p99 latency of each, and their ratio beside its goal.
The handler's side is the whole invocation: reading the 10 messages, storing them (each
idempotent, in Cognito-id order, its outbox row deleted and its audit row written, a
row that fails rolled back alone) and the log lines. The raw side is one transaction of
10 plain INSERTs of the same columns, one round trip each; the same with executemany,
which psycopg pipelines into one round trip, is printed for reference. All run in the
same process, each on its own warm connection and its own database migrated by
fix-tables, in turns (bench/handler.py). `RUNBOOK_PG_DSN` points it at another server.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine  # noqa: E402
from handler import (SPARE, WARM, describe, fresh_database, load_handler,  # noqa: E402
                     measure, ratio, server)

FIXTURE = REPO / "tests" / "fixtures" / "events" / "sqs_user_registered_batch.json"
BATCH = 10      # SQS's default BatchSize, and the batch
TURN = 10       # batches a side stores before the other side's turn


def batch_event(n: int, record: dict) -> dict:
    """Batch n: BATCH messages of distinct users, as EventBridge puts them on the queue."""
    records = []
    for i in range(BATCH):
        user = n * BATCH + i
        message = copy.deepcopy(record)
        message["messageId"] = str(uuid.UUID(int=user + 1))
        envelope = json.loads(message["body"])
        envelope["detail"].update(cognito_user_id=f"bench-{user:08d}",
                                  email=f"bench.user.{user}@example.com")
        message["body"] = json.dumps(envelope)
        records.append(message)
    return {"Records": records}


def handler_side(dsn: str, count: int):
    module = load_handler("process_user_signup", dsn)
    record = json.loads(FIXTURE.read_text())["Records"][0]
    events = [batch_event(n, record) for n in range(count + WARM + SPARE)]

    def step(n: int) -> None:
        answer = module.handler(events[n], None)
        assert answer == {"batchItemFailures": []}, answer

    return step, module.DATABASE.connection()


INSERT = ("INSERT INTO app.users (cognito_id, email, name, phone, email_verified) "
          "VALUES (%s, %s, %s, %s, %s)")


def raw_side(dsn: str, count: int, *, many: bool = False):
    """The same BATCH rows, inserted in one transaction, by hand: no ON CONFLICT, no
    outbox, no audit row, no savepoints. One INSERT a row, or, `many`, one executemany
    (which psycopg sends as one pipeline)."""
    import psycopg

    conn = psycopg.connect(dsn)
    tag = "many" if many else "raw"
    batches = [[(f"{tag}-{n * BATCH + i:08d}", f"{tag}.user.{n * BATCH + i}@example.com",
                 "Raw User", "+49151", True) for i in range(BATCH)]
               for n in range(count + WARM + SPARE)]

    def step(n: int) -> None:
        with conn.transaction():
            if many:
                conn.cursor().executemany(INSERT, batches[n])
            else:
                for row in batches[n]:
                    conn.execute(INSERT, row)

    return step, conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    count = args.batches
    with server() as (uri, where):
        print(f"machine: {machine()}; PostgreSQL: {where}; {count} batches of {BATCH} a side, "
              f"each side on its own warm connection, in turns of {TURN}")
        latencies, trips = measure({"handler": handler_side(fresh_database(uri), count),
                                    "raw": raw_side(fresh_database(uri), count),
                                    "many": raw_side(fresh_database(uri), count, many=True)},
                                   count, turn=TURN)
        rate = describe(f"process_user_signup, batch of {BATCH}", latencies["handler"],
                        "batches/s")
        raw_rate = describe(f"raw psycopg {BATCH}-row insert transaction", latencies["raw"],
                            "batches/s")
        many_rate = describe("  the same, with executemany", latencies["many"], "batches/s")
        ratio("handler / raw", rate / raw_rate)
        print(f"{'handler / raw with executemany':<38} {rate / many_rate:8.2f} x "
              "(for reference: psycopg pipelines executemany)")
        print(f"{'round trips a batch':<38} handler {trips['handler']}, raw {trips['raw']}, "
              f"with executemany {trips['many']}")


if __name__ == "__main__":
    main()
