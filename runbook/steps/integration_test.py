"""Step `integration-test`: prove the pipeline end to end with a real sign-up.

A unique test user (runbook-it+<run id>@<integration_test.email_domain>) signs up in
the environment's pool and is confirmed with AdminConfirmSignUp, which fires the
Post-Confirmation trigger. The checks then run in this order, under these names, so
that reports compare across runs:

  cognito_signup             SignUp through the app client returns the user's sub
  post_confirmation_trigger  the confirmation (and with it the trigger) succeeded within
                             Cognito's 5 s
  profile_row                the trigger's profile appears (polled), keyed on the sub
  private_profile_row        and its private profile
  authentication             USER_PASSWORD_AUTH returns tokens
  jwt_validation             both tokens verify against the pool's JWKS, with iss,
                             aud/client_id, token_use, exp and the custom attributes
  cloudwatch_logs            the handler's three messages for this sub, and no error line
  db_consistency             one profile and one private profile, foreign key, unique
                             and not-null constraints holding for them
  database_grants            each role of database.roles holds exactly what it should and
                             nothing more, as PostgreSQL answers it (has_*_privilege, the
                             grant views, pg_default_acl, rds_iam membership;
                             runbook.database.grants); the functions log in as these
  cleanup                    the Cognito user is deleted, and deleting the profile
                             removed the private profile; with phase a4 in the file, the
                             user's `users` and registration-outbox rows are deleted too,
                             once its user.registered event has been stored (until a4's
                             consumer is deployed, the event waits in the outbox)

A failed check fails the step (exit 1); the checks after it still run, except those that
need what it failed to produce, which are `skipped` naming it. Cleanup always runs, also
after a failure or Ctrl-C. Not idempotent: every run makes and deletes a user.

The report holds each check's status, duration and detail, and the timings (sign-up to
row, the trigger against its 5 s budget); it masks the e-mail address and holds no
password or token. In a dry run, the sandbox fires the triggers (runbook.sandbox.cognito).
"""

from __future__ import annotations

import json
import os
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from runbook.aws import tokens
from runbook.database.access import DatabaseAccess
from runbook.engine import Change, Outputs, Step
from runbook.errors import RunbookError, StepFailed
from runbook.lambda_runtime import db as dbconnect
from runbook.lambda_runtime.emails import mask

STEP_NAME = "integration-test"
CHECKS = ("cognito_signup", "post_confirmation_trigger", "profile_row", "private_profile_row",
          "authentication", "jwt_validation", "cloudwatch_logs", "db_consistency",
          "database_grants", "cleanup")
LOG_MESSAGES = ("User confirmation audit", "Profile created/updated",
                "Post-Confirmation processing completed")
TRIGGER_BUDGET_MS = 5000   # Cognito waits this long for a trigger
POLL_INTERVAL_S = 0.5
LOG_POLL_INTERVAL_S = 2.0


class CheckFailed(RunbookError):
    """A check's finding; the message is its detail in the report."""


@dataclass
class Check:
    name: str
    status: str = "skipped"
    duration_ms: int = 0
    detail: str = "not reached"

    def as_report(self) -> dict:
        return {"name": self.name, "status": self.status, "duration_ms": self.duration_ms,
                "detail": self.detail}


@dataclass
class TestUser:
    run_id: str
    email: str = field(repr=False)
    password: str = field(repr=False)
    attributes: dict = field(default_factory=dict)
    sub: str | None = None
    profile_id: str | None = None
    tokens: dict | None = field(default=None, repr=False)
    signed_up_at: float = 0.0


@dataclass
class TestState:
    pool_id: str
    client_id: str
    function_name: str
    database: Any                         # step database's outputs
    secrets: Any                          # step store-secrets' outputs
    user: TestUser
    # Post-Confirmation's events reach phase a4's consumer: the user's event will reach
    # `users`, and cleanup waits for it before deleting the row.
    publishing: bool = False
    extra: dict = field(default_factory=dict)   # what a subclass's read adds


@dataclass(frozen=True)
class TestOutputs(Outputs):
    run_id: str
    checks_passed: int
    checks: int


