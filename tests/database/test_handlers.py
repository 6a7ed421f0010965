"""The Cognito trigger handlers (lambdas/pre_signup, lambdas/post_confirmation) run on
the fixture events, against a real PostgreSQL migrated by fix-tables.

Each handler module is loaded from its file, as Lambda loads it; a fresh load is a cold
container, with its own cached connection. The handler reaches the database through
DB_DSN, as in a local run.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import threading
import time
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.engine import UNKNOWN
from runbook.steps import new_runner
from runbook.steps.database import DatabaseOutputs
from runbook.steps.store_secrets import SecretsOutputs
from runbook.output.progress import Progress
from tests.conftest import FIXTURES, REGION, REPO

EVENTS = FIXTURES / "events"
SUB = "0f6b2c1e-3d4a-4b5c-8d9e-1f2a3b4c5d6e"        # the fixture events' user
EMAIL = "lena.maier@example.com"
ANNA = "8c2d9e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f"       # a legacy profile
TRIGGER_ROLE = "matbakh_post_confirmation"
HANDLER_ENVIRONMENT = ("DB_DSN", "DB_AUTH", "DB_SECRET_ARN", "DB_HOST", "DB_PORT", "DB_NAME",
                       "DB_USER", "DB_SCHEMA", "DB_USERS_SCHEMA", "DB_AUDIT_SCHEMA", "ALLOWED_EMAIL_DOMAINS", "AUTO_CONFIRM_DOMAINS",
                       "EVENT_BUS_NAME")


@dataclass(frozen=True)
class Context:
    """The part of Lambda's context object the handlers read."""

    aws_request_id: str = "c0ffee00-0000-4000-8000-000000000001"


_loads = itertools.count()


