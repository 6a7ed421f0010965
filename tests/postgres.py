"""The test session's PostgreSQL server: kept out of pytest's base temp, and started
again when it died.

Why not under `tmp_path_factory`: run as root, pgserver runs postgres as the system user
`pgserver`, and opens the directories above its data directory to other users so that
this user can reach it. Every pytest run started without --basetemp resets
/tmp/pytest-of-<user> to mode 0700 (and removes all but the three newest base temp
directories whose run has ended). The running server then loses access to its own data
directory: its next checkpoint PANICs with "could not open file .../global/pg_control:
Permission denied", and every later test of the long run errors with "Connection
refused". So the data directory lives in a directory of its own (tempfile.mkdtemp),
which no other run touches, and is removed at the end of the session.

And because a server can still die (killed, its directory removed), `ensure` checks it
with a cheap connection before each test that uses it, and starts a new one if that
fails. Each test makes its own database (conftest.make_database), so nothing a later
test needs is lost with the old server.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path

# libpq's smallest connect timeout: a live server on a local socket answers at once.
ALIVE_TIMEOUT_S = 2
# How often a busy server is asked again, half a second apart, before the test goes on.
ALIVE_TRIES = 5


class SessionPostgres:
    """One PostgreSQL server for a test session: `external_dsn` (RUNBOOK_PG_DSN), which
    is only used, or else an embedded pgserver that this object starts and stops."""

    def __init__(self, external_dsn: str | None = None):
        self.external_dsn = external_dsn
        self.root: Path | None = None       # the directory holding the data directory
        self.starts = 0
        self._server = None
        self._dsn: str | None = None

    @property
    def data_dir(self) -> Path | None:
        return None if self.root is None else self.root / "data"

    def ensure(self) -> str:
        """The DSN of a server that answered `SELECT 1` just now: the running one, or a
        new one when it no longer answers."""
        if self.external_dsn:
            return self.external_dsn  # someone else's server: nothing to restart
        if self._dsn is None or self._gone():
            self.stop()
            self._start()
        return self._dsn

    def _gone(self) -> bool:
        """Whether the server is dead, as opposed to busy. A busy server (too many
        clients, a checkpoint, a slow answer on a loaded machine) is not restarted: that
        would end the connections of the test that made it busy."""
        process = self.postmaster()
        if process is None or not process.is_running():
            return True
        for _ in range(ALIVE_TRIES):
            answer = probe(self._dsn)
            if answer in ("alive", "gone"):
                return answer == "gone"
            time.sleep(0.5)
        return False  # busy all along: the test that uses it says what is wrong

    def postmaster(self):
        """The server's main process (a psutil.Process), or None when none was started."""
        return None if self._server is None else self._server.get_postmaster_info().process

    def _start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pgserver

            self.root = Path(tempfile.mkdtemp(prefix="runbook-tests-pg-"))
            self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        self._dsn = self._server.get_uri()
        self.starts += 1

    def stop(self) -> None:
        """Stop the embedded server, whatever state it is in, and remove its directory."""
        server, root = self._server, self.root
        self._server = self._dsn = self.root = None
        if server is not None:
            process = server.get_postmaster_info().process
            try:
                server.cleanup()    # pg_ctl stop; does nothing once the directory is gone
            except Exception:       # noqa: BLE001 - a broken server is ended below
                pass
            # psutil checks the process's start time too: a reused pid is not killed.
            if process.is_running():
                process.kill()
                process.wait(10)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


# Answers of a server that no longer serves: nothing listens on its socket, or the
# socket is gone with its directory.
_GONE = ("connection refused", "no such file or directory")


def probe(dsn: str) -> str:
    """"alive" (it answered a query), "gone" (nothing listens on its socket) or "busy"
    (anything else: too many clients, starting up or shutting down, a timeout)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=ALIVE_TIMEOUT_S, autocommit=True) as conn:
            return "alive" if conn.execute("SELECT 1").fetchone() == (1,) else "busy"
    except psycopg.Error as exc:
        return "gone" if any(s in str(exc).lower() for s in _GONE) else "busy"


def alive(dsn: str) -> bool:
    """Whether the server at `dsn` accepts a connection and answers a query."""
    return probe(dsn) == "alive"
