"""A trigger's write as one message to the server: its timeouts, then its one statement.

A trigger's time goes to round trips, not to the server's work: a statement sent and
its answer awaited costs more than the statement itself. So each trigger's writes are
one statement, a function the migrations create (templates/sql/0007), and it is sent
together with the timeouts that bound it, in one simple-protocol message:

    SELECT set_config('statement_timeout', ..., true), set_config('lock_timeout', ..., true);
    SELECT ... FROM <schema>.<function>(...)

PostgreSQL runs the statements of such a message as one transaction (unless the caller
has one open, which they then join), so a failure leaves nothing behind, and it starts
the statement timeout at each statement's start, so the second statement is bounded by
what the first set. Setting the timeouts inside the function would not bound the
function's own statement.

The values are bound on the client (psycopg's ClientCursor quotes them for the
connection), as the simple protocol carries no parameters. Nothing is prepared: the
server's PL/pgSQL keeps the plans of the function's statements for the session, and no
named prepared statement exists for a connection pool such as RDS Proxy to track.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

TIMEOUTS = ("SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true);\n")


@lru_cache(maxsize=None)
def message(statement: str, **identifiers: str) -> str:
    """TIMEOUTS and `statement` as one message, with {name} in it replaced by the quoted
    identifier `identifiers[name]` (a schema). Made once per statement and schemas."""
    from psycopg import sql

    names = {name: sql.Identifier(value) for name, value in identifiers.items()}
    return sql.SQL(TIMEOUTS + statement).format(**names).as_string()


def run(conn, text: str, params: Sequence, *, statement_timeout_ms: int,
        lock_timeout_ms: int):
    """Send `text` (a `message`) with the timeouts and `params`, in one round trip; the
    cursor, at the statement's result."""
    from psycopg import ClientCursor

    cursor = ClientCursor(conn)
    cursor.execute(text, (f"{statement_timeout_ms}ms", f"{lock_timeout_ms}ms", *params))
    cursor.nextset()
    return cursor