def load_handler(name: str):
    """lambdas/<name>/handler.py as a new module: a cold Lambda container."""
    path = REPO / "lambdas" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_{next(_loads)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(fixture: str, /, *, source: str | None = None, **attributes) -> dict:
    """A copy of a fixture event with these user attributes (custom__role is custom:role);
    an attribute given as None is removed."""
    data = json.loads((EVENTS / f"{fixture}.json").read_text())
    if source is not None:
        data["triggerSource"] = source
    for key, value in attributes.items():
        key = key.replace("__", ":")
        if value is None:
            data["request"]["userAttributes"].pop(key, None)
        else:
            data["request"]["userAttributes"][key] = value
    return data


def sign_up(**attributes) -> dict:
    return event("post_confirmation_confirm_signup", **attributes)


def forgot_password(**attributes) -> dict:
    return event("post_confirmation_confirm_forgot_password", **attributes)


def signed_in(**attributes) -> dict:
    return event("post_authentication_authentication", **attributes)


def query(dsn, sql, params=None):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def counts(dsn, schema="public"):
    return query(dsn, f"SELECT (SELECT count(*) FROM {schema}.profiles), "
                      f"(SELECT count(*) FROM {schema}.private_profiles)")[0]


def profile_of(dsn, sub):
    return query(dsn, """
        SELECT p.email, p.display_name, p.language, p.role, pp.first_name, pp.last_name, pp.phone
          FROM profiles p LEFT JOIN private_profiles pp ON pp.user_id = p.id
         WHERE p.cognito_user_id = %s""", (sub,))


def log_lines(capsys) -> tuple[str, list[dict]]:
    out = capsys.readouterr().out
    return out, [json.loads(line) for line in out.splitlines()]


def migrate(write_config, dsn, *, roles=None, schema=None):
    """Run fix-tables on `dsn`, as test_fix_tables does (a dry run against a real database)."""
    def mutate(data):
        if roles is not None:
            data["database"]["roles"] = roles
        if schema is not None:
            data["database"]["schema"] = schema

    runner = new_runner(config_mod.load(write_config(mutate)), ClientFactory(REGION),
                    Progress(quiet=True), dry_run=True, database_dsn=dsn)
    runner.outputs.update({"database": DatabaseOutputs.standing_in("matbakh_main"),
    "store-secrets": SecretsOutputs(UNKNOWN, UNKNOWN)})
    result = runner.run_step("fix-tables")
    assert result.status == "ok", result.error


pytestmark = pytest.mark.usefixtures("handler_environment")  # tests/database/conftest.py


@pytest.fixture
def containers(cold_start):
    """containers() -> a new post_confirmation container (cold_start)."""
    return lambda: cold_start("post_confirmation")


@pytest.fixture
def post_confirmation(containers):
    return containers()


@pytest.fixture
def pre_signup():
    return load_handler("pre_signup")


# -- pre sign-up ------------------------------------------------------------------------

def test_pre_signup_returns_the_event_and_never_auto_confirms_by_default(pre_signup, capsys):
    incoming = event("pre_signup_signup")
    incoming["response"].update(autoConfirmUser=True, autoVerifyEmail=True, autoVerifyPhone=True)
    expected = copy.deepcopy(incoming)
    expected["response"].update(autoConfirmUser=False, autoVerifyEmail=False,
                                autoVerifyPhone=False)

    result = pre_signup.handler(incoming, Context())

    assert result is incoming and result == expected
    out, lines = log_lines(capsys)
    assert [line["message"] for line in lines] == ["Sign-up accepted"]
    assert lines[0]["email_domain"] == "example.com" and "@" not in out


def test_pre_signup_auto_confirms_only_a_configured_domain(pre_signup, monkeypatch):
    monkeypatch.setenv("AUTO_CONFIRM_DOMAINS", "other.test, EXAMPLE.com")
    confirmed = pre_signup.handler(event("pre_signup_signup"), Context())["response"]
    assert (confirmed["autoConfirmUser"], confirmed["autoVerifyEmail"]) == (True, True)

    monkeypatch.setenv("AUTO_CONFIRM_DOMAINS", "other.test,example.com.evil.test")
    elsewhere = pre_signup.handler(event("pre_signup_signup"), Context())["response"]
    assert (elsewhere["autoConfirmUser"], elsewhere["autoVerifyEmail"]) == (False, False)


@pytest.mark.parametrize("source", ["PreSignUp_SignUp", "PreSignUp_AdminCreateUser",
                                    "PreSignUp_ExternalProvider"])
def test_pre_signup_handles_each_sign_up_source(pre_signup, monkeypatch, source):
    monkeypatch.setenv("AUTO_CONFIRM_DOMAINS", "example.com")
    result = pre_signup.handler(event("pre_signup_signup", source=source), Context())
    assert result["triggerSource"] == source and result["response"]["autoConfirmUser"] is True


def test_pre_signup_rejects_a_domain_that_is_not_allowed(pre_signup, monkeypatch, capsys):
    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "matbakh.app, example.org")
    with pytest.raises(pre_signup.SignUpRejected) as rejected:
        pre_signup.handler(event("pre_signup_signup"), Context())
    assert str(rejected.value) == "Sign-ups with an e-mail address at example.com are not allowed"
    out, lines = log_lines(capsys)
    assert lines[-1]["message"] == "Sign-up rejected" and "@" not in out

    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "matbakh.app, Example.COM")
    assert pre_signup.handler(event("pre_signup_signup"), Context())["response"][
        "autoConfirmUser"] is False


@pytest.mark.parametrize("address, message", [
    (None, "An e-mail address is required to sign up"),
    ("  ", "An e-mail address is required to sign up"),
    ("lena.maier", "The e-mail address is not valid"),
    ("lena.maier@", "The e-mail address is not valid"),
    ("@example.com", "The e-mail address is not valid"),
    ("lena maier@example.com", "The e-mail address is not valid"),
    ("lena@@example.com", "The e-mail address is not valid"),
    ("lena@example", "The e-mail address is not valid"),
    ("lena..maier@example.com", "The e-mail address is not valid"),
    ("lena@-example.com", "The e-mail address is not valid"),
])
def test_pre_signup_rejects_a_missing_or_malformed_address(pre_signup, address, message):
    with pytest.raises(pre_signup.SignUpRejected) as rejected:
        pre_signup.handler(event("pre_signup_signup", email=address), Context())
    assert str(rejected.value) == message


