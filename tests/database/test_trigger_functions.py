"""The triggers' writes as one round trip each (templates/sql/0007's routines, sent by
runbook.lambda_runtime.round_trip), against a real PostgreSQL migrated by fix-tables.

Round trips are counted on the handler's own connection with libpq's trace of the
protocol: each answer ends with a ReadyForQuery message, one per round trip. The
statement and lock timeouts, the `also` hook, the refusal of a profile that can be
neither found nor created, a user's row failing alone, and the routines' EXECUTE
grants are proved here too; test_handlers.py, test_process_user_signup.py and
test_registration_outbox.py prove the rest on the same code.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import pq
from psycopg.conninfo import make_conninfo

from runbook.database import grants
from runbook.database.grants import Finding
from runbook.lambda_runtime import profiles, registration, signups
from runbook.lambda_runtime.schemas import Schemas
from tests.database.test_fix_tables import fix_tables, make_config
from tests.database.test_handlers import (TRIGGER_ROLE, Context, counts, migrate, query,
                                          sign_up, signed_in)
from tests.database.test_process_user_signup import batch, message, users

LENA = "0f6b2c1e-3d4a-4b5c-8d9e-1f2a3b4c5d6e"

pytestmark = pytest.mark.usefixtures("handler_environment")  # tests/database/conftest.py


@contextmanager
def round_trips(conn):
    """Yields a list that holds, once the block is left, how many round trips `conn`
    made in it (the ReadyForQuery messages its libpq trace shows)."""
    counted: list[int] = []
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield counted
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        counted.append(sum("\tReadyForQuery\t" in line for line in trace))


def connect(dsn):
    return psycopg.connect(dsn, autocommit=True)


def user(n: int = 0, **values) -> profiles.NewUser:
    return profiles.NewUser(**{"sub": f"aaaaaaaa-0000-4000-8000-{n:012d}",
                               "email": f"user{n}@example.com", "display_name": f"User {n}",
                               "first_name": "First", "last_name": "Last", **values})


def signup(n: int, **values) -> signups.Signup:
    return signups.Signup(**{"message_id": f"m-{n}", "cognito_id": f"c-{n:04d}",
                             "email": f"signup{n}@example.com", "name": None, "phone": None,
                             "email_verified": True, **values})


# -- one round trip ---------------------------------------------------------------------

def test_a_confirmation_is_one_round_trip_and_a_retry_too(database, cold_start):
    handler = cold_start("post_confirmation")
    handler.handler(sign_up(sub="bbbbbbbb-0000-4000-8000-000000000001",
                            email="first@example.com"), Context())  # the connection opened

    for _ in range(2):  # the sign-up, then Cognito's retry of it
        with round_trips(handler.DATABASE.connection()) as made:
            handler.handler(sign_up(), Context())
        assert made == [1]
    assert counts(database) == (2, 2)


def to_outbox(new_user: profiles.NewUser):
    """The a4 hook: the registration's outbox row, in the profile's transaction."""
    return lambda conn: registration.add_to_outbox(
        conn, registration.detail(new_user, email_verified=True), schema="app")


def test_write_profile_with_its_outbox_row_is_one_round_trip_too(database):
    with connect(database) as conn:
        with round_trips(conn) as made:
            saved = profiles.write_profile(conn, user(), also=to_outbox(user()))
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert made == [1]  # BEGIN, the timeouts, the write, the outbox row, COMMIT
    assert (saved.profile, saved.private_profile) == ("created", "created")
    assert query(database, "SELECT count(*) FROM app.registration_outbox") == [(1,)]


def test_a_batch_of_ten_is_one_round_trip(database, cold_start):
    consumer = cold_start("process_user_signup")
    consumer.handler(batch(message("warm")), Context())
    ten = batch(*(message(f"m-{n}", cognito_user_id=f"c-{n:04d}", email=f"u{n}@example.com")
                  for n in range(10)))

    with round_trips(consumer.DATABASE.connection()) as made:
        assert consumer.handler(ten, Context()) == {"batchItemFailures": []}

    assert made == [1]
    assert len(users(database)) == 11


def test_the_handlers_prepare_no_statement_by_name(database, cold_start):
    """psycopg prepares a statement run five times; a named prepared statement, and the
    DEALLOCATE ALL after a rollback, are what RDS Proxy pins a session on."""
    handler = cold_start("post_confirmation")
    consumer = cold_start("process_user_signup")
    for n in range(8):
        handler.handler(sign_up(sub=f"bbbbbbbb-0000-4000-8000-{n:012d}",
                                email=f"user{n}@example.com"), Context())
        handler.handler(signed_in(sub=f"bbbbbbbb-0000-4000-8000-{n:012d}",
                                  email=f"user{n}@example.com"), Context())
        consumer.handler(batch(message(f"m-{n}", cognito_user_id=f"c-{n}",
                                       email=f"u{n}@example.com")), Context())
    for module in (handler, consumer):
        conn = module.DATABASE.connection()
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


# -- the timeouts -------------------------------------------------------------------------

def slow_profile_inserts(dsn, seconds: float) -> None:
    """Every insert into profiles takes `seconds`: a statement slow for no lock."""
    with connect(dsn) as conn:
        conn.execute(f"""
            CREATE FUNCTION public.slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$;
            CREATE TRIGGER slow_insert BEFORE INSERT ON public.profiles
              FOR EACH ROW EXECUTE FUNCTION public.slow_insert()""")


def test_the_statement_timeout_bounds_the_write_itself(database):
    slow_profile_inserts(database, 3)
    with connect(database) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            profiles.write_profile(conn, user(), statement_timeout_ms=300)
        assert time.monotonic() - started < 2
        # The timeouts were the transaction's: the session keeps its own.
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)
    assert counts(database) == (0, 0)


def test_a_lock_held_by_a_stuck_session_fails_that_user_alone_and_the_batch_commits(database):
    held = signup(2)
    with connect(database) as conn:
        conn.execute("INSERT INTO app.registration_outbox (cognito_id, detail) "
                     "VALUES (%s, '{}')", (held.cognito_id,))
    with psycopg.connect(database) as stuck:  # a session holding the user's outbox row
        stuck.execute("SET idle_in_transaction_session_timeout = '6s'")
        stuck.execute("SELECT 1 FROM app.registration_outbox FOR UPDATE")
        with connect(database) as conn:
            started = time.monotonic()
            stored, failed = signups.store(conn, [signup(1), held, signup(3)],
                                           lock_timeout_ms=500)
            took = time.monotonic() - started

    assert 0.4 < took < 3
    assert [s.message_id for s in stored] == ["m-1", "m-3"]
    assert [(f.message_id, f.reason[:24]) for f in failed] == [
        ("m-2", "PostgreSQL error 55P03: ")]
    assert [row[0] for row in users(database)] == ["c-0001", "c-0003"]
    assert query(database, "SELECT count(*) FROM audit.registrations") == [(2,)]


def test_a_batch_s_statement_timeout_is_per_row_and_fails_the_whole_batch(database):
    with connect(database) as conn:
        conn.execute("""
            CREATE FUNCTION public.slow_user() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
            CREATE TRIGGER slow_user BEFORE INSERT ON app.users
              FOR EACH ROW EXECUTE FUNCTION public.slow_user()""")
        # 0.2 s a row: two rows of 0.3 s each outlast the batch's 0.4 s.
        with pytest.raises(psycopg.errors.QueryCanceled):
            signups.store(conn, [signup(1), signup(2)], statement_timeout_ms=200)
        assert users(database) == []
        # 0.5 s a row: the same two rows fit.
        stored, failed = signups.store(conn, [signup(1), signup(2)], statement_timeout_ms=500)
    assert (len(stored), failed) == (2, [])


def test_a_batch_with_no_failing_row_is_written_set_based_in_one_subtransaction(database):
    """0008: a batch no row of which fails is written by three statements in one block.
    A row's xmin is the id of the (sub)transaction that wrote it: one for the whole
    batch, where 0007 took one a user."""
    with connect(database) as conn:
        stored, failed = signups.store(conn, [signup(n) for n in range(1, 11)])
    assert failed == [] and [s.inserted for s in stored] == [True] * 10
    assert query(database, "SELECT count(DISTINCT xmin::text) FROM app.users") == [(1,)]
    assert query(database, "SELECT count(*) FROM audit.registrations") == [(10,)]


def test_a_failing_row_sends_the_batch_user_by_user(database):
    with connect(database) as conn:
        stored, failed = signups.store(conn, [signup(1), signup(2, email="signup1@example.com"),
                                              signup(3)])
    assert [s.message_id for s in stored] == ["m-1", "m-3"] and len(failed) == 1
    assert query(database, "SELECT count(DISTINCT xmin::text) FROM app.users") == [(2,)]


def test_a_user_twice_in_one_batch_is_stored_for_its_first_message_and_audited_once(
        database):
    with connect(database) as conn:
        stored, failed = signups.store(conn, [signup(1), signup(2, message_id="m-2a"),
                                              signup(2, message_id="m-2b"), signup(3)])
        again, _ = signups.store(conn, [signup(3, message_id="m-3-redelivered")])
    assert failed == []
    assert [(s.message_id, s.inserted) for s in stored] == [
        ("m-1", True), ("m-2a", True), ("m-2b", False), ("m-3", True)]
    assert [(s.message_id, s.inserted) for s in again] == [("m-3-redelivered", False)]
    assert [row[0] for row in users(database)] == ["c-0001", "c-0002", "c-0003"]
    assert query(database, "SELECT cognito_id, message_id FROM audit.registrations "
                           "ORDER BY cognito_id") == [
        ("c-0001", "m-1"), ("c-0002", "m-2a"), ("c-0003", "m-3")]


def test_one_failing_row_rolls_the_set_based_write_back_and_the_rest_are_stored(database):
    with connect(database) as conn:
        conn.execute("INSERT INTO app.registration_outbox (cognito_id, detail) "
                     "VALUES ('c-0001', '{}'), ('c-0003', '{}')")
        taken = signup(2, email="signup1@example.com")        # user 1's address
        stored, failed = signups.store(conn, [signup(1), taken, signup(3)])
    assert [s.message_id for s in stored] == ["m-1", "m-3"]
    assert [(f.message_id, f.reason[:24]) for f in failed] == [
        ("m-2", "PostgreSQL error 23505: ")]
    assert [row[0] for row in users(database)] == ["c-0001", "c-0003"]
    # Each stored user's outbox row went with it, once; and one audit row each.
    assert query(database, "SELECT count(*) FROM app.registration_outbox") == [(0,)]
    assert query(database, "SELECT cognito_id FROM audit.registrations "
                           "ORDER BY cognito_id") == [("c-0001",), ("c-0003",)]


# -- the hook and the refusal ----------------------------------------------------------

def test_what_also_writes_commits_with_the_profile_or_not_at_all(database):
    def raises(conn):
        to_outbox(user())(conn)
        raise RuntimeError("the hook failed")

    def fails_in_the_database(conn):
        to_outbox(user())(conn)
        conn.execute("SELECT 1 / 0")

    with connect(database) as conn:
        with pytest.raises(RuntimeError):
            profiles.write_profile(conn, user(), also=raises)
        with pytest.raises(psycopg.errors.DivisionByZero):
            profiles.write_profile(conn, user(), also=fails_in_the_database)
        # Rolled back each time; the connection serves on.
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        assert profiles.write_profile(conn, user(), also=to_outbox(user())).profile == "created"
    assert counts(database) == (1, 1)
    assert query(database, "SELECT count(*) FROM app.registration_outbox") == [(1,)]


def test_a_profile_that_can_be_neither_found_nor_created_is_refused_with_nothing_written(
        database):
    # Another unique key the advisory locks do not cover: the insert finds its clash.
    with connect(database) as conn:
        conn.execute("CREATE UNIQUE INDEX profiles_display_name_key ON profiles (display_name)")
        profiles.write_profile(conn, user(1, display_name="Taken"))
        with pytest.raises(profiles.ProfileConflict, match="belongs to another user"):
            profiles.write_profile(conn, user(2, display_name="Taken"), overwrite=False,
                                   also=to_outbox(user(2)))
    assert counts(database) == (1, 1)
    assert query(database, "SELECT count(*) FROM app.registration_outbox") == [(0,)]


def test_saved_names_what_each_write_did(database):
    with connect(database) as conn:
        write = profiles.write_profile
        created = write(conn, user())
        assert (created.profile, created.private_profile) == ("created", "created")
        assert write(conn, user()) == profiles.Saved(created.profile_id, "updated", "updated")
        first = write(conn, user(1), overwrite=False)
        assert (first.profile, first.private_profile) == ("created", "created")
        again = write(conn, user(1, display_name="Other"), overwrite=False)
        assert again == profiles.Saved(first.profile_id, "unchanged", "unchanged")
        conn.execute("INSERT INTO profiles (email, role) VALUES ('legacy@example.com', 'user')")
        linked = write(conn, user(2, email="Legacy@Example.com"))
        assert (linked.profile, linked.private_profile) == ("linked", "created")
    assert query(database, "SELECT role FROM profiles WHERE id = %s", (linked.profile_id,)) \
        == [("user",)]


def test_concurrent_writes_of_one_user_through_the_function_make_one_row(database):
    """The advisory locks in the function serialise them (a race of 20 threads)."""
    start = threading.Barrier(20, timeout=30)
    saved, failures = [], []

    def write():
        with connect(database) as conn:
            start.wait()
            try:
                saved.append(profiles.write_profile(conn, user(7)))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

    threads = [threading.Thread(target=write) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and counts(database) == (1, 1)
    assert sorted(s.profile for s in saved) == ["created"] + ["updated"] * 19
    assert len({s.profile_id for s in saved}) == 1


@pytest.mark.parametrize("with_outbox", [False, True], ids=["alone", "with its outbox row"])
def test_a_unique_violation_from_a_writer_without_the_locks_is_retried_and_links_its_row(
        database, with_outbox):
    """A writer that takes no advisory lock inserts the address first and commits while
    the write waits on the e-mail index: the write's unique violation rolls it back, and
    its second run links that row."""
    saved, failures = [], []

    def write():
        with connect(database) as conn:
            try:
                saved.append(profiles.write_profile(
                    conn, user(5), also=to_outbox(user(5)) if with_outbox else None))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

    with psycopg.connect(database) as other:  # its transaction stays open until commit()
        other.execute("INSERT INTO profiles (email, cognito_user_id, role) "
                      "VALUES (%s, 'another-sub', 'user')", (user(5).email,))
        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.5)  # the write is waiting for this transaction on the e-mail index
        assert thread.is_alive()
        other.commit()
    thread.join(30)

    assert failures == [] and [s.profile for s in saved] == ["linked"]
    assert query(database, "SELECT cognito_user_id, role FROM profiles") == [(user(5).sub, "user")]
    assert counts(database) == (1, 1)
    assert query(database, "SELECT count(*) FROM app.registration_outbox") == [(int(with_outbox),)]


# -- EXECUTE, and nothing more ------------------------------------------------------------

@pytest.fixture
def names(pg_dsn):
    """The roles of `converged`, with names of their own (roles are server-wide), dropped
    with what they hold afterwards."""
    suffix = secrets.token_hex(3)
    made = {"writer": f"functions_writer_{suffix}", "trigger": f"functions_trigger_{suffix}"}
    yield made
    with connect(pg_dsn) as conn:
        for name in made.values():
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(f"DROP OWNED BY {name}")
                conn.execute(f"DROP ROLE {name}")


@pytest.fixture
def converged(write_config, pg_dsn, names):
    """fix-tables has migrated the database and converged a writer of the users' and the
    audit schema and Post-Confirmation's role; the config."""
    config = make_config(write_config, roles={names["writer"]: {"write": ["app", "audit"]},
                                              names["trigger"]: {"trigger": "post-confirmation"}})
    result = fix_tables(config, pg_dsn)
    assert result.status == "ok", result.error
    return config


