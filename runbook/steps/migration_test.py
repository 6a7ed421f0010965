"""Step `migration-test` (phase a5): prove that a legacy user signs in with the old
password and keeps the old profile.

A throwaway legacy user is made as Supabase made its users: a GoTrue auth.users row
(runbook.legacy.source.Row) whose password the test knows, hashed with bcrypt at
GoTrue's cost 10 (`$2a$10$`), with a profile row of the Supabase era in `profiles`
(role admin, no Cognito user yet) under the address in mixed case. Nothing is written
to the operator's legacy database: the row is the test's own, and goes the way
stage-legacy-users sends every user (runbook.legacy.users, then the topic, the loader,
the hash table). The checks, in this order:

  legacy_user_staged     the user's record, produced to the topic, is in the hash table
                         as produced within legacy.stage_timeout_s (the loader stored it)
  legacy_wrong_password  a sign-in with a wrong password is refused, and Cognito has no
                         such user afterwards
  legacy_login           USER_PASSWORD_AUTH with the address in another case and the old
                         password returns tokens that pass the JWKS check (with the
                         staged role as custom:role), and the user now exists, CONFIRMED,
                         with a verified address
  legacy_profile_linked  the legacy profile row carries the new sub, with its role,
                         language and name kept, and it is the only profile with the
                         address; a second sign-in (no migration: the user exists)
                         changes nothing
  migration_timing       the UserMigration trigger's duration against Cognito's 5 s
  cleanup                the Cognito user, the test's profile row (and the private
                         profile Post-Authentication made for it) and its hash-table
                         item are deleted

The sign-in fires the UserMigration trigger (step deploy-user-migration) and then
Post-Authentication, where the Post-Confirmation function links the profile: Cognito
fires no Post-Confirmation after a migration. Not idempotent: every run makes and deletes
a user. The test's record stays in the topic until its retention ends; it holds the hash
of a random password that no account has once cleanup ran. The report masks the address
and holds no password, hash or token.
"""

from __future__ import annotations

import time
import uuid

from runbook.engine import Change
from runbook.lambda_runtime.emails import mask
from runbook.lambda_runtime.legacy_hashes import LegacyHash
from runbook.steps.integration_test import (TRIGGER_BUDGET_MS, CheckFailed, IntegrationTest,
                                            TestState, TestUser, _describe, cognito_endpoint,
                                            new_password)

STEP_NAME = "migration-test"
CHECKS = ("legacy_user_staged", "legacy_wrong_password", "legacy_login",
          "legacy_profile_linked", "migration_timing", "cleanup")
# GoTrue hashes with Go's bcrypt.DefaultCost, which writes the $2a$ prefix.
BCRYPT_COST = 10
LEGACY_ROLE = "admin"
LEGACY_LANGUAGE = "en"
LEGACY_NAME = "Runbook Migration Test"
# What Cognito answers a sign-in the migration refused: UserNotFoundException, or with
# PreventUserExistenceErrors NotAuthorizedException.
REFUSALS = ("UserNotFoundException", "NotAuthorizedException")
STAGE_POLL_S = 0.5


def legacy_hash(password: str) -> str:
    """The password hashed as GoTrue hashed it: bcrypt, $2a$, cost 10."""
    from passlib.hash import bcrypt

    return bcrypt.using(ident="2a", rounds=BCRYPT_COST).hash(password)


