"""Phase a5 in the sandbox: `runbook run --phase a5 --dry-run` from an empty account
(a1..a5, the migration test, then the verify pass); a5's staging steps on a legacy
database with users to skip, after which the hash table is read back against the legacy
database itself; and the fixture's own legacy users signing in to Cognito with their
Supabase passwords."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import boto3
import psycopg
import pytest

from runbook import config as config_mod
from runbook.lambda_runtime.legacy_hashes import LegacyHash
from tests.conftest import PROD_CONFIG, read_report

STAGING = ["hash-table", "msk-cluster", "deploy-legacy-loader", "stage-legacy-users"]
A5 = [*STAGING, "deploy-user-migration", "migration-test"]
MIGRATION_CHECKS = ["legacy_user_staged", "legacy_wrong_password", "legacy_login",
                    "legacy_profile_linked", "migration_timing", "cleanup"]
EXTRA = Path(__file__).parents[1] / "database" / "legacy_users_extra.sql"
# What the fixture's users hold (legacy_supabase.sql): each is staged exactly so.
FIXTURE_USERS = {
    "legacy.owner@example.com": ("$2a$10$P9K.6PR42kIzhRUxj/inYOnj5IBu2CrzaSWeCKmRuSu8VEvpqm49O",
                                 {"display_name": "Legacy Owner", "role": "user",
                                  "language": "de"}),
    "anna.schmidt@example.com": ("$2a$10$FWUK2euidU4xuNnM7CukDe3wO7mZ05e9Hol2jcSAmWanUpZoSsWPC",
                                 {"display_name": "Anna Schmidt", "role": "user",
                                  "language": "de"}),
    "karim.haddad@example.com": ("$2a$10$YZC3A82zPycCp8oGy0Kjt.CKDpFJu3XAD5Kh8JqxLQZRvfhGz.aZe",
                                 {"display_name": "Karim Haddad", "role": "admin",
                                  "language": "en"}),
}


@pytest.mark.slow
def test_dry_run_of_a5_stages_every_legacy_user_and_the_verify_pass_stages_none(
        workdir, cli, monkeypatch):
    monkeypatch.delenv("LEGACY_DATABASE_URL", raising=False)
    result = cli("run", "--phase", "a5", "--dry-run")

    assert result.exit_code == 0, result.output
    report = read_report(workdir, "a5", dry_run=True)
    assert report["status"] == "ok"
    names = [s["name"] for s in report["steps"]]
    assert names[-6:] == A5 and all(s["status"] == "ok" for s in report["steps"])
    steps = {s["name"]: s for s in report["steps"]}
    staged = steps["stage-legacy-users"]["outputs"]
    assert {k: staged[k] for k in ("source", "users", "planned", "produced", "stored",
                                   "skipped")} == {
        "source": "the sandbox's legacy database", "users": 3, "planned": 3, "produced": 3,
        "stored": 3, "skipped": {}}
    cluster = steps["msk-cluster"]["outputs"]
    assert cluster["bootstrap_public"].startswith("127.0.0.1:")
    mapping = steps["deploy-legacy-loader"]["outputs"]
    assert mapping["consumer_group"] == "matbakh-prod-legacy-user-hashes-loader"

    # The migration test: a legacy user signed in with the old password, kept the profile.
    migration = steps["migration-test"]
    assert migration["idempotent"] is False
    assert [(c["name"], c["status"]) for c in migration["checks"]] == [
        (name, "ok") for name in MIGRATION_CHECKS], migration["checks"]
    timings = migration["timings"]
    assert 0 < timings["trigger_ms"] <= timings["trigger_budget_ms"] == 5000
    deployed = steps["deploy-user-migration"]["outputs"]
    assert deployed["function_name"] == "matbakh-cognito-user-migration"

    # The verify pass: every idempotent a5 step again, no write, and nothing staged.
    verify = {s["name"]: s for s in report["verify_pass"]["steps"]}
    assert report["verify_pass"]["writes"] == 0
    assert list(verify) == A5[:-1] and all(s["changes"] == [] for s in verify.values())
    assert (verify["stage-legacy-users"]["outputs"]["planned"],
            verify["stage-legacy-users"]["outputs"]["produced"]) == (0, 0)

    simulated = " ".join(report["simulated"])
    assert "MSK control plane" in simulated and "Tansu" in simulated
    assert "legacy_supabase.sql" in simulated
    assert "UserMigration" in simulated

    # No hash and no whole address in what the operator sees or keeps.
    for text in (result.output, json.dumps(report)):
        assert "$2a$" not in text and "$2b$" not in text
        for email in FIXTURE_USERS:
            assert email not in text
        assert not re.search(r"[\w.+-]+@example\.com", text.replace("***@example.com", ""))


@pytest.mark.slow
def test_a5_on_a_legacy_database_with_users_to_skip_stores_exactly_the_others(
        legacy_dsn, monkeypatch, tmp_path):
    """a5's steps (after network, which msk-cluster needs) in a sandbox, reading the
    operator's legacy database through LEGACY_DATABASE_URL: the fixture plus users the
    migration must skip. The table is then read back and compared with the database."""
    from runbook.aws.clients import ClientFactory
    from runbook.functions.invoke import sandbox_invoker
    from runbook.output.progress import Progress
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
    from runbook.steps import new_runner

    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute(EXTRA.read_text())
    monkeypatch.setenv("LEGACY_DATABASE_URL", legacy_dsn)
    config = config_mod.load(PROD_CONFIG)
    progress = Progress(quiet=True)

    with Sandbox(progress, region=config.region, invoker=sandbox_invoker) as sandbox:
        aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                            credentials=SANDBOX_CREDENTIALS)
        results = new_runner(config, aws, progress, dry_run=True,
                             sleep=lambda s: time.sleep(min(s, 0.2)),
                             **sandbox.step_context()).run(["network", *STAGING])
        assert [(r.name, r.status) for r in results] == [
            (name, "ok") for name in ["network", *STAGING]], [r.error for r in results]
        outputs = results[-1].outputs
        table = boto3.client("dynamodb", region_name=config.region,
                             endpoint_url=sandbox.aws_url, **SANDBOX_CREDENTIALS)
        items = [item for page in table.get_paginator("scan").paginate(
            TableName=config.legacy.hash_table) for item in page["Items"]]

    assert outputs["skipped"] == {"no_password_hash": 2, "email_not_confirmed": 1,
                                  "no_email": 1, "unsupported_hash_format": 1}
    stored = {user.email: (user.hash, user.profile)
              for user in (LegacyHash.from_item(item) for item in items)}
    with psycopg.connect(legacy_dsn) as conn:
        argon = conn.execute("SELECT encrypted_password FROM auth.users "
                             "WHERE email = 'Argon.User@Example.COM'").fetchone()[0]
    assert stored == {**FIXTURE_USERS,
                      "argon.user@example.com": (argon, {"display_name": "Argon User"})}
    assert (outputs["planned"], outputs["produced"], outputs["stored"]) == (4, 4, 4)


# -- the fixture's own legacy users sign in --------------------------------------------------

# Their Supabase passwords (tests/fixtures/legacy_supabase.sql's header) and profile ids.
ANNA = ("Anna.Schmidt@Example.com", "Sommer2024!", "8c2d9e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f")
KARIM = "karim.haddad@example.com"
OWNER = ("legacy.owner@example.com", "correct horse battery staple")


@pytest.fixture(scope="module")
def sandbox_a5():
    """One sandbox with a1..a5 deployed (all but the tests), shared below: provisioning
    it takes a while."""
    from runbook.aws.clients import ClientFactory
    from runbook.functions.invoke import LocalInvoker, sandbox_invoker
    from runbook.output.progress import Progress
    from runbook.sandbox.cognito import SandboxCognito
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
    from runbook.steps import new_runner

    config = config_mod.load(PROD_CONFIG)
    steps = [step for phase in config.phases.values() for step in phase
             if not step.endswith("-test")]
    progress = Progress(quiet=True)
    with Sandbox(progress, region=config.region, invoker=sandbox_invoker) as sandbox:
        aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                            credentials=SANDBOX_CREDENTIALS)
        results = {r.name: r for r in new_runner(
            config, aws, progress, dry_run=True, sleep=lambda s: time.sleep(min(s, 0.2)),
            **sandbox.step_context()).run(steps)}
        assert all(r.status == "ok" for r in results.values()), \
            {n: r.error for n, r in results.items() if r.error}
        invoker = LocalInvoker(aws, endpoint_url=sandbox.aws_url, credentials=SANDBOX_CREDENTIALS,
                               database_dsn=sandbox.database_dsn,
                               database_tls=sandbox.database_tls)
        cognito = SandboxCognito(aws, invoker, pool_id=results["cognito"].outputs["user_pool_id"],
                                 client_id=results["cognito"].outputs["client_id"])
        yield sandbox, aws, cognito, results


def profile_of(dsn, profile_id):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT cognito_user_id, role, language FROM profiles "
                            "WHERE id = %s", (profile_id,)).fetchone()


@pytest.mark.slow
def test_a_fixture_legacy_user_signs_in_with_the_supabase_password_and_keeps_the_profile(
        sandbox_a5):
    sandbox, _, cognito, _ = sandbox_a5
    email, password, profile_id = ANNA
    # Her Supabase-era profile, as the data migration brought it to the new database
    # (the sandbox's is made empty by fix-tables): no Cognito user yet.
    with psycopg.connect(sandbox.database_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO profiles (id, email, role, language) "
                     "VALUES (%s, 'anna.schmidt@example.com', 'user', 'de')", (profile_id,))
    assert profile_of(sandbox.database_dsn, profile_id) == (None, "user", "de")

    tokens = cognito.sign_in(email, password)

    assert {"IdToken", "AccessToken", "RefreshToken"} <= set(tokens)
    fired = [trigger for trigger, _ in cognito.fired]
    assert fired == ["UserMigration", "PostAuthentication"]  # no PostConfirmation
    user = cognito.admin_get_user(email)
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert user["UserStatus"] == "CONFIRMED"
    assert (attributes["email"], attributes["email_verified"], attributes["custom:role"],
            attributes["name"]) == ("anna.schmidt@example.com", "true", "user", "Anna Schmidt")
    assert profile_of(sandbox.database_dsn, profile_id) == (attributes["sub"], "user", "de")

    cognito.sign_in(email.lower(), password)  # the user exists now: no migration
    assert [trigger for trigger, _ in cognito.fired][2:] == ["PostAuthentication"]
    cognito.admin_delete_user(email)


@pytest.mark.slow
def test_a_wrong_password_is_refused_as_cognito_refuses_it_and_makes_no_user(sandbox_a5):
    from runbook.sandbox.cognito import MigrationFailed

    _, _, cognito, _ = sandbox_a5
    email, password = OWNER
    with pytest.raises(MigrationFailed) as refused:
        cognito.sign_in(email, password + "!")
    assert refused.value.code == "UserNotFoundException"
    with pytest.raises(cognito.idp.exceptions.UserNotFoundException):
        cognito.admin_get_user(email)


@pytest.mark.slow
def test_forgot_password_migrates_the_user_with_a_reset_pending(sandbox_a5):
    _, _, cognito, _ = sandbox_a5

    delivery = cognito.forgot_password(KARIM)

    assert delivery["CodeDeliveryDetails"]["DeliveryMedium"] == "EMAIL"
    trigger, invocation = cognito.fired[-1]
    assert trigger == "UserMigration"
    assert invocation.result["triggerSource"] == "UserMigration_ForgotPassword"
    assert "password" not in invocation.result["request"]
    user = cognito.admin_get_user(KARIM)
    assert user["UserStatus"] == "RESET_REQUIRED"
    assert {a["Name"]: a["Value"] for a in user["UserAttributes"]}["email_verified"] == "true"
    cognito.admin_delete_user(KARIM)


@pytest.mark.slow
def test_the_admin_flow_is_refused_for_a_client_that_does_not_allow_it(sandbox_a5):
    from runbook.sandbox.cognito import FlowNotEnabled

    _, _, cognito, _ = sandbox_a5
    email, password, _ = ANNA
    with pytest.raises(FlowNotEnabled):
        cognito.sign_in(email, password, admin=True)


@pytest.mark.slow
def test_the_pool_holds_every_trigger_and_its_other_settings_after_a5(sandbox_a5):
    _, aws, _, results = sandbox_a5
    pool_id = results["cognito"].outputs["user_pool_id"]
    pool = aws.client("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]

    triggers = pool["LambdaConfig"]
    assert triggers == {
        "PreSignUp": results["cognito"].outputs["pre_signup_function_arn"],
        "PostConfirmation": results["deploy-post-confirmation"].outputs["function_arn"],
        "PostAuthentication": results["deploy-post-confirmation"].outputs["function_arn"],
        "UserMigration": results["deploy-user-migration"].outputs["function_arn"]}
    config = config_mod.load(PROD_CONFIG)
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] == config.cognito.password_policy.min_length
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["UsernameConfiguration"] == {"CaseSensitive": False}
    assert pool["DeletionProtection"] == ("ACTIVE" if config.cognito.deletion_protection
                                          else "INACTIVE")
    assert "custom:role" in {a["Name"] for a in pool["SchemaAttributes"]}