def test_pre_signup_refuses_a_name_post_confirmation_could_not_store(pre_signup):
    # Accepted, the user would be confirmed with a profile that can never be written.
    with pytest.raises(ValueError, match="given_name contains a NUL character"):
        pre_signup.handler(event("pre_signup_signup", given_name="Le\x00na"), Context())


def test_pre_signup_rejects_an_event_of_another_trigger(pre_signup):
    with pytest.raises(ValueError, match="triggerSource is 'UserMigration_Authentication'"):
        pre_signup.handler(event("user_migration_authentication"), Context())


# -- post confirmation: the fixture events -----------------------------------------------

def test_confirm_sign_up_creates_the_profile_and_returns_the_event_unchanged(
        database, post_confirmation):
    incoming = sign_up()
    original = copy.deepcopy(incoming)

    result = post_confirmation.handler(incoming, Context())

    assert result is incoming and result == original
    assert profile_of(database, SUB) == [
        (EMAIL, "Lena Maier", "de", "owner", "Lena", "Maier", "+4915112345678")]
    assert counts(database) == (1, 1)


def test_sign_up_maps_name_and_locale_and_ignores_a_requested_role(database, post_confirmation):
    post_confirmation.handler(sign_up(name="Lena M.", locale="en-GB", custom__role="admin"),
                              Context())
    second = "aaaaaaaa-0000-4000-8000-000000000002"
    post_confirmation.handler(sign_up(sub=second, email="tarik@example.com", locale="tr",
                                      given_name=None, family_name=None, phone_number=None,
                                      custom__role="admin"), Context())

    assert profile_of(database, SUB)[0][1:4] == ("Lena M.", "en", "owner")
    assert profile_of(database, second) == [
        ("tarik@example.com", None, "de", "owner", None, None, None)]


def test_the_same_confirmation_delivered_three_times_gives_one_row_each(
        database, post_confirmation, containers):
    profile_ids = set()
    for handler in (post_confirmation, post_confirmation, containers()):
        assert handler.handler(sign_up(), Context()) == sign_up()
        profile_ids.update(row[0] for row in query(database, "SELECT id FROM profiles"))

    assert counts(database) == (1, 1) and len(profile_ids) == 1
    assert profile_of(database, SUB) == [
        (EMAIL, "Lena Maier", "de", "owner", "Lena", "Maier", "+4915112345678")]


def align_first_inserts(dsn):
    """Hold each first insert of a user until the next 0.2-second mark, so that racing
    deliveries reach the unique indexes at the same instant, as on a server with more
    cores than this machine has: unaligned, Python hands the 50 threads the CPU one by
    one and the race that INSERT ... ON CONFLICT loses is too narrow to hit."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION public.align_first_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NOT EXISTS (SELECT 1 FROM public.profiles
                              WHERE cognito_user_id = NEW.cognito_user_id) THEN
                PERFORM pg_sleep(0.2 - extract(epoch FROM clock_timestamp())::numeric % 0.2);
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER align_first_insert BEFORE INSERT ON public.profiles
              FOR EACH ROW EXECUTE FUNCTION public.align_first_insert()""")