def verify(config, dsn):
    with connect(dsn) as conn:
        return grants.verify(conn, config.database.roles, schemas=config.database.schemas)


def test_converged_roles_hold_exactly_their_declaration(converged, pg_dsn):
    assert verify(converged, pg_dsn) == []


def test_fix_tables_grants_execute_to_the_triggers_roles_and_takes_it_from_public(
        write_config, pg_dsn):
    migrate(write_config, pg_dsn)   # prod's roles
    expected = {("matbakh_post_confirmation", "public.write_profile"): True,
                ("matbakh_post_confirmation", "app.store_signups"): False,
                ("lambda_writer", "public.write_profile"): False,
                ("lambda_writer", "app.store_signups"): True,
                ("public", "public.write_profile"): False,
                ("public", "app.store_signups"): False}
    function_named = ("FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                      "WHERE n.nspname || '.' || p.proname = %s")
    for (role, function), can in expected.items():
        if role == "public":  # grantee 0 in an ACL: PUBLIC
            held = query(pg_dsn, "SELECT EXISTS (SELECT 1 FROM aclexplode((SELECT p.proacl "
                                 f"{function_named})) a WHERE a.grantee = 0)", (function,))
        else:
            held = query(pg_dsn, "SELECT has_function_privilege(%s, (SELECT p.oid "
                                 f"{function_named}), 'EXECUTE')", (role, function))
        assert held == [(can,)], (role, function)


def test_the_trigger_role_writes_through_the_function_and_no_further(write_config, pg_dsn):
    migrate(write_config, pg_dsn, roles={TRIGGER_ROLE: {"trigger": "post-confirmation"}})
    with connect(make_conninfo(pg_dsn, user=TRIGGER_ROLE)) as conn:
        assert profiles.write_profile(conn, user()).profile == "created"
        # Its caller's privileges: no SELECT on a column its grants leave out.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT role FROM profiles")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            signups.store(conn, [signup(1)], schemas=Schemas())
    assert counts(pg_dsn) == (1, 1)


def test_a_missing_execute_on_the_trigger_s_function_is_found(converged, pg_dsn, names):
    with connect(pg_dsn) as conn:
        conn.execute(f"REVOKE EXECUTE ON PROCEDURE public.write_profile FROM {names['trigger']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["trigger"], "missing", "EXECUTE", "routine public.write_profile")]


def test_execute_through_public_on_a_trigger_function_is_found(converged, pg_dsn, names):
    with connect(pg_dsn) as conn:
        conn.execute("GRANT EXECUTE ON FUNCTION app.store_signups TO PUBLIC")
    assert verify(converged, pg_dsn) == sorted(
        Finding(role, "extra", "EXECUTE", "routine app.store_signups")
        for role in names.values())


def test_a_direct_grant_on_another_function_is_found(converged, pg_dsn, names):
    with connect(pg_dsn) as conn:
        conn.execute(f"GRANT EXECUTE ON FUNCTION public.set_updated_at TO {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "extra", "EXECUTE", "routine public.set_updated_at")]


def test_fix_tables_revokes_an_execute_it_did_not_declare(converged, pg_dsn, names):
    with connect(pg_dsn) as conn:
        conn.execute(f"GRANT EXECUTE ON FUNCTION app.store_signups TO {names['trigger']}")
    result = fix_tables(converged, pg_dsn)
    assert result.status == "ok", result.error
    assert verify(converged, pg_dsn) == []
