"""Versioned, checksummed SQL migrations: render them, compare them with what the
database has applied, and apply what is pending.

A migration is a jinja2 template `templates/sql/NNNN_name.sql.j2`, rendered with values
from the environment file (the schema, the role names). Its checksum is the sha256 of
the rendered SQL, so the database records exactly what ran. An applied migration whose
rendering has changed is an error, never a silent re-run: migrations are append-only.

Each migration runs in its own transaction, together with the row that records it, so
a failure leaves neither half a migration nor a record of one. Runners serialise on a
PostgreSQL advisory lock, and re-read the record under it, so a migration runs once
even when two runners start at the same moment.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runbook.errors import BadInput

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "sql"
TABLE = "runbook.schema_migrations"
# pg_advisory_lock key: the bytes of "runbook" read as an integer. Advisory locks are
# scoped to one database, so runners on different databases never wait for each other.
LOCK_KEY = int.from_bytes(b"runbook", "big")
FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql\.j2$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str = field(repr=False)
    checksum: str = ""

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime


class MigrationEdited(BadInput):
    def __init__(self, migration: Migration, applied: Applied):
        super().__init__(
            f"{_shown(migration.path)} was changed after it was applied on "
            f"{applied.applied_at:%Y-%m-%d %H:%M} UTC (recorded sha256 {applied.checksum[:12]}, "
            f"now {migration.checksum[:12]}). It was not re-run, and nothing was changed. "
            "Applied migrations are append-only: restore the file (and the environment-file "
            "values it renders, such as database.schema) and put the change in a new migration."
        )


def load(params: dict, directory: Path | None = None) -> list[Migration]:
    """Every migration in `directory` (templates/sql), rendered with `params`, in order."""
    import jinja2

    directory = directory or TEMPLATES
    if not directory.is_dir():
        raise BadInput(f"migrations directory {directory} does not exist; runbook is "
                       "installed without its templates/ folder")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(directory),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["ident"] = quote_ident
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql.j2")):
        match = FILENAME.match(path.name)
        if not match:
            raise BadInput(f"{_shown(path)}: a migration is named NNNN_name.sql.j2 "
                           "(four digits, then lower-case letters, digits and _)")
        version = int(match.group(1))
        if version in migrations:
            raise BadInput(f"{_shown(path)} and {migrations[version].filename} share version "
                           f"{version:04d}; give one of them the next free number")
        try:
            sql = env.get_template(path.name).render(**params)
        except jinja2.TemplateSyntaxError as exc:
            raise BadInput(f"{_shown(path)}:{exc.lineno}: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise BadInput(f"{_shown(path)}: {exc.message}; the template may use only "
                           f"{', '.join(sorted(params))}") from None
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        migrations[version] = Migration(version, match.group(2), path, sql, checksum)
    return [migrations[v] for v in sorted(migrations)]


def quote_ident(name: str) -> str:
    """An SQL identifier, always double-quoted: no reserved word can break it."""
    return '"' + name.replace('"', '""') + '"'


# -- what the database has applied ---------------------------------------------------

def table_exists(conn) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]


def read_applied(conn) -> dict[int, Applied]:
    """The migrations recorded in the database; {} before the first one (read-only)."""
    if not table_exists(conn):
        return {}
    rows = conn.execute(f"SELECT version, name, checksum, applied_at FROM {TABLE} "
                        "ORDER BY version").fetchall()
    return {row[0]: Applied(*row) for row in rows}


def check(migrations: list[Migration], applied: dict[int, Applied]) -> list[Migration]:
    """The pending migrations. Raises when an applied one was edited or is missing."""
    by_version = {m.version: m for m in migrations}
    for version, record in applied.items():
        migration = by_version.get(version)
        if migration is None:
            raise BadInput(f"the database records migration {version:04d}_{record.name}, "
                           f"which is not in {_shown(TEMPLATES)}: this runbook is older "
                           "than the database. Update runbook before running fix-tables.")
        if migration.checksum != record.checksum:
            raise MigrationEdited(migration, record)
    return [m for m in migrations if m.version not in applied]


# -- applying --------------------------------------------------------------------------

def try_lock(conn) -> bool:
    """Take the session-level migration lock if it is free (released on close)."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]


def unlock(conn) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def lock_holder(conn) -> str:
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


def ensure_table(conn) -> None:
    """Create the record table. Called under the lock, and only when it is missing."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS runbook")
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        applied_by text NOT NULL DEFAULT current_user)""")


def apply(conn, migration: Migration, *, lock_timeout_s: int = 10) -> bool:
    """Apply `migration` in one transaction with its record; hold the lock first.

    Returns False when the record shows it was already applied (by another runner that
    held the lock before us), True when this call applied it.
    """
    with conn.transaction():
        # A DDL statement waiting for a busy table blocks every query queued behind it:
        # give up after a few seconds instead, with nothing changed.
        conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'")
        row = conn.execute(f"SELECT checksum, applied_at, name FROM {TABLE} WHERE version = %s",
                           (migration.version,)).fetchone()
        if row is not None:
            if row[0] != migration.checksum:
                raise MigrationEdited(migration, Applied(migration.version, row[2], row[0], row[1]))
            return False
        conn.execute(migration.sql)
        conn.execute(f"INSERT INTO {TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                     (migration.version, migration.name, migration.checksum))
    return True


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        pass
    try:
        return str(path.relative_to(TEMPLATES.parent.parent))
    except ValueError:
        return str(path)
