"""Fixtures of the handler tests (test_handlers.py, test_process_user_signup.py): the
handlers' environment cleared, a database migrated by fix-tables, and cold containers."""

from __future__ import annotations

import pytest

from tests.database.test_handlers import HANDLER_ENVIRONMENT, load_handler, migrate


@pytest.fixture
def handler_environment(monkeypatch):
    """No DB_* or domain variable of the machine reaches a handler."""
    for name in HANDLER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def database(handler_environment, write_config, pg_dsn, monkeypatch):
    """A fresh database migrated by fix-tables; DB_DSN points at it."""
    migrate(write_config, pg_dsn)
    monkeypatch.setenv("DB_DSN", pg_dsn)
    return pg_dsn


@pytest.fixture
def cold_start():
    """cold_start(name) -> lambdas/<name>'s handler module, freshly loaded: a new
    container with its own connection. Their connections are closed after the test."""
    loaded = []

    def load(name: str):
        loaded.append(load_handler(name))
        return loaded[-1]

    yield load
    for module in loaded:
        module.DATABASE.close()
