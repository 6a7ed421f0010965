"""One database connection per warm Lambda container, replaced when it breaks.

A container serves one invocation at a time and lives for minutes or hours, so a
handler keeps its connection between invocations instead of paying for a TLS handshake
and a login (with IAM auth, a fresh token too) each time. Meanwhile the server may end
it (a failover, an idle timeout, pg_terminate_backend), and psycopg notices only when
the connection is next used. So `run` retries the work once, on a new connection, when
the first attempt finds the connection broken: the work must be safe to repeat.

The connection prepares no statement by name (psycopg's prepare_threshold is None). The
handlers' writes are one simple-protocol message each (runbook.lambda_runtime.
round_trip), whose function's plans the server keeps anyway; and psycopg clears its
prepared statements after any rollback with DEALLOCATE ALL, which makes RDS Proxy pin
the client's session to one database connection for good (psycopg issue #1105), taking
it out of the proxy's pool.
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from runbook.lambda_runtime import db

T = TypeVar("T")

# Cognito gives a trigger 5 seconds in all; a login that takes longer than this will
# not leave time for the work. (libpq's minimum is 2.)
CONNECT_TIMEOUT_S = 3


class WarmConnection:
    """The container's connection, opened on first use with `db.from_environment`.

    `environ` is read at each (re)connect, so an IAM auth token is always fresh.
    """

    def __init__(self, environ: Mapping[str, str], *, application_name: str,
                 connect_timeout_s: int = CONNECT_TIMEOUT_S):
        self.environ = environ
        self.application_name = application_name
        self.connect_timeout_s = connect_timeout_s
        self._conn = None

    def connection(self):
        """The cached connection if it is still usable, else a new one (ConnectError)."""
        if self._conn is not None and not _usable(self._conn):
            self.close()
        if self._conn is None:
            self._conn = db.connect(db.from_environment(self.environ),
                                    timeout_s=self.connect_timeout_s,
                                    application_name=self.application_name)
            self._conn.prepare_threshold = None
        return self._conn

    def run(self, work: Callable[[object], T], *,
            on_reconnect: Callable[[BaseException], None] | None = None) -> T:
        """`work(connection)`, once more on a new connection if the first one broke."""
        import psycopg

        conn = self.connection()
        try:
            return work(conn)
        except psycopg.OperationalError as exc:
            if not (conn.broken or conn.closed):
                raise  # e.g. a statement timeout: the connection is fine, the work failed
            if on_reconnect is not None:
                on_reconnect(exc)
            self.close()
        return work(self.connection())

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass


def _usable(conn) -> bool:
    """Whether psycopg still considers `conn` open and idle (no round trip is made)."""
    from psycopg.pq import TransactionStatus

    return (not conn.closed and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE)
