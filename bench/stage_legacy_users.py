"""Staging throughput of phase a5 in the sandbox: legacy users from PostgreSQL through
the producer, the Kafka broker and the loader into the hash table.

    python bench/stage_legacy_users.py [--users 10000]

Makes a legacy database of --users users on an embedded PostgreSQL (or RUNBOOK_PG_DSN)
and runs `runbook run --phase a5 --dry-run` on it, as an operator would with
LEGACY_DATABASE_URL set, in a new process. All figures come from that one run's
stage-legacy-users report:

- produce: users produced to the topic (acks from all replicas, idempotent) a second;
- load: users stored by the loader a second, from the last acknowledgement until the
  table held every user (the poller's group join, its batches of 100 invoking the loader
  in a new local process each, BatchWriteItem against moto);
- end to end: users a second from the first record produced to the last one stored.

The hashes are bcrypt-shaped strings, not real bcrypt: hashing 10,000 passwords at cost
10 would take minutes and measures nothing the pipeline does. A few users are made
without a hash or a confirmed address, so that the skipped counts show too.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, report, runbook, workdir  # noqa: E402

BCRYPT = string.ascii_letters + string.digits + "./"
SCHEMA = REPO / "runbook" / "sandbox" / "legacy_supabase.sql"


def legacy_rows(count: int, seed: int = 7) -> list[tuple]:
    """(id, email, hash or None, confirmed, full name, role, language) for `count` users:
    every 500th without a hash (an OAuth-only sign-in), every 700th unconfirmed."""
    import uuid

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        hashed = "$2a$10$" + "".join(rng.choice(BCRYPT) for _ in range(53))
        rows.append((str(uuid.UUID(int=rng.getrandbits(128))), f"user{i:05d}@example.com",
                     None if i % 500 == 499 else hashed, i % 700 != 699, f"User {i}",
                     "admin" if i % 50 == 0 else "user", rng.choice(("de", "en"))))
    return rows


def make_legacy_database(server_dsn: str, count: int) -> str:
    """A database on `server_dsn` with the Supabase-era schema and `count` users."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = "bench_legacy"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(server_dsn, dbname=name)
    now = datetime.now(timezone.utc)
    ddl = "\n".join(line for line in SCHEMA.read_text().splitlines()
                    if not line.startswith("INSERT"))
    with psycopg.connect(dsn) as conn:
        conn.execute(ddl)
        with conn.cursor() as cur:
            with cur.copy("COPY auth.users (id, email, encrypted_password, email_confirmed_at, "
                          "raw_user_meta_data) FROM STDIN") as copy:
                for uid, email, hashed, confirmed, full_name, _, _ in legacy_rows(count):
                    copy.write_row((uid, email, hashed, now if confirmed else None,
                                    json.dumps({"full_name": full_name})))
            with cur.copy("COPY public.profiles (id, email, role, language) FROM STDIN") as copy:
                for uid, email, _, _, _, role, language in legacy_rows(count):
                    copy.write_row((uid, email, role, language))
    return dsn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()

    import os

    with tempfile.TemporaryDirectory(prefix="runbook-bench-pg-") as tmp:
        server, pg = os.environ.get("RUNBOOK_PG_DSN"), None
        if not server:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver

                pg = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
            server = pg.get_uri()
        try:
            legacy = make_legacy_database(server, args.users)
            with workdir() as cwd:
                seconds, proc = runbook("run", "--phase", "a5", "--dry-run", cwd=cwd,
                                        env={"LEGACY_DATABASE_URL": legacy})
                if proc.returncode != 0:
                    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
                    return 1
                data = report(cwd, "a5", dry_run=True)
        finally:
            if pg is not None:
                pg.cleanup()

    [stage] = [s for s in data["steps"] if s["name"] == "stage-legacy-users"]
    out = stage["outputs"]
    produced, produce_s, store_s = out["produced"], out["produce_s"], out["store_s"]
    print(f"machine: {machine()}")
    print(f"legacy users: {args.users} ({out['users']} with a hash to stage; skipped "
          f"{json.dumps(out['skipped'], sort_keys=True)})")
    print(f"staged: planned {out['planned']}, produced {produced}, stored {out['stored']}")
    print(f"produce     {produced / produce_s:9.0f} users/s   ({produce_s:.2f} s)")
    batches = -(-produced // 100)   # legacy.loader_batch_size in config/prod.yaml
    print(f"load        {produced / store_s:9.0f} users/s   ({store_s:.2f} s after the "
          f"last acknowledgement; about {batches} loader invocations, {store_s / batches:.2f} "
          "s each, a new local process each)")
    print(f"end to end  {produced / (produce_s + store_s):9.0f} users/s   "
          f"({produce_s + store_s:.2f} s; the step took {stage['duration_ms'] / 1000:.2f} s with "
          "its reads)")
    print(f"whole dry run of a1..a5 and its verify pass: {seconds:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
