"""Reading the legacy users from the Supabase-era PostgreSQL: GoTrue's auth.users and the
app's public.profiles.

One query, in a read-only transaction: the producer must never write to the database it
migrates from, and READ ONLY makes PostgreSQL refuse it should a statement ever try.
Every user is read (those that will be skipped too), so that the report can count them
by reason; what to do with each row is decided by runbook.legacy.users, not here.

What is read of a user: the address, the hash (GoTrue's `encrypted_password`: NULL or ''
for a user who only ever signed in with OAuth), whether the address was confirmed, the
display name GoTrue keeps in raw_user_meta_data.full_name, and the profile's role and
language (NULL when the user has no profile row).
"""

from __future__ import annotations

from dataclasses import dataclass

QUERY = """
SELECT u.email,
       u.encrypted_password,
       u.email_confirmed_at IS NOT NULL AS confirmed,
       u.raw_user_meta_data ->> 'full_name' AS display_name,
       p.role,
       p.language
  FROM auth.users AS u
  LEFT JOIN public.profiles AS p ON p.id = u.id
 ORDER BY u.created_at, u.id
"""

CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Row:
    """One auth.users row as read, before any decision."""

    email: str | None
    encrypted_password: str | None
    confirmed: bool
    display_name: str | None = None
    role: str | None = None
    language: str | None = None


class BadDsn(ValueError):
    """The DSN is not one libpq can parse. The message never quotes it: libpq's does,
    password included."""


class SourceError(RuntimeError):
    """The legacy database could not be read; the message holds no password and no
    address."""


def read(dsn: str) -> list[Row]:
    """Every legacy user, in a READ ONLY transaction on `dsn`."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from runbook.lambda_runtime.db import describe_error

    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        raise BadDsn("it is not a connection string libpq can parse (postgresql://user:"
                     "password@host:5432/dbname, or host=... dbname=...)") from None
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S,
                             application_name="runbook stage-legacy-users") as conn:
            conn.read_only = True
            with conn.transaction():
                return [Row(*values) for values in conn.execute(QUERY).fetchall()]
    except psycopg.Error as exc:
        text = describe_error(exc)
        if password:
            text = text.replace(str(password), "<password>")
        raise SourceError(text) from None
