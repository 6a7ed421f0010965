"""The sandbox's embedded PostgreSQL (runbook.sandbox.postgres) and the cached template
of its data directory (runbook.sandbox.pgdata_cache): real servers started from real
initdb output, each in a folder of its own.

Why not under tmp_path: run as root, the server runs as the system user `pgserver`, and
a pytest run started without --basetemp resets /tmp/pytest-of-<user> to 0700, which
would lock a running server out of its data directory (tests/postgres.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runbook.sandbox import pgdata_cache
from runbook.sandbox.postgres import (INITDB_ARGS, Cancelled, EmbeddedPostgres, PostgresFailed,
                                      bin_dir)

pytestmark = pytest.mark.slow


@pytest.fixture
def folder():
    """A folder of the test's own (removed afterwards): run as root, the folders above a
    data directory are opened to the server's user."""
    path = Path(tempfile.mkdtemp(prefix="runbook-test-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers(folder):
    """servers(name, cache_dir) -> a started EmbeddedPostgres in folder/name; all are
    stopped afterwards."""
    started = []

    def start(name: str, cache_dir: Path | None) -> EmbeddedPostgres:
        server = EmbeddedPostgres(folder / name)
        started.append(server)
        server.make_data_directory(cache_dir)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "zombie" not in state


def listing(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_second_server_starts_from_a_copy_of_the_template_the_first_left(servers, folder):
    cache = folder / "cache"
    first = servers("one", cache)
    assert first.from_cache is False
    [template] = [p for p in cache.iterdir() if not p.name.startswith(".")]
    before = listing(template)

    second = servers("two", cache)
    assert second.from_cache is True
    with psycopg.connect(first.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_in_the_first (x int)")
    with psycopg.connect(second.dsn, autocommit=True) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("16")
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = "
                            "'only_in_the_first'").fetchone()[0] == 0
        conn.execute("CREATE TABLE only_in_the_second (x int)")
    # Copied, not shared: the template is as the first run left it, never started.
    assert listing(template) == before
    assert not (template / "postmaster.pid").exists()
    assert first.dsn != second.dsn


def test_a_server_stopped_leaves_no_process_and_stopping_twice_is_harmless(servers):
    server = servers("one", None)
    pid = server.pid
    assert alive(pid)
    server.stop()
    assert not alive(pid)
    assert server.pid is None
    server.stop()


def test_a_start_cancelled_before_the_server_runs_starts_nothing(folder):
    server = EmbeddedPostgres(folder / "one")
    server.make_data_directory(None)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        server.start(cancelled)
    assert server.pid is None
    assert not (folder / "one" / "postmaster.pid").exists()


def test_a_start_cancelled_once_the_server_runs_leaves_it_for_stop_to_end(folder):
    server = EmbeddedPostgres(folder / "one")
    server.make_data_directory(None)
    cancelled, outcome = threading.Event(), []

    def start() -> None:
        try:
            server.start(cancelled)
            outcome.append("ready")
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=start)
    thread.start()
    while server.pid is None and thread.is_alive():
        time.sleep(0.001)
    cancelled.set()  # the sandbox closes: the postmaster exists, ready or not
    thread.join()
    pid = server.pid
    assert outcome in (["ready"], ["cancelled"]) and alive(pid)
    server.stop()
    assert not alive(pid)


def test_a_server_that_cannot_start_says_why(folder):
    server = EmbeddedPostgres(folder / "one")
    server.make_data_directory(None)
    with open(server.pgdata / "postgresql.conf", "a") as conf:
        conf.write("\nshared_buffers = 'not a size'\n")
    with pytest.raises(PostgresFailed) as failed:
        server.start()
    assert "exited with code" in str(failed.value)
    assert "shared_buffers" in str(failed.value)  # the end of the server's log


def test_runs_making_the_template_at_once_leave_one_whole_template(folder):
    sources = []
    for name in ("a", "b", "c"):
        server = EmbeddedPostgres(folder / name)
        server.make_data_directory(None)
        sources.append(server.pgdata)
    cache = folder / "cache"
    template = pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS)
    barrier, results = threading.Barrier(len(sources)), []

    def publish(source: Path) -> None:
        barrier.wait()
        results.append(pgdata_cache.publish(source, template))

    threads = [threading.Thread(target=publish, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, True]
    assert [p.name for p in cache.iterdir()] == [template.name]  # no temporary copy left
    assert all((template / name).is_file() for name in pgdata_cache.COMPLETE)


def test_a_template_half_made_by_a_killed_run_is_never_used_and_cleared_later(servers, folder):
    cache = folder / "cache"
    template = pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS)
    cache.mkdir()
    # A run killed while copying: its temporary folder, and one of a run still copying.
    old = cache / f".{template.name}.dead.tmp"
    young = cache / f".{template.name}.busy.tmp"
    for leftover in (old, young):
        (leftover / "global").mkdir(parents=True)
        (leftover / "PG_VERSION").write_text("16\n")
    hours_ago = time.time() - pgdata_cache.STALE_S - 60
    os.utime(old, (hours_ago, hours_ago))

    server = servers("one", cache)
    assert server.from_cache is False
    assert template.is_dir()
    assert not old.exists() and young.exists()


def test_an_incomplete_template_is_not_copied(servers, folder):
    cache = folder / "cache"
    template = pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS)
    (template / "global").mkdir(parents=True)
    (template / "PG_VERSION").write_text("16\n")  # but no pg_control, no postgresql.conf
    server = servers("one", cache)
    assert server.from_cache is False
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_unusable_cache_costs_speed_only(servers, folder):
    cache = folder / "cache"
    cache.write_text("a file where the cache folder would go")
    server = servers("one", cache)
    assert server.from_cache is False
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert cache.read_text() == "a file where the cache folder would go"


def test_the_template_is_keyed_by_what_initdb_reads(folder, monkeypatch):
    cache = folder / "cache"
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("TZ", raising=False)
    plain = pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS)
    assert pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS) == plain
    version = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True,
                             text=True, check=True).stdout.split()[-1]
    assert plain.name.startswith(f"pgdata-{version}-")
    monkeypatch.setenv("TZ", "Pacific/Auckland")
    in_auckland = pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    in_c_utf8 = pgdata_cache.template_path(cache, bin_dir(), INITDB_ARGS)
    other_args = pgdata_cache.template_path(cache, bin_dir(), (*INITDB_ARGS, "-k"))
    assert len({plain, in_auckland, in_c_utf8, other_args}) == 4