def refusal_code(exc: BaseException) -> str | None:
    """The error code of a refused Cognito call: botocore's, or the sandbox's."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code")
    return getattr(exc, "code", None)


class MigrationTest(IntegrationTest):
    name = STEP_NAME
    CHECKS = CHECKS

    # -- read and plan -------------------------------------------------------------------

    def read(self) -> TestState:
        cognito = self.inputs.cognito
        migration = self.inputs.deploy_user_migration
        # The other inputs, so that a missing one is named before anything runs.
        extra = {"table": self.inputs.hash_table, "cluster": self.inputs.msk_cluster,
                 "loader": self.inputs.deploy_legacy_loader,
                 "post_confirmation": self.inputs.deploy_post_confirmation}
        run_id = uuid.uuid4().hex[:12]
        domain = self.config.integration_test.email_domain
        # Mixed case, as a legacy address may be; the table and the pool compare without.
        password = new_password(self.config.cognito.password_policy.min_length) + "-ä"
        user = TestUser(run_id, f"Runbook-IT+{run_id}@{domain}", password,
                        {"custom:role": LEGACY_ROLE}
                        if "role" in self.config.cognito.custom_attributes else {})
        state = TestState(cognito.user_pool_id, cognito.client_id, migration.function_name,
                          self.inputs.database, self.inputs.store_secrets, user)
        state.extra.update(extra)
        return state

    def plan(self, state: TestState) -> list[Change]:
        return [Change("create", f"cognito-idp:user {mask(state.user.email)}", "run_checks", {},
                       {"checks": ", ".join(self.CHECKS),
                        "legacy user": "made by the test (bcrypt, variant 2a, cost 10), staged "
                                       "through the topic",
                        "afterwards": "the user, its profile row and its item are deleted"},
                       run=self.run_checks)]

    # -- the checks ----------------------------------------------------------------------

    def sequence(self, state: TestState) -> None:
        self._check("legacy_user_staged", self.stage, state)
        self._check("legacy_wrong_password", self.wrong_password, state,
                    needs="legacy_user_staged")
        self._check("legacy_login", self.login, state, needs="legacy_user_staged")
        self._check("legacy_profile_linked", self.profile_linked, state, needs="legacy_login")
        self._check("migration_timing", self.timing, state, needs="legacy_login")

    def stage(self, state: TestState) -> str:
        """The test's legacy profile row, then its user through the topic into the table."""
        from runbook.legacy import source as legacy_source
        from runbook.legacy import table as legacy_table
        from runbook.legacy import users as legacy_users

        user = state.user
        row = legacy_source.Row(user.email, legacy_hash(user.password), True,
                                display_name=LEGACY_NAME, role=LEGACY_ROLE,
                                language=LEGACY_LANGUAGE)
        staged = legacy_users.classify([row]).users
        if len(staged) != 1:
            raise CheckFailed("the test's legacy user was skipped by the stage rules")
        conn = self._db()
        user.profile_id = str(conn.execute(
            f"INSERT INTO {self._table('profiles')} (email, role, language, display_name) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (user.email, LEGACY_ROLE, LEGACY_LANGUAGE, LEGACY_NAME)).fetchone()[0])
        state.extra["staged"] = staged[0]

        started = time.monotonic()
        self._produce(state, staged[0])
        table, timeout = state.extra["table"].table_name, self.config.legacy.stage_timeout_s
        deadline = started + timeout
        while True:
            stored = legacy_table.stored(self.api, table, [staged[0].email])
            if stored.get(staged[0].email) == staged[0]:
                break
            if time.monotonic() >= deadline:
                raise CheckFailed(f"the loader did not store the test's user in {table} "
                                  f"within {timeout} s (legacy.stage_timeout_s); check "
                                  "its event source mapping and log group")
            self.ctx.sleep(STAGE_POLL_S)
        self.timings["produce_to_item_ms"] = int((time.monotonic() - started) * 1000)
        return (f"legacy profile {user.profile_id} ({LEGACY_ROLE}, {mask(user.email)}); its "
                f"user (bcrypt, variant 2a, cost {BCRYPT_COST}) produced to kafka:topic "
                f"{state.extra['cluster'].topic} and stored in {table} "
                f"{self.timings['produce_to_item_ms']} ms later")

    def _produce(self, state: TestState, staged: LegacyHash) -> None:
        from runbook.aws.kafka import kafka_access

        cluster = state.extra["cluster"]
        producer = kafka_access(self.ctx).producer(cluster.bootstrap_public, acks="all",
                                                   enable_idempotence=True)
        try:
            sent = producer.send(cluster.topic, key=staged.email.encode("utf-8"),
                                 value=staged.to_value())
            producer.flush(timeout=60)
            if not sent.succeeded():
                raise CheckFailed(f"the brokers did not acknowledge the record "
                                  f"({type(sent.exception).__name__})")
        finally:
            producer.close(timeout=10)

    def wrong_password(self, state: TestState) -> str:
        user = state.user
        try:
            self.users.sign_in(user.email, user.password + "-wrong")
        except Exception as exc:  # noqa: BLE001 - the refusal is the finding
            code = refusal_code(exc)
            if code not in REFUSALS:
                raise
        else:
            raise CheckFailed("a wrong password signed the legacy user in")
        if self._cognito_user(user.email) is not None:
            raise CheckFailed(f"the refused sign-in left a Cognito user ({code})")
        return f"refused ({code}); no Cognito user was made"

    def login(self, state: TestState) -> str:
        from runbook.aws import tokens

        user = state.user
        typed = user.email.upper()
        started = time.monotonic()
        result = self.users.sign_in(typed, user.password)
        self.timings["sign_in_ms"] = int((time.monotonic() - started) * 1000)
        missing = [k for k in ("IdToken", "AccessToken", "RefreshToken") if not result.get(k)]
        if missing:
            raise CheckFailed(f"USER_PASSWORD_AUTH returned no {', '.join(missing)}")
        pool = tokens.Pool(self.ctx.aws.region, state.pool_id, state.client_id)
        keys = tokens.key_source(pool, cognito_endpoint(self.ctx.aws))
        try:
            checked = tokens.verify(result["IdToken"], result["AccessToken"], pool, keys,
                                    user.attributes)
        except tokens.TokenInvalid as exc:
            raise CheckFailed(str(exc)) from None
        found = self._cognito_user(user.email)
        if found is None:
            raise CheckFailed("the sign-in returned tokens but Cognito has no such user")
        attributes = {a["Name"]: a["Value"] for a in found.get("UserAttributes", ())}
        user.sub = attributes.get("sub")
        problems = []
        if found.get("UserStatus") != "CONFIRMED":
            problems.append(f"the user is {found.get('UserStatus')}, not CONFIRMED")
        if attributes.get("email_verified") != "true":
            problems.append("the address is not verified")
        if (attributes.get("email") or "").lower() != user.email.lower():
            problems.append("the user's address is not the legacy one")
        if problems:
            raise CheckFailed("; ".join(problems))
        return (f"signed in as {mask(typed)} with the legacy password: tokens verified "
                f"against the pool's JWKS (key {checked['kid']!r}, "
                f"{', '.join(checked['attributes']) or 'no custom attribute'}); user "
                f"{user.sub} CONFIRMED, address verified")

    def profile_linked(self, state: TestState) -> str:
        user = state.user
        query = (f"SELECT id::text, cognito_user_id, role, language, display_name FROM "
                 f"{self._table('profiles')} WHERE lower(email) = lower(%s) ORDER BY id")
        expected = [(user.profile_id, user.sub, LEGACY_ROLE, LEGACY_LANGUAGE, LEGACY_NAME)]
        conn = self._db()
        rows = [tuple(row) for row in conn.execute(query, (user.email,)).fetchall()]
        if rows != expected:
            raise CheckFailed(f"expected the legacy profile alone, linked to the sub with its "
                              f"values kept: {_rows(expected)}; found {_rows(rows)}")
        migrations = self._migrations()
        self.users.sign_in(user.email, user.password)
        again = [tuple(row) for row in conn.execute(query, (user.email,)).fetchall()]
        if again != expected:
            raise CheckFailed(f"a second sign-in changed the profiles: {_rows(again)}")
        if migrations is not None and self._migrations() != migrations:
            raise CheckFailed("a second sign-in fired UserMigration again")
        return (f"profile {user.profile_id} carries sub {user.sub}, role {LEGACY_ROLE} and "
                "language kept, the only profile with the address; a second sign-in "
                "changed nothing")

    def timing(self, state: TestState) -> str:
        fired = [invocation for trigger, invocation in getattr(self.users, "fired", ())
                 if trigger == "UserMigration" and invocation.ok]
        if fired:
            # The sandbox: the invocation, timed apart from its cold start (see
            # integration-test's confirm for why).
            trigger_ms, init_ms = fired[-1].duration_ms, fired[-1].init_ms
        else:
            # On AWS the sign-in call bounds the trigger, its cold start included.
            trigger_ms, init_ms = self.timings["sign_in_ms"], None
        self.timings.update(trigger_ms=trigger_ms, trigger_budget_ms=TRIGGER_BUDGET_MS)
        cold = ""
        if init_ms is not None:
            self.timings["trigger_init_ms"] = init_ms
            cold = f" (after a {init_ms} ms init, not counted here)"
        if trigger_ms > TRIGGER_BUDGET_MS:
            raise CheckFailed(f"the UserMigration trigger took {trigger_ms} ms, over "
                              f"Cognito's {TRIGGER_BUDGET_MS} ms{cold}")
        what = "UserMigration" if fired else "the sign-in, UserMigration included,"
        return f"{what} took {trigger_ms} ms of the {TRIGGER_BUDGET_MS} ms budget{cold}"

    def cleanup(self, state: TestState) -> str:
        """The Cognito user, the test's profile row (its private profile goes with it: the
        foreign key cascades) and its item, each also when another could not go."""
        user, done, problems = state.user, [], []
        try:
            self.users.admin_delete_user(user.email)
            done.append("deleted the Cognito user")
        except Exception as exc:  # noqa: BLE001
            if refusal_code(exc) == "UserNotFoundException":
                done.append("no Cognito user to delete")
            else:
                problems.append(f"the Cognito user {mask(user.email)} could not be deleted "
                                f"(delete it by hand): {_describe(exc)}")
        if user.profile_id:
            try:
                deleted = self._db().execute(
                    f"DELETE FROM {self._table('profiles')} WHERE id = %s",
                    (user.profile_id,)).rowcount
                done.append(f"deleted {deleted} profile row(s)")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"profile {user.profile_id} could not be deleted: "
                                f"{_describe(exc)}")
        staged = state.extra.get("staged")
        if staged is not None:
            try:
                self.client("dynamodb").delete_item(
                    TableName=state.extra["table"].table_name,
                    Key={"email": {"S": staged.email}})
                done.append("deleted the hash-table item")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"the hash-table item could not be deleted: {_describe(exc)}")
        if problems:
            raise CheckFailed("; ".join(done + problems))
        return "; ".join(done)

    # -- helpers -------------------------------------------------------------------------

    def _cognito_user(self, email: str) -> dict | None:
        try:
            return self.users.admin_get_user(email)
        except Exception as exc:  # noqa: BLE001
            if refusal_code(exc) == "UserNotFoundException":
                return None
            raise

    def _migrations(self) -> int | None:
        """How often the sandbox fired UserMigration; None on AWS (not seen from here)."""
        fired = getattr(self.users, "fired", None)
        return None if fired is None else sum(t == "UserMigration" for t, _ in fired)


def _rows(rows) -> str:
    return "; ".join(", ".join(str(value) for value in row) for row in rows) or "none"


STEP = MigrationTest