def test_fifty_concurrent_deliveries_in_fifty_containers_give_one_row_each(database, containers,
                                                                          capsys):
    align_first_inserts(database)
    fifty = [containers() for _ in range(50)]
    for container in fifty:
        container.DATABASE.connection()  # warm: each has logged in before the race
    users = [(f"ffffffff-0000-4000-8000-00000000000{n}", f"racer{n}@example.com")
             for n in range(3)]
    failures: list[BaseException] = []

    for sub, email in users:  # each race is lost about half the time without the locks
        start = threading.Barrier(len(fifty), timeout=60)

        def deliver(container, number):
            start.wait()
            try:
                container.handler(sign_up(sub=sub, email=email),
                                  Context(aws_request_id=f"delivery-{number}"))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

        threads = [threading.Thread(target=deliver, args=(c, n)) for n, c in enumerate(fifty)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert failures == []
    assert query(database, "SELECT p.cognito_user_id, count(DISTINCT p.id), count(pp.id) "
                           "FROM profiles p JOIN private_profiles pp ON pp.user_id = p.id "
                           "GROUP BY 1 ORDER BY 1") == [(sub, 1, 1) for sub, _ in users]
    assert counts(database) == (3, 3)
    _, lines = log_lines(capsys)
    completed = [line for line in lines
                 if line["message"] == "Post-Confirmation processing completed"]
    assert len(completed) == 150
    assert len({c.DATABASE.connection().info.backend_pid for c in fifty}) == 50


def test_forgot_password_keeps_what_the_user_changed(database, post_confirmation):
    post_confirmation.handler(sign_up(), Context())
    query(database, "UPDATE profiles SET display_name = 'Lenchen', language = 'en' "
                    "RETURNING id")
    query(database, "UPDATE private_profiles SET first_name = 'Magdalena', phone = NULL "
                    "RETURNING id")
    # Cognito sends all the user's attributes; these are the ones from sign-up.
    incoming = forgot_password(name="Lena Maier", given_name="Lena", family_name="Maier",
                               phone_number="+4915112345678", locale="de")
    original = copy.deepcopy(incoming)

    assert post_confirmation.handler(incoming, Context()) == original

    assert profile_of(database, SUB) == [
        (EMAIL, "Lenchen", "en", "owner", "Magdalena", "Maier", None)]
    assert counts(database) == (1, 1)


def test_forgot_password_for_a_user_without_profile_creates_it(database, post_confirmation):
    incoming = forgot_password()
    assert post_confirmation.handler(incoming, Context()) is incoming
    assert profile_of(database, SUB) == [(EMAIL, None, "de", "owner", None, None, None)]
    post_confirmation.handler(forgot_password(), Context())
    assert counts(database) == (1, 1)


def without(path: str):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        del target[last]
    return change


def setting(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value
    return change


@pytest.mark.parametrize("change, field", [
    (without("request.userAttributes.sub"), "request.userAttributes.sub is missing"),
    (without("request.userAttributes.email"), "request.userAttributes.email is missing"),
    (setting("request.userAttributes.sub", " "), "request.userAttributes.sub is empty"),
    (setting("triggerSource", "PostConfirmation_Unknown"),
     "triggerSource is 'PostConfirmation_Unknown'"),
    (without("triggerSource"), "triggerSource is missing"),
    (setting("request.userAttributes.email_verified", True),
     "request.userAttributes.email_verified is a bool, not a string"),
    (setting("request.userAttributes", ["sub", SUB]), "request.userAttributes is missing or not"),
    (setting("request", None), "request is missing or not an object"),
    # Found by test_handlers_fuzz: PostgreSQL text cannot hold either.
    (setting("request.userAttributes.given_name", "Le\x00na"),
     "request.userAttributes.given_name contains a NUL character"),
    (setting("request.userAttributes.sub", "\ud800"),
     "request.userAttributes.sub contains a lone surrogate (U+D800)"),
], ids=["no sub", "no email", "blank sub", "unknown trigger source", "no trigger source",
        "attribute not a string", "attributes not an object", "no request", "NUL in a name",
        "lone surrogate in the sub"])
def test_a_malformed_event_is_refused_and_writes_nothing(database, post_confirmation, capsys,
                                                         change, field):
    incoming = sign_up()
    change(incoming)
    with pytest.raises(ValueError) as refused:
        post_confirmation.handler(incoming, Context())
    assert isinstance(refused.value, post_confirmation.trigger.MalformedEvent)
    assert str(refused.value).startswith(f"malformed Cognito event: {field}")
    assert counts(database) == (0, 0)
    out, lines = log_lines(capsys)
    assert lines[-1]["message"] == "Post-Confirmation event rejected" and "@" not in out


# -- post confirmation: logs, errors, connections -----------------------------------------

def test_log_lines_carry_sub_source_and_request_id_and_no_address(database, post_confirmation,
                                                                  capsys):
    post_confirmation.handler(sign_up(), Context(aws_request_id="req-1"))
    post_confirmation.handler(forgot_password(), Context(aws_request_id="req-2"))

    out, lines = log_lines(capsys)
    assert [line["message"] for line in lines] == [
        "User confirmation audit", "Profile created/updated",
        "Post-Confirmation processing completed",
        "User confirmation audit", "Profile unchanged", "Post-Confirmation processing completed"]
    assert {(line["sub"], line["trigger_source"], line["request_id"]) for line in lines} == {
        (SUB, "PostConfirmation_ConfirmSignUp", "req-1"),
        (SUB, "PostConfirmation_ConfirmForgotPassword", "req-2")}
    assert lines[0]["email_domain"] == "example.com"
    assert lines[1]["profile"] == "created" and lines[1]["private_profile"] == "created"
    assert EMAIL not in out and "lena.maier" not in out and "@" not in out
    assert "+4915112345678" not in out


def test_a_lone_surrogate_or_line_separator_in_the_event_keeps_each_log_line_one_object(
        database, post_confirmation, capsys):
    # Found by test_handlers_fuzz: the surrogate raised UnicodeEncodeError from the log
    # call, and U+2028 split a line in two for the local invoker's splitlines().
    incoming = sign_up()
    incoming["userPoolId"] = "eu-central-1_\ud800\u2028\x85x"

    assert post_confirmation.handler(incoming, Context()) is incoming

    out, lines = log_lines(capsys)
    assert len(out.splitlines()) == len(lines) == 3
    assert lines[0]["user_pool_id"] == "eu-central-1_\ud800\u2028\x85x"
    assert counts(database) == (1, 1)


def test_a_database_error_is_logged_and_raised_without_the_address(database, post_confirmation,
                                                                  capsys):
    other = "bbbbbbbb-0000-4000-8000-000000000002"
    post_confirmation.handler(sign_up(), Context())
    post_confirmation.handler(sign_up(sub=other, email="bob.berg@example.org"), Context())
    capsys.readouterr()

    # Lena's sub now claims Bob's address: the unique index on email refuses it.
    with pytest.raises(post_confirmation.ProfileNotSaved) as failed:
        post_confirmation.handler(sign_up(email="bob.berg@example.org"), Context())

    assert str(failed.value).startswith("profile not saved: PostgreSQL error 23505: duplicate key")
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    out, lines = log_lines(capsys)
    assert lines[-1]["message"] == "Post-Confirmation processing failed"
    assert lines[-1]["sub"] == SUB and lines[-1]["reason"].startswith("PostgreSQL error 23505")
    assert "bob.berg" not in out + str(failed.value) and "@" not in out
    assert profile_of(database, SUB)[0][0] == EMAIL


def test_a_locked_table_fails_the_trigger_well_within_cognitos_five_seconds(
        database, post_confirmation, capsys):
    with psycopg.connect(database) as blocker:  # a stuck session holding a lock
        # Released after 6 s at the latest: a handler that waits for it fails the test.
        blocker.execute("SET idle_in_transaction_session_timeout = '6s'")
        blocker.execute("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(post_confirmation.ProfileNotSaved, match="55P03"):
            post_confirmation.handler(sign_up(), Context())
        took = time.monotonic() - started
    assert 1.5 < took < 4
    assert counts(database) == (0, 0)
    post_confirmation.handler(sign_up(), Context())  # the same connection serves on
    assert counts(database) == (1, 1)


def test_a_connection_ended_by_the_server_is_replaced_and_the_work_retried(
        database, post_confirmation, capsys):
    post_confirmation.handler(sign_up(), Context())
    ended = post_confirmation.DATABASE.connection().info.backend_pid
    assert query(database, "SELECT pg_terminate_backend(%s, 5000)", (ended,)) == [(True,)]

    second = "cccccccc-0000-4000-8000-000000000003"
    post_confirmation.handler(sign_up(sub=second, email="jonas@example.com"), Context())

    assert counts(database) == (2, 2) and profile_of(database, second)
    assert post_confirmation.DATABASE.connection().info.backend_pid != ended
    _, lines = log_lines(capsys)
    assert "Database connection lost; reconnecting" in [line["message"] for line in lines]


def test_the_connection_is_opened_once_per_container(database, post_confirmation):
    post_confirmation.handler(sign_up(), Context())
    first = post_confirmation.DATABASE.connection()
    post_confirmation.handler(forgot_password(), Context())
    assert post_confirmation.DATABASE.connection() is first
    assert query(database, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND application_name = 'post-confirmation'") \
        == [(1,)]


def test_db_schema_selects_the_tables(write_config, pg_dsn, monkeypatch, post_confirmation):
    migrate(write_config, pg_dsn, schema="shop")
    monkeypatch.setenv("DB_DSN", pg_dsn)
    monkeypatch.setenv("DB_SCHEMA", "shop")
    post_confirmation.handler(sign_up(), Context())
    assert counts(pg_dsn, "shop") == (1, 1)
    assert query(pg_dsn, "SELECT to_regclass('public.profiles')") == [(None,)]


# -- post confirmation: the Supabase-era database, as the trigger's role --------------------

def test_a_legacy_profile_with_the_address_in_another_case_is_linked(
        write_config, legacy_dsn, monkeypatch, post_confirmation, capsys):
    migrate(write_config, legacy_dsn)
    monkeypatch.setenv("DB_DSN", legacy_dsn)
    post_confirmation.handler(sign_up(email="Anna.Schmidt@Example.com", given_name="Anna",
                                      family_name="Schmidt", phone_number=None, locale="en"),
                              Context())

    assert query(legacy_dsn, "SELECT id::text, role, language, display_name FROM profiles "
                             "WHERE cognito_user_id = %s", (SUB,)) == [
        (ANNA, "user", "de", "Anna Schmidt")]  # role and language stay
    assert query(legacy_dsn, "SELECT count(*) FROM profiles") == [(3,)]
    assert query(legacy_dsn, "SELECT user_id::text, first_name FROM private_profiles") == [
        (ANNA, "Anna")]
    _, lines = log_lines(capsys)
    assert [line["profile"] for line in lines if line["message"] == "Profile created/updated"] \
        == ["linked"]


def test_a_migrated_legacy_user_s_first_sign_in_links_the_legacy_profile_once(
        write_config, legacy_dsn, monkeypatch, post_confirmation, capsys):
    """After a UserMigration sign-in no Post-Confirmation fires: Post-Authentication links
    the legacy profile (address in another case) to the new sub, keeping its role, and
    later sign-ins change nothing."""
    migrate(write_config, legacy_dsn)
    monkeypatch.setenv("DB_DSN", legacy_dsn)
    before = query(legacy_dsn, "SELECT id::text, email, role, language, display_name "
                               "FROM profiles ORDER BY id")

    returned = post_confirmation.handler(signed_in(email="Anna.Schmidt@Example.com"), Context())
    post_confirmation.handler(signed_in(email="Anna.Schmidt@Example.com"), Context())

    assert returned == signed_in(email="Anna.Schmidt@Example.com")
    assert query(legacy_dsn, "SELECT id::text FROM profiles WHERE cognito_user_id = %s",
                 (SUB,)) == [(ANNA,)]
    # Nothing else changed: the same rows, values and roles; its private profile made.
    assert query(legacy_dsn, "SELECT id::text, email, role, language, display_name "
                             "FROM profiles ORDER BY id") == before
    assert counts(legacy_dsn) == (3, 1)
    out, lines = log_lines(capsys)
    assert [line["message"] for line in lines] == [
        "Profile linked on sign-in", "Post-Authentication processing completed",
        "Post-Authentication processing completed"]
    assert [line.get("profile") for line in lines[1:]] == ["linked", "unchanged"]
    assert "anna.schmidt" not in out.lower()


def test_a_sign_in_of_a_user_with_a_profile_reads_one_row_and_writes_nothing(
        database, post_confirmation, capsys):
    post_confirmation.handler(sign_up(), Context())
    capsys.readouterr()
    with psycopg.connect(database, autocommit=True) as conn:
        writes = conn.execute("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables "
                              "WHERE relname = 'profiles'").fetchone()[0]

    post_confirmation.handler(signed_in(), Context())

    _, lines = log_lines(capsys)
    assert [(line["message"], line.get("profile")) for line in lines] == [
        ("Post-Authentication processing completed", "unchanged")]
    assert counts(database) == (1, 1)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        assert conn.execute("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables "
                            "WHERE relname = 'profiles'").fetchone()[0] == writes


def test_a_sign_in_without_any_profile_creates_one(database, post_confirmation, capsys):
    """A user whose sign-up trigger failed gets the profile at the next sign-in."""
    post_confirmation.handler(signed_in(email="new.user@example.com"), Context())

    assert query(database, "SELECT email, role FROM profiles WHERE cognito_user_id = %s",
                 (SUB,)) == [("new.user@example.com", "owner")]
    _, lines = log_lines(capsys)
    assert lines[0]["message"] == "Profile created on sign-in"


def test_the_handler_works_as_the_trigger_role_with_least_privilege(
        write_config, legacy_dsn, monkeypatch, containers):
    migrate(write_config, legacy_dsn, roles={TRIGGER_ROLE: {"trigger": "post-confirmation"}})
    monkeypatch.setenv("DB_DSN", make_conninfo(legacy_dsn, user=TRIGGER_ROLE))
    handler = containers()

    handler.handler(sign_up(), Context())
    handler.handler(sign_up(), Context())  # a retry
    handler.handler(forgot_password(), Context())
    handler.handler(forgot_password(sub="dddddddd-0000-4000-8000-000000000004",
                                    email="new.user@example.com"), Context())
    handler.handler(sign_up(sub="eeeeeeee-0000-4000-8000-000000000005",
                            email="karim.haddad@example.com"), Context())
    # Post-Authentication: a legacy profile linked on a migrated user's first sign-in.
    handler.handler(signed_in(sub="ffffffff-0000-4000-8000-000000000006",
                              email="Anna.Schmidt@example.com"), Context())
    handler.handler(signed_in(sub="ffffffff-0000-4000-8000-000000000006",
                              email="Anna.Schmidt@example.com"), Context())

    assert query(legacy_dsn, "SELECT usename FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = 'post-confirmation'") \
        == [(TRIGGER_ROLE,)]
    assert query(legacy_dsn, "SELECT email, role FROM profiles ORDER BY email") == [
        ("anna.schmidt@example.com", "user"), ("karim.haddad@example.com", "admin"),
        ("legacy.owner@example.com", "user"), (EMAIL, "owner"),
        ("new.user@example.com", "owner")]
    # The legacy owner has no private profile; Anna's was made when hers was linked.
    assert counts(legacy_dsn) == (5, 4)
    assert query(legacy_dsn, "SELECT cognito_user_id, role FROM profiles WHERE id = %s",
                 (ANNA,)) == [("ffffffff-0000-4000-8000-000000000006", "user")]
