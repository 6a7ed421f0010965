"""A template of the embedded PostgreSQL's data directory, kept in runbook's cache beside
the layers, so that a sandbox's server starts from a copy of it (a few hundredths of a
second) instead of from initdb (about half a second of a core on the 2-core machine).

Each run copies the template into its own data directory, where its server runs: the
template itself is never started, written to or shared. It is safe between runs,
concurrent or not, and across crashes, without a lock:

- It appears whole or not at all: the first run copies its own fresh, never started
  initdb output into a temporary folder beside the template, flushes it to disk, and
  renames it into place; a rename is atomic. Of two runs that make it at once, the
  second rename fails and that run deletes its own copy.
- It is found by a key of everything initdb's output depends on: the server binaries'
  version, pgserver's, initdb's arguments, the locale and time zone initdb reads from
  the environment, and FORMAT. Another version, or another environment, gets its own.
- A run killed while making one leaves a temporary folder that no run reads; the next
  run that makes a template deletes those older than STALE_S.
- Whatever goes wrong with the cache (not writable, the template gone half-way through
  a copy) costs speed only: the run's server then starts on initdb's output, as before.

A copy shares initdb's "database system identifier" with the template; it matters only
to replication, which a sandbox does not do.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

FORMAT = 1
STALE_S = 3600
# What initdb reads from the environment: the locale of the new databases and the
# lc_* settings, and the time zone it writes to postgresql.conf.
ENVIRONMENT = ("LC_ALL", "LC_COLLATE", "LC_CTYPE", "LC_MESSAGES", "LC_MONETARY",
               "LC_NUMERIC", "LC_TIME", "LANG", "LANGUAGE", "TZ")
# Present in every data directory initdb finished.
COMPLETE = ("PG_VERSION", "global/pg_control", "postgresql.conf")


def default_dir() -> Path:
    """$RUNBOOK_CACHE_DIR/postgres, else ~/.cache/runbook/postgres (runbook.files)."""
    from runbook.files import cache_root

    return cache_root() / "postgres"


def template_path(cache_dir: Path, bin_dir: Path, initdb_args: tuple[str, ...]) -> Path:
    """Where the template for these binaries, arguments and environment is (or goes)."""
    version = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    text = "\n".join([
        f"runbook pgdata template {FORMAT}", version, f"pgserver {_pgserver_version()}",
        " ".join(initdb_args), f"user {os.geteuid()}",
        f"localtime {os.path.realpath('/etc/localtime')}",
        *(f"{name}={os.environ.get(name, '')}" for name in ENVIRONMENT)])
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    number = version.rsplit(" ", 1)[-1]
    return Path(cache_dir) / f"pgdata-{number}-{key}"


def _pgserver_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pgserver")
    except metadata.PackageNotFoundError:
        return "unknown"


def copy_into(template: Path, pgdata: Path, owner: tuple[int, int] | None = None) -> bool:
    """Copy the template into the empty folder `pgdata`, and give the copy to `owner`
    (uid, gid) if given; False (and `pgdata` empty again) when there is no complete
    template or the copy failed.

    By `cp` and `chown`, not shutil: a Python loop over a thousand files in a thread
    would wait for the GIL at each one while moto starts in the main thread."""
    if not all((template / name).is_file() for name in COMPLETE):
        return False
    commands = [["cp", "-a", f"{template}/.", f"{pgdata}/"]]
    if owner is not None:
        commands.append(["chown", "-R", f"{owner[0]}:{owner[1]}", str(pgdata)])
    for command in commands:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=120)
        if result.returncode != 0:
            _empty(pgdata)
            return False
    return True


def publish(pgdata: Path, template: Path) -> bool:
    """Keep a copy of initdb's fresh output `pgdata` as the template, if there is none
    yet. Best effort: False when another run's came first, or the cache is unusable."""
    temporary = template.parent / f".{template.name}.{secrets.token_hex(4)}.tmp"
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(template.parent)
        shutil.copytree(pgdata, temporary, symlinks=True)
        _flush(temporary)
        os.rename(temporary, template)
        return True
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        return False


def _flush(folder: Path) -> None:
    """fsync every file and folder, so that a crash after the rename cannot leave a
    template with empty files in it."""
    for path, dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(path, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(cache_dir: Path) -> None:
    """Temporary folders of runs that died making a template."""
    now = time.time()
    for leftover in cache_dir.glob(".pgdata-*.tmp"):
        try:
            if now - leftover.stat().st_mtime > STALE_S:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