class IntegrationTest(DatabaseAccess, Step):
    name = STEP_NAME
    CHECKS = CHECKS

    def __init__(self, ctx, inputs=None):
        super().__init__(ctx, inputs)
        self.checks = {name: Check(name) for name in self.CHECKS}
        self.timings: dict[str, int | None] = {}
        self.ran = False
        self.conn = None

    # -- read and plan -------------------------------------------------------------------

    def read(self) -> TestState:
        cognito = self.inputs.cognito
        deployed = self.inputs.deploy_post_confirmation
        run_id = uuid.uuid4().hex[:12]
        settings = self.config.integration_test
        user = TestUser(run_id, f"runbook-it+{run_id}@{settings.email_domain}",
                        new_password(self.config.cognito.password_policy.min_length),
                        custom_attribute_values(self.config.cognito.custom_attributes))
        return TestState(cognito.user_pool_id, cognito.client_id,
                         deployed.function_name, self.inputs.database,
                         self.inputs.store_secrets, user, self._publishing())

    def _publishing(self) -> bool:
        """Whether the trigger's events reach `users` now: phase a4's consumer has its
        enabled event source mapping. Until then (a4 not run yet, or stopped part way)
        an event reaches no consumer, the registration waits in the outbox, and cleanup
        has nothing to wait for."""
        if not self.config.publishes_registrations():
            return False
        from runbook.aws.api import or_none, pages

        consumer = self.config.function_name("process_user_signup")
        mappings = or_none(lambda: pages(self.client("lambda"), "list_event_source_mappings",
                                         "EventSourceMappings", FunctionName=consumer))
        return any(m.get("State") == "Enabled" for m in mappings or ())

    def plan(self, state: TestState) -> list[Change]:
        return [Change("create", f"cognito-idp:user {mask(state.user.email)}", "run_checks", {},
                       {"checks": ", ".join(self.CHECKS),
                        "afterwards": "the user and its rows are deleted"},
                       run=self.run_checks)]

    # -- apply: the checks ---------------------------------------------------------------

    def run_checks(self, api, state: TestState) -> None:
        from runbook.sandbox.cognito import users

        self.ran = True
        self._state = state  # what _db() logs in with
        self.users = users(self.ctx, pool_id=state.pool_id, client_id=state.client_id)
        try:
            self.sequence(state)
        finally:
            self._check("cleanup", self.cleanup, state)
        failed = [c for c in self.checks.values() if c.status == "failed"]
        if failed:
            # Each with its finding, shortened: the step's error is all a caller that
            # reads no report (the crash sweep, a CI log) sees.
            raise StepFailed(self.name, f"cognito-idp:user {mask(state.user.email)}",
                             f"{len(failed)} of {len(self.CHECKS)} checks failed: "
                             + "; ".join(f"{c.name} ({_shorten(c.detail)})" for c in failed))

    def sequence(self, state: TestState) -> None:
        """The checks before cleanup, in CHECKS' order."""
        self._check("cognito_signup", self.sign_up, state)
        self._check("post_confirmation_trigger", self.confirm, state, needs="cognito_signup")
        self._check("profile_row", self.profile_row, state, needs="cognito_signup")
        self._check("private_profile_row", self.private_profile_row, state,
                    needs="profile_row")
        # A failed trigger does not undo the confirmation: the user can sign in.
        self._check("authentication", self.authenticate, state, needs="cognito_signup")
        self._check("jwt_validation", self.validate_tokens, state, needs="authentication")
        self._check("cloudwatch_logs", self.logs, state, needs="cognito_signup")
        self._check("db_consistency", self.consistency, state, needs="private_profile_row")
        self._check("database_grants", self.database_grants, state)

    def _check(self, name: str, run, state: TestState, *, needs: str | None = None) -> None:
        check = self.checks[name]
        if needs and self.checks[needs].status != "ok":
            check.status, check.detail = "skipped", f"not run: {needs} did not pass"
            return
        started = time.monotonic()
        try:
            check.detail = run(state)
            check.status = "ok"
        except CheckFailed as exc:
            check.status, check.detail = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - an AWS or database error is the finding
            check.status, check.detail = "failed", _describe(exc)
        except BaseException:  # Ctrl-C: recorded, then cleanup runs (run_checks)
            check.status, check.detail = "failed", "interrupted by the operator"
            raise
        finally:
            check.duration_ms = int((time.monotonic() - started) * 1000)
            self.ctx.progress.line(f"  {check.status:<6} {name}: {check.detail}",
                                   fg={"ok": "green", "failed": "red"}.get(check.status),
                                   dim=check.status == "skipped")

    def sign_up(self, state: TestState) -> str:
        user = state.user
        user.signed_up_at = time.monotonic()
        signed = self.users.sign_up(user.email, user.password, dict(user.attributes))
        user.sub = signed["UserSub"]
        confirmed = "confirmed" if signed["UserConfirmed"] else "unconfirmed"
        return f"signed up {mask(user.email)}: sub {user.sub}, {confirmed}"

    def confirm(self, state: TestState) -> str:
        started = time.monotonic()
        self.users.admin_confirm_sign_up(state.user.email)
        call_ms = int((time.monotonic() - started) * 1000)
        invocations = getattr(self.users, "invocations", [])
        # In the sandbox the invocation is timed apart from its cold start's init (which
        # a local process's start does not measure: see the sandbox's `simulated`); on
        # AWS the synchronous call bounds both.
        invocation = invocations[-1] if invocations else None
        trigger_ms = invocation.duration_ms if invocation else call_ms
        init_ms = invocation.init_ms if invocation else None
        self.timings.update(trigger_ms=trigger_ms, trigger_budget_ms=TRIGGER_BUDGET_MS)
        if init_ms is not None:
            self.timings["trigger_init_ms"] = init_ms
        cold = "" if init_ms is None else f" (after a {init_ms} ms init, not counted here)"
        if trigger_ms > TRIGGER_BUDGET_MS:
            raise CheckFailed(f"the trigger took {trigger_ms} ms, over Cognito's "
                              f"{TRIGGER_BUDGET_MS} ms{cold}")
        return (f"AdminConfirmSignUp fired Post-Confirmation: {trigger_ms} ms of the "
                f"{TRIGGER_BUDGET_MS} ms budget{cold}")

    def profile_row(self, state: TestState) -> str:
        user = state.user
        row = self._poll(f"SELECT id FROM {self._table('profiles')} WHERE cognito_user_id = %s",
                         (user.sub,), "the profile")
        user.profile_id = str(row[0])
        self.timings["signup_to_row_ms"] = int((time.monotonic() - user.signed_up_at) * 1000)
        return (f"profile {user.profile_id} for sub {user.sub} "
                f"{self.timings['signup_to_row_ms']} ms after sign-up")

    def private_profile_row(self, state: TestState) -> str:
        self._poll(f"SELECT user_id FROM {self._table('private_profiles')} WHERE user_id = %s",
                   (state.user.profile_id,), "the private profile")
        return f"private profile of profile {state.user.profile_id}"

    def authenticate(self, state: TestState) -> str:
        result = self.users.sign_in(state.user.email, state.user.password)
        missing = [k for k in ("IdToken", "AccessToken", "RefreshToken") if not result.get(k)]
        if missing:
            raise CheckFailed(f"USER_PASSWORD_AUTH returned no {', '.join(missing)}")
        state.user.tokens = result
        return (f"USER_PASSWORD_AUTH returned ID, access and refresh tokens "
                f"(expire in {result.get('ExpiresIn')} s)")

    def validate_tokens(self, state: TestState) -> str:
        pool = tokens.Pool(self.ctx.aws.region, state.pool_id, state.client_id)
        keys = tokens.key_source(pool, cognito_endpoint(self.ctx.aws))
        try:
            checked = tokens.verify(state.user.tokens["IdToken"], state.user.tokens["AccessToken"],
                                    pool, keys, state.user.attributes)
        except tokens.TokenInvalid as exc:
            raise CheckFailed(str(exc)) from None
        return (f"ID and access tokens: RS256 signature by key {checked['kid']!r} of the pool's "
                f"JWKS, iss, aud/client_id, token_use and exp hold; ID token carries "
                f"{', '.join(checked['attributes']) or 'no custom attribute'}")

    def logs(self, state: TestState) -> str:
        group = f"/aws/lambda/{state.function_name}"
        sub, logs = state.user.sub, self.client("logs")
        deadline = time.monotonic() + self.config.integration_test.log_timeout_s
        while True:
            lines = []
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, filterPattern=f'"{sub}"',
                startTime=int((time.time() - 3600) * 1000))
            for page in pages:
                lines += [_json(event["message"]) for event in page.get("events", ())]
            records = [line for line in lines if line is not None and line.get("sub") == sub]
            seen = {r.get("message") for r in records}
            errors = [r for r in records if r.get("level") == "ERROR"]
            if errors:
                raise CheckFailed(f"{group} has an error line for this sub: "
                                  f"{errors[0].get('message')}: {errors[0].get('reason', '')}")
            if all(m in seen for m in LOG_MESSAGES):
                completed = next(r for r in records
                                 if r.get("message") == "Post-Confirmation processing completed")
                self.timings["handler_ms"] = completed.get("duration_ms")
                return f"{group}: {', '.join(LOG_MESSAGES)} for this sub; no error line"
            if time.monotonic() >= deadline:
                missing = [m for m in LOG_MESSAGES if m not in seen]
                raise CheckFailed(f"{group} lacks {', '.join(missing)} for this sub after "
                                  f"{self.config.integration_test.log_timeout_s} s")
            self.ctx.sleep(LOG_POLL_INTERVAL_S)

    def consistency(self, state: TestState) -> str:
        conn, profiles, private = self._db(), self._table("profiles"), self._table("private_profiles")
        user = state.user
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            counts = conn.execute(
                f"SELECT (SELECT count(*) FROM {profiles} WHERE cognito_user_id = %s),"
                f" (SELECT count(*) FROM {profiles} WHERE lower(email) = lower(%s)),"
                f" (SELECT count(*) FROM {private} pp JOIN {profiles} p ON p.id = pp.user_id"
                f"   WHERE p.cognito_user_id = %s)",
                (user.sub, user.email, user.sub)).fetchone()
            unvalidated = [row[0] for row in conn.execute(
                "SELECT conname FROM pg_constraint WHERE NOT convalidated AND conrelid IN "
                "(%s::regclass, %s::regclass)", (profiles, private))]
            nulls = _null_columns(conn, self.config.database.schema, user.profile_id)
        problems = []
        if counts != (1, 1, 1):
            problems.append(f"expected one profile for the sub, one for the address and one "
                            f"private profile joined to it; found {counts[0]}, {counts[1]}, "
                            f"{counts[2]}")
        if unvalidated:
            problems.append(f"constraints not validated: {', '.join(sorted(unvalidated))}")
        if nulls:
            problems.append(f"NOT NULL columns holding null: {', '.join(nulls)}")
        if problems:
            raise CheckFailed("; ".join(problems))
        return ("one profile and one private profile, joined by the foreign key; unique "
                "sub and address; every NOT NULL column set; every constraint validated")

    def database_grants(self, state: TestState) -> str:
        """Whether each role of database.roles holds exactly what it should, as PostgreSQL
        answers it (runbook.database.grants): the functions' logins may write what their
        statements write and read only the columns those statements read."""
        from runbook.database import grants

        roles = self.config.database.roles
        schemas = self.config.database.schemas
        conn = self._db()
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            snapshot = grants.read(conn, roles)
        found = grants.findings(snapshot, roles, schemas=schemas)
        if found:
            raise CheckFailed(grants.describe(found))
        return grants.summary(snapshot, roles, schemas=schemas)

    def cleanup(self, state: TestState) -> str:
        """Delete the Cognito user, then its rows, the rows also when the user could not
        be deleted: a throttled AdminDeleteUser used to leave both behind."""
        user, done, user_left = state.user, [], False
        try:
            self.users.admin_delete_user(user.email)
            done.append("deleted the Cognito user")
        except Exception as exc:  # noqa: BLE001
            if "UserNotFoundException" in _describe(exc):
                done.append("no Cognito user to delete")
            else:
                user_left = True
                done.append(f"the Cognito user {mask(user.email)} could not be deleted "
                            f"(delete it by hand): {_describe(exc)}")
        try:
            conn = self._db()
        except Exception as exc:  # noqa: BLE001 - the user is gone; say why the rows are not
            raise CheckFailed(f"{'; '.join(done)}; the profile rows could not be deleted: "
                              f"{_describe(exc)}") from None
        profiles, private = self._table("profiles"), self._table("private_profiles")
        with conn.transaction():
            ids = [row[0] for row in conn.execute(
                f"DELETE FROM {profiles} WHERE cognito_user_id = %s OR lower(email) = lower(%s) "
                "RETURNING id", (user.sub or "", user.email))]
            left = conn.execute(f"SELECT count(*) FROM {private} WHERE user_id = ANY(%s)",
                                (ids,)).fetchone()[0]
            if left:
                raise CheckFailed(f"deleting the profile left {left} private profile(s): the "
                                  "foreign key does not cascade")
        if ids:
            done.append("deleting the profile removed the private profile (cascade)")
        else:
            done.append("no profile to delete")
        if self.config.publishes_registrations() and user.sub:
            settled = self.forget_registrations(state, [user.sub])
            done.append(settled)
        if user_left:
            raise CheckFailed("; ".join(done))
        return "; ".join(done)

    def forget_registrations(self, state: TestState, subs: list[str], *,
                             whose: str = "the test") -> str:
        """Delete the `users`, registration-outbox and audit rows of `subs` (phase a4). When the
        consumer is deployed, each one's event is on its way to `users`: first wait
        (row_timeout_s) for the consumer to store it, which removes its outbox row, so
        that no row appears after the cleanup. Raises CheckFailed if one is still on its
        way."""
        conn, users, outbox = self._db(), self._table("users"), self._table("registration_outbox")
        pending: list = []
        if state.publishing:
            deadline = time.monotonic() + self.config.integration_test.row_timeout_s
            while True:
                pending = [row[0] for row in conn.execute(
                    f"SELECT o.cognito_id FROM {outbox} o WHERE o.cognito_id = ANY(%s) AND NOT "
                    f"EXISTS (SELECT 1 FROM {users} u WHERE u.cognito_id = o.cognito_id)",
                    (subs,))]
                if not pending or time.monotonic() >= deadline:
                    break
                self.ctx.sleep(POLL_INTERVAL_S)
        with conn.transaction():
            stored = conn.execute(f"DELETE FROM {users} WHERE cognito_id = ANY(%s)",
                                  (subs,)).rowcount
            waiting = conn.execute(f"DELETE FROM {outbox} WHERE cognito_id = ANY(%s)",
                                   (subs,)).rowcount
            audited = conn.execute(f"DELETE FROM {self._table('registrations')} "
                                   "WHERE cognito_id = ANY(%s)", (subs,)).rowcount
        if pending:
            raise CheckFailed(f"{len(pending)} registration(s) of the test were not stored "
                              f"within {self.config.integration_test.row_timeout_s} s; their "
                              "events may still make a users row, to delete by hand "
                              f"(cognito_id {', '.join(pending)})")
        return (f"deleted {stored} users row(s), {waiting} registration-outbox row(s) and "
                f"{audited} audit row(s) of {whose}")

    # -- the database ------------------------------------------------------------------------

    def _db(self):
        if self.conn is None:
            target = self.database_target(self._state.database, self._state.secrets)
            if target is None:
                raise CheckFailed("the cluster does not exist yet")
            self.conn = self.connect_database(target)
            self.conn.autocommit = True
        return self.conn

    def _table(self, name: str) -> str:
        from psycopg import sql

        return sql.Identifier(self.config.database.schemas.of(name), name).as_string(None)

    def _poll(self, query: str, params: tuple, what: str):
        timeout = self.config.integration_test.row_timeout_s
        deadline = time.monotonic() + timeout
        conn = self._db()
        while True:
            row = conn.execute(query, params).fetchone()
            if row is not None:
                return row
            if time.monotonic() >= deadline:
                raise CheckFailed(f"{what} did not appear within {timeout} s")
            self.ctx.sleep(POLL_INTERVAL_S)

    # -- report --------------------------------------------------------------------------

    def evidence(self) -> dict:
        if not self.ran:
            return {}
        return {"checks": [c.as_report() for c in self.checks.values()],
                "timings": dict(self.timings)}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def outputs(self, state: TestState) -> TestOutputs:
        passed = sum(c.status == "ok" for c in self.checks.values())
        return TestOutputs(run_id=state.user.run_id, checks_passed=passed,
                           checks=len(self.CHECKS))


