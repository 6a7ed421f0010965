"""The sandbox's embedded PostgreSQL: the server of the `pgserver` wheel, started and
stopped by runbook itself.

pgserver.get_server costs a dry run more than the server does: every start on the
machine takes one lock file that all of pgserver's users share, so concurrent dry runs
start their servers one at a time; it scans every process of the machine first; and its
`pg_ctl -w` looks for a ready (or a stopped) server only every 100 ms. Here the
postmaster is a child of this process, in a session of its own as pg_ctl would make it
(a Ctrl-C at the terminal reaches runbook, which stops the server, and not the server
itself), and it listens on a Unix socket in its own data directory only: no TCP port,
so sandboxes running side by side cannot collide. It is stopped with an immediate
shutdown: its data directory is about to be deleted, so a shutdown checkpoint would
only write pages that nobody reads.

A new data directory is a copy of the one initdb made for the first run
(runbook.sandbox.pgdata_cache), or initdb's own when there is no cache to use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from runbook.sandbox import pgdata_cache

# pg_ctl's own limits: 60 s for a server to start, and to stop.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
POLL_S = 0.005
# As pgserver makes it: trust on the local socket only (there is no TCP listener), and
# the superuser role `postgres`.
SUPERUSER = "postgres"
INITDB_ARGS = ("--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", SUPERUSER)
# postgres refuses to run as root; as root, pgserver runs it as this system user.
SYSTEM_USER = "pgserver"
# A Unix socket's path has room for 107 bytes on Linux.
SOCKET_PATH_MAX = 100


class PostgresFailed(RuntimeError):
    """The server did not start; the message quotes the end of its log."""


class Cancelled(Exception):
    """The sandbox is closing: a start that had not finished gave up."""


def bin_dir() -> Path:
    """The PostgreSQL binaries inside the pgserver wheel (pgserver._commands'
    POSTGRES_BIN_PATH), found without importing pgserver."""
    from importlib.util import find_spec

    spec = find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresFailed("pgserver is not installed: the sandbox's PostgreSQL comes "
                             "from its wheel (pip install -e '.[dev]')")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def run_as() -> tuple[str, int, int] | None:
    """(user, uid, gid) the server runs as when this process is root, else None.

    The same system user pgserver uses (created by pgserver the same way if missing),
    with the binaries and the folders above them opened to it as pgserver opens them.
    """
    if os.geteuid() != 0:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        from pgserver import utils

    entry = utils.ensure_user_exists(SYSTEM_USER)
    _open_binaries_once(utils)
    return SYSTEM_USER, entry.pw_uid, entry.pw_gid


_opened = threading.Lock()
_opened_binaries: list[bool] = []


def _open_binaries_once(utils) -> None:
    import stat

    with _opened:
        if _opened_binaries:
            return
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        utils.ensure_prefix_permissions(bin_dir())
        utils.ensure_folder_permissions(bin_dir(), execute | read)
        utils.ensure_folder_permissions(bin_dir().parent / "lib", read)
        _opened_binaries.append(True)


class EmbeddedPostgres:
    """One throwaway server in `pgdata` (created empty here; deleted by the caller).
    Made in the thread that imports (it may import pgserver); then each method may run
    in another."""

    def __init__(self, pgdata: Path):
        self.pgdata = Path(pgdata)
        self.log = self.pgdata / "log"     # where pgserver's server logs, too
        self.dsn: str | None = None
        self.from_cache = False
        self._user = run_as()
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # -- the data directory ---------------------------------------------------------

    def make_data_directory(self, cache_dir: Path | None) -> None:
        """A new cluster in the data directory: a copy of the template in `cache_dir`
        (runbook.sandbox.pgdata_cache), or initdb's output, which then becomes the
        template. Without `cache_dir`, initdb's output only."""
        self.pgdata.mkdir(mode=0o700)
        if self._user is not None:
            from pgserver import utils

            utils.ensure_prefix_permissions(self.pgdata)
            os.chown(self.pgdata, self._user[1], self._user[2])
        template = None
        if cache_dir is not None:
            template = pgdata_cache.template_path(cache_dir, bin_dir(), INITDB_ARGS)
            owner = self._user[1:] if self._user is not None else None
            if pgdata_cache.copy_into(template, self.pgdata, owner):
                self.from_cache = True
                return
        self.initdb()
        if template is not None:
            pgdata_cache.publish(self.pgdata, template)

    def initdb(self) -> None:
        """initdb into the (empty) data directory. No fsync: the directory is thrown
        away with the sandbox, and pgdata_cache.publish flushes its own copy."""
        result = subprocess.run(
            [str(bin_dir() / "initdb"), "-D", str(self.pgdata), *INITDB_ARGS, "--no-sync"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT_S,
            **self._as_user())
        if result.returncode != 0:
            raise PostgresFailed(f"initdb exited with code {result.returncode}: "
                                 f"{(result.stderr or result.stdout).strip()[-600:]}")

    # -- the server -----------------------------------------------------------------

    def start(self, cancelled: threading.Event | None = None) -> str:
        """Start the server on the data directory and wait until it accepts
        connections; its DSN (user postgres, database postgres, the socket).

        Raises Cancelled when `cancelled` is set first; the server, if it was started,
        is left for `stop`.
        """
        socket_dir = self._socket_dir()
        command = [str(bin_dir() / "postgres"), "-D", str(self.pgdata),
                   "-c", "listen_addresses=", "-c", f"unix_socket_directories={socket_dir}"]
        with self._lock:
            if cancelled is not None and cancelled.is_set():
                raise Cancelled()
            with open(self.log, "ab") as log:
                process = self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, **self._as_user())
        self._wait_ready(process, cancelled)
        self.dsn = f"postgresql://{SUPERUSER}:@/{SUPERUSER}?host={socket_dir}"
        return self.dsn

    def _socket_dir(self) -> Path:
        if len(str(self.pgdata / ".s.PGSQL.5432")) <= SOCKET_PATH_MAX:
            return self.pgdata
        raise PostgresFailed(f"{self.pgdata} is too long a path for the server's Unix "
                             "socket: set TMPDIR to a shorter folder")

    def _wait_ready(self, process: subprocess.Popen, cancelled: threading.Event | None) -> None:
        """Until postmaster.pid says `ready`, as pg_ctl -w waits, but every few ms."""
        deadline = time.monotonic() + START_TIMEOUT_S
        pid_file = self.pgdata / "postmaster.pid"
        while True:
            if process.poll() is not None:
                raise PostgresFailed(f"the sandbox's PostgreSQL exited with code "
                                     f"{process.returncode}: {self._tail()}")
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            # Line 1 is the postmaster's pid, line 8 its status (PostgreSQL's pidfile.h).
            if len(lines) >= 8 and lines[0].strip() == str(process.pid) \
                    and lines[7].strip() == "ready":
                return
            if cancelled is not None and cancelled.is_set():
                raise Cancelled()
            if time.monotonic() > deadline:
                raise PostgresFailed(f"the sandbox's PostgreSQL did not accept connections "
                                     f"within {START_TIMEOUT_S} s: {self._tail()}")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT), and wait for the postmaster, which waits for
        its children; a kill if it is still there after STOP_TIMEOUT_S. Safe to call
        twice, and while `start` runs in another thread."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def _as_user(self) -> dict:
        if self._user is None:
            return {}
        _, uid, gid = self._user
        return {"user": uid, "group": gid, "extra_groups": []}

    def _tail(self, size: int = 600) -> str:
        try:
            return self.log.read_bytes()[-size:].decode(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no log)"
