"""The database side of fix-tables' migrations: the ledger of what ran
(`runbook.schema_migrations`), the advisory lock runners serialise on, and applying one
migration together with its ledger row.

runbook renders the migrations from their templates (runbook.database.migrations); everything
that talks to PostgreSQL about them is here, so that runbook connecting directly
(`database.connect: direct`) and the db_migrate function inside the VPC
(`database.connect: lambda`) run the same code. Standard library and psycopg only.

A migration's checksum is the sha256 of its rendered SQL, so the ledger records exactly
what ran. A migration whose checksum differs from the recorded one was edited after it
ran: that is an error, never a silent re-run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

TABLE = "runbook.schema_migrations"
# pg_advisory_lock key: the bytes of "runbook" read as an integer. Advisory locks are
# scoped to one database, so runners on different databases never wait for each other.
LOCK_KEY = int.from_bytes(b"runbook", "big")
# A DDL statement waiting for a busy table blocks every query queued behind it: give up
# after this long instead, with nothing changed.
DDL_LOCK_TIMEOUT_S = 10


@dataclass(frozen=True)
class Applied:
    """One ledger row."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True)
class Comparison:
    """Migrations (version -> checksum) against the ledger, each list in version order."""

    pending: tuple[int, ...]      # not in the ledger yet
    edited: tuple[int, ...]       # in the ledger with another checksum
    unknown: tuple[int, ...]      # in the ledger, but not among the migrations compared

    @property
    def consistent(self) -> bool:
        return not (self.edited or self.unknown)


class Edited(Exception):
    """The ledger records the migration with another checksum: it changed after it ran."""

    def __init__(self, recorded: Applied, checksum: str):
        self.recorded, self.checksum = recorded, checksum
        super().__init__(
            f"migration {recorded.version:04d}_{recorded.name} was changed after it was "
            f"applied on {recorded.applied_at:%Y-%m-%d %H:%M} UTC (recorded sha256 "
            f"{recorded.checksum[:12]}, now {checksum[:12]})")


class Unknown(Exception):
    """The ledger records a migration that is not among those given: the database is
    newer than the code that sent them."""

    def __init__(self, recorded: Applied):
        self.recorded = recorded
        super().__init__(f"the database records migration {recorded.version:04d}_"
                         f"{recorded.name}, which is not among the migrations given")


def checksum(sql: str) -> str:
    """What the ledger records of a migration: the sha256 of its rendered SQL."""
    return hashlib.sha256(sql.encode()).hexdigest()


def quote_ident(name: str) -> str:
    """An SQL identifier, always double-quoted: no reserved word can break it."""
    return '"' + name.replace('"', '""') + '"'


def compare(checksums: Mapping[int, str], applied: Mapping[int, Applied]) -> Comparison:
    return Comparison(
        pending=tuple(v for v in sorted(checksums) if v not in applied),
        edited=tuple(v for v in sorted(applied)
                     if v in checksums and checksums[v] != applied[v].checksum),
        unknown=tuple(v for v in sorted(applied) if v not in checksums))


def pending(checksums: Mapping[int, str], applied: Mapping[int, Applied]) -> tuple[int, ...]:
    """The versions to apply, in order. Raises Edited or Unknown for the first applied
    migration (by version) that was edited or is not among `checksums`."""
    found = compare(checksums, applied)
    for version in sorted(found.edited + found.unknown):
        if version in found.unknown:
            raise Unknown(applied[version])
        raise Edited(applied[version], checksums[version])
    return found.pending


# -- reading (no writes) -----------------------------------------------------------------

def table_exists(conn) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]


def read_applied(conn) -> dict[int, Applied]:
    """The ledger; {} before the first migration."""
    if not table_exists(conn):
        return {}
    rows = conn.execute(f"SELECT version, name, checksum, applied_at FROM {TABLE} "
                        "ORDER BY version").fetchall()
    return {row[0]: Applied(*row) for row in rows}


def lock_holder(conn) -> str:
    """Who holds the migration lock, for a message: a backend pid and its client."""
    row = conn.execute(
        "SELECT l.pid, a.application_name, a.client_addr::text FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s::bigint & 4294967295 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (LOCK_KEY,)).fetchone()
    if row is None:
        return "another session"
    pid, app, addr = row
    return f"backend pid {pid} ({app or 'unknown client'}{', from ' + addr if addr else ''})"


# -- the lock (session-level: released by unlock or when the connection closes) -----------

def try_lock(conn) -> bool:
    """Take the migration lock if it is free."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]


def lock(conn, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the migration lock; False when it stayed taken.

    The wait happens in PostgreSQL: lock_timeout bounds pg_advisory_lock like any other
    lock wait, so a caller with a hard deadline (a Lambda function) needs no polling.
    """
    import psycopg

    conn.execute("SELECT set_config('lock_timeout', %s, false)",
                 (f"{max(1, int(timeout_s * 1000))}ms",))
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        return True
    except psycopg.errors.LockNotAvailable:
        return False
    finally:
        conn.execute("RESET lock_timeout")


def unlock(conn) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


# -- writing (under the lock) ------------------------------------------------------------

def ensure_table(conn) -> None:
    """Create the ledger. Called under the lock, and only when it is missing."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS runbook")
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        applied_by text NOT NULL DEFAULT current_user)""")


def apply(conn, version: int, name: str, sql: str, checksum: str, *,
          lock_timeout_s: int = DDL_LOCK_TIMEOUT_S) -> bool:
    """Run `sql` and add its ledger row, in one transaction; hold the lock first.

    Returns False when the ledger shows it applied already (by another runner that held
    the lock before us), True when this call applied it. Raises Edited when the ledger
    has it with another checksum.
    """
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'")
        row = conn.execute(f"SELECT checksum, applied_at, name FROM {TABLE} WHERE version = %s",
                           (version,)).fetchone()
        if row is not None:
            if row[0] != checksum:
                raise Edited(Applied(version, row[2], row[0], row[1]), checksum)
            return False
        conn.execute(sql)
        conn.execute(f"INSERT INTO {TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                     (version, name, checksum))
    return True
