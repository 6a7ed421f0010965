"""A trigger's write in one round trip to the server: its timeouts, then its one statement.

A trigger's time goes to round trips, not to the server's work: a statement sent and
its answer awaited costs more than the statement itself. So each trigger's writes are
one statement, a routine the migrations create (templates/sql/0007, 0008), and it is sent
together with the timeouts that bound it, in one simple-protocol message:

    SELECT set_config('statement_timeout', ..., true), set_config('lock_timeout', ..., true);
    CALL <schema>.write_profile(...)      (or SELECT ... FROM <schema>.store_signups(...))

PostgreSQL runs the statements of such a message as one transaction, so a failure leaves
nothing behind, and it starts the statement timeout at each statement's start, so the
second statement is bounded by what the first set. Setting the timeouts inside the
routine would not bound the routine's own statement. The values are bound on the
client (psycopg's ClientCursor quotes them for the connection), as the simple protocol
carries no parameters.

What must be committed with the write or not at all (`also`, a function that runs more
statements on the connection) joins it in one pipeline instead: BEGIN, the timeouts,
the statement, what `also` sends, COMMIT, answered together. Should anything fail, the
transaction is rolled back: nothing of it stays.

Nothing is prepared: the server's PL/pgSQL keeps the plans of the routine's statements
for the session, and no named prepared statement exists for a connection pool such as
RDS Proxy to track (runbook.lambda_runtime.connection).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

TIMEOUTS = ("SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true)")


@lru_cache(maxsize=None)
def statement(text: str, **identifiers: str) -> str:
    """`text` with {name} replaced by the quoted identifier `identifiers[name]` (a
    schema). Made once per statement and schemas."""
    from psycopg import sql

    names = {name: sql.Identifier(value) for name, value in identifiers.items()}
    return sql.SQL(text).format(**names).as_string()


@lru_cache(maxsize=None)
def message(text: str, **identifiers: str) -> str:
    """TIMEOUTS and `statement(text, **identifiers)` as one message."""
    return f"{TIMEOUTS};\n{statement(text, **identifiers)}"


def run(conn, text: str, params: Sequence, *, identifiers: dict[str, str],
        statement_timeout_ms: int, lock_timeout_ms: int,
        also: Callable[[object], None] | None = None):
    """`text` (a statement with %s placeholders and {name}s for `identifiers`) with
    `params`, after the timeouts, in one transaction and one round trip on `conn` (an
    autocommit connection), with `also(conn)` when given; the cursor, at the
    statement's result."""
    timeouts = (f"{statement_timeout_ms}ms", f"{lock_timeout_ms}ms")
    if also is None:
        from psycopg import ClientCursor

        cursor = ClientCursor(conn)
        cursor.execute(message(text, **identifiers), (*timeouts, *params))
        cursor.nextset()
        return cursor
    return _pipelined(conn, statement(text, **identifiers), params, timeouts, also)


def _pipelined(conn, text: str, params: Sequence, timeouts: tuple[str, str],
               also: Callable[[object], None]):
    from psycopg.pq import TransactionStatus

    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            conn.execute(TIMEOUTS, timeouts)
            cursor = conn.execute(text, params)
            also(conn)
            conn.execute("COMMIT")
    except BaseException:
        # A failed statement leaves the transaction aborted, and an exception raised by
        # `also` leaves it open: either way, nothing of it is committed.
        if not (conn.closed or conn.broken) and \
                conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        raise
    return cursor