# -- helpers ---------------------------------------------------------------------------------

def new_password(min_length: int) -> str:
    """A password any Cognito policy of `min_length` accepts: upper, lower, digit, symbol."""
    alphabet = string.ascii_letters + string.digits
    body = "".join(secrets.choice(alphabet) for _ in range(max(min_length, 16)))
    return f"Aa1!{body}"


def custom_attribute_values(attributes) -> dict[str, str]:
    """A value for each configured custom attribute, to find again in the ID token."""
    values = {}
    for name, attribute in attributes.items():
        if not attribute.mutable:
            continue  # still settable at sign-up, but kept out: nothing to prove with it
        value = "1" if attribute.type == "Number" else "runbook-it"[:attribute.max_length]
        values[f"custom:{name}"] = value
    return values


def cognito_endpoint(aws) -> str | None:
    """Where Cognito answers when it is not AWS: the sandbox, or AWS_ENDPOINT_URL."""
    return (aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDP")
            or os.environ.get("AWS_ENDPOINT_URL"))


def _null_columns(conn, schema: str, profile_id: str) -> list[str]:
    from psycopg import sql

    found = []
    for table, key in (("profiles", "id"), ("private_profiles", "user_id")):
        columns = [row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND is_nullable = 'NO' ORDER BY ordinal_position",
            (schema, table))]
        if not columns:
            continue
        query = sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
            sql.SQL(", ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in columns),
            sql.Identifier(schema, table), sql.Identifier(key))
        row = conn.execute(query, (profile_id,)).fetchone() or ()
        found += [f"{table}.{c}" for c, null in zip(columns, row) if null]
    return found


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _json(message: str) -> dict | None:
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _describe(exc: BaseException) -> str:
    from runbook.engine import explain

    if isinstance(exc, dbconnect.ConnectError):
        return str(exc)
    return mask(explain(exc))


STEP = IntegrationTest
