"""The test session's PostgreSQL server (tests/postgres.py): where its data lives, and
that a server that died is started again before the next test uses it.

These tests stop and kill the session's own server (each test makes its own database,
so the next test only waits for a new one), or a server of their own when the session
uses RUNBOOK_PG_DSN.
"""

from __future__ import annotations

import getpass
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.postgres import SessionPostgres, alive


@pytest.fixture
def embedded(session_postgres):
    """The session's server when it is embedded, else one of the test's own."""
    if session_postgres.external_dsn is None:
        yield session_postgres
        return
    own = SessionPostgres()
    yield own
    own.stop()


def test_the_data_directory_is_a_temporary_directory_outside_pytests_base_temp(
        embedded, tmp_path_factory):
    dsn = embedded.ensure()

    root = embedded.root
    assert alive(dsn) and (embedded.data_dir / "PG_VERSION").is_file()
    assert root.parent == Path(tempfile.gettempdir())
    assert not root.is_relative_to(tmp_path_factory.getbasetemp())
    # Where runs started without --basetemp reset permissions and remove old directories:
    assert not root.is_relative_to(Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}")


def test_a_live_server_is_kept(embedded):
    first = embedded.ensure()
    process, starts = embedded.postmaster(), embedded.starts

    assert embedded.ensure() == first
    assert embedded.starts == starts and embedded.postmaster() is process


def kill(server: SessionPostgres) -> None:
    process = server.postmaster()
    process.kill()
    process.wait(10)


def remove_directory(server: SessionPostgres) -> None:
    """What pytest's clean-up of old base temp directories would do to a running server."""
    shutil.rmtree(server.root)


@pytest.mark.parametrize("death", [kill, remove_directory], ids=["killed", "directory-removed"])
def test_a_server_that_died_is_started_again_at_its_next_use(embedded, death):
    first = embedded.ensure()
    old_root, old_process, starts = embedded.root, embedded.postmaster(), embedded.starts

    death(embedded)
    assert not alive(first)

    second = embedded.ensure()

    assert embedded.starts == starts + 1
    with psycopg.connect(second, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("CREATE DATABASE rbtest_restarted")  # what make_database does next
        conn.execute("DROP DATABASE rbtest_restarted")
    assert embedded.root != old_root and not old_root.exists()
    assert not old_process.is_running()  # the old server is not left behind


def test_stop_ends_the_server_and_removes_its_directory(embedded):
    dsn = embedded.ensure()
    root, process = embedded.root, embedded.postmaster()

    embedded.stop()

    assert not root.exists()
    assert not process.is_running()
    assert not alive(dsn)


def test_an_external_server_is_only_used(pg_server):
    server = SessionPostgres(pg_server)

    assert server.ensure() == pg_server
    server.stop()

    assert server.starts == 0 and alive(pg_server)


def test_a_server_that_refuses_a_connection_but_runs_is_not_restarted(embedded):
    """A busy server (here: a login over its connection limit, as "too many clients" is)
    is kept: restarting it would end the connections of the test that made it busy."""
    from psycopg.conninfo import make_conninfo

    dsn = embedded.ensure()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS rbtest_no_room")
        conn.execute("CREATE ROLE rbtest_no_room LOGIN CONNECTION LIMIT 0")
    process, starts = embedded.postmaster(), embedded.starts
    embedded._dsn = make_conninfo(dsn, user="rbtest_no_room")
    try:
        assert not alive(embedded._dsn)

        assert embedded.ensure() == embedded._dsn

        assert embedded.starts == starts and embedded.postmaster() is process
    finally:
        embedded._dsn = dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE rbtest_no_room")
