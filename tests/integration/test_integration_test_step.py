"""Step `integration-test` when something is broken: a handler that raises, a database
that does not accept the row, a token whose signature was tampered with. The right
checks fail, the rest still run, and the Cognito user and every row are cleaned up,
which the tests check in the sandbox's Cognito and PostgreSQL themselves."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from runbook import config as config_mod
from runbook.functions import package
from runbook.aws.clients import ClientFactory
from runbook.sandbox.cognito import SandboxCognito
from runbook.config import IntegrationTest
from runbook.steps import new_runner
from runbook.output.progress import Progress
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from tests.conftest import PROD_CONFIG, REGION

DEPLOYED = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
            "db-proxy", "deploy-post-confirmation"]
STEP = "integration-test"


@pytest.fixture(scope="module")
def sandbox():
    """One sandbox with a1..a3 deployed up to the integration test; each test restores
    what it breaks."""
    config = config_mod.load(PROD_CONFIG)
    with Sandbox(Progress(quiet=True)) as box:
        aws = ClientFactory(REGION, endpoint_url=box.aws_url, credentials=SANDBOX_CREDENTIALS)
        results = new_runner(config, aws, Progress(quiet=True), dry_run=True, sleep=lambda s: None,
                         database_dsn=box.database_dsn).run(DEPLOYED)
        assert all(r.status == "ok" for r in results), [r.error for r in results if r.error]
        yield box, aws, {r.name: r.outputs for r in results}


def run(sandbox, names=(STEP,)):
    """Run `names` in the sandbox, with short waits for rows and log lines."""
    box, aws, _ = sandbox
    config = config_mod.load(PROD_CONFIG)
    config = config.model_copy(update={
        "integration_test": IntegrationTest(row_timeout_s=2, log_timeout_s=2)})
    runner = new_runner(config, aws, Progress(quiet=True), dry_run=True, sleep=lambda s: None,
                    database_dsn=box.database_dsn)
    return {r.name: r for r in runner.run(list(names))}


def statuses(result) -> dict[str, str]:
    return {c["name"]: c["status"] for c in result.evidence["checks"]}


def assert_nothing_left(sandbox):
    box, aws, outputs = sandbox
    users = aws.client("cognito-idp").list_users(
        UserPoolId=outputs["cognito"]["user_pool_id"])["Users"]
    assert users == []
    with psycopg.connect(box.database_dsn) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM profiles), "
                            "(SELECT count(*) FROM private_profiles)").fetchone() == (0, 0)


def run_altered(sandbox, alter: str, restore: str):
    """The step's result with the sandbox's database altered by the SQL `alter`; `restore`
    undoes it afterwards, whatever happened."""
    box, _, _ = sandbox
    with psycopg.connect(box.database_dsn, autocommit=True) as conn:
        conn.execute(alter)
    try:
        return run(sandbox)[STEP]
    finally:
        with psycopg.connect(box.database_dsn, autocommit=True) as conn:
            conn.execute(restore)


def raising_handler(tmp_path, monkeypatch) -> None:
    """Package and run a post_confirmation handler that raises on every event: a copy of
    lambdas/ with the broken handler stands in for the repository's."""
    broken = tmp_path / "lambdas"
    shutil.copytree(package.default_lambdas_dir(), broken)
    handler = broken / "post_confirmation" / "handler.py"
    handler.write_text(handler.read_text().replace(
        "    started = time.monotonic()\n", "    raise RuntimeError('deployed by mistake')\n", 1))
    monkeypatch.setattr(package, "default_lambdas_dir", lambda: broken)


def test_a_database_that_rejects_the_row_fails_the_trigger_checks_and_cleans_up(sandbox):
    reject = ("CREATE FUNCTION reject_profiles() RETURNS trigger LANGUAGE plpgsql AS "
              "$$ BEGIN RAISE EXCEPTION 'profiles are closed'; END $$; "
              "CREATE TRIGGER reject_profiles BEFORE INSERT ON profiles "
              "FOR EACH ROW EXECUTE FUNCTION reject_profiles()")
    result = run_altered(sandbox, reject, "DROP TRIGGER reject_profiles ON profiles; "
                                          "DROP FUNCTION reject_profiles()")

    assert result.status == "failed" and result.error_kind == "failure"  # exit code 1
    assert statuses(result) == {
        "cognito_signup": "ok", "post_confirmation_trigger": "failed", "profile_row": "failed",
        "private_profile_row": "skipped", "authentication": "ok", "jwt_validation": "ok",
        "cloudwatch_logs": "failed", "db_consistency": "skipped", "database_grants": "ok",
        "cleanup": "ok"}
    checks = {c["name"]: c["detail"] for c in result.evidence["checks"]}
    assert "PostConfirmation failed" in checks["post_confirmation_trigger"]
    assert "profiles are closed" in checks["post_confirmation_trigger"]
    assert "Post-Confirmation processing failed" in checks["cloudwatch_logs"]
    failed = [part.split(" (", 1)[0] for part in result.error.split("checks failed: ", 1)[1]
              .split("; ")]
    assert failed == ["post_confirmation_trigger", "profile_row", "cloudwatch_logs"]
    assert "profiles are closed" in result.error  # each with its finding
    assert_nothing_left(sandbox)


def test_a_grant_made_by_hand_fails_database_grants_naming_it(sandbox):
    """The roles the functions log in as hold exactly what database.roles declares: a
    SELECT on the profiles granted outside runbook is a finding, and the other checks
    still pass (the trigger's own writes need no such grant)."""
    result = run_altered(sandbox, "GRANT SELECT (email) ON public.profiles TO lambda_writer",
                         "REVOKE SELECT (email) ON public.profiles FROM lambda_writer")

    assert result.status == "failed" and result.error_kind == "failure", result.error
    failed = {name for name, status in statuses(result).items() if status != "ok"}
    assert failed == {"database_grants"}
    checks = {c["name"]: c["detail"] for c in result.evidence["checks"]}
    assert checks["database_grants"] == ("1 grant differs from database.roles: lambda_writer "
                                         "holds SELECT on public.profiles(email), which is not "
                                         "declared")
    assert_nothing_left(sandbox)

    again = run(sandbox)[STEP]
    assert again.status == "ok", again.error
    detail = {c["name"]: c["detail"] for c in again.evidence["checks"]}["database_grants"]
    assert detail.startswith("matbakh_post_confirmation: ") and "lambda_writer: INSERT/UPDATE/" \
        "DELETE on app, audit (3 tables, 1 sequence)" in detail


def test_a_handler_that_raises_fails_the_trigger_checks_and_cleans_up(sandbox, tmp_path,
                                                                      monkeypatch):
    raising_handler(tmp_path, monkeypatch)
    try:
        results = run(sandbox, ["deploy-post-confirmation", STEP])  # deploys the broken code
    finally:
        monkeypatch.undo()
        assert run(sandbox, ["deploy-post-confirmation"])["deploy-post-confirmation"].changed

    assert results["deploy-post-confirmation"].status == "ok"
    result = results[STEP]
    assert result.status == "failed" and result.error_kind == "failure"
    failed = {name for name, status in statuses(result).items() if status == "failed"}
    assert failed == {"post_confirmation_trigger", "profile_row", "cloudwatch_logs"}
    checks = {c["name"]: c["detail"] for c in result.evidence["checks"]}
    # As Cognito reports a failed trigger to the caller.
    assert "PostConfirmation failed with error deployed by mistake" in \
        checks["post_confirmation_trigger"]
    assert "lacks User confirmation audit" in checks["cloudwatch_logs"]
    assert statuses(result)["cleanup"] == "ok"
    assert_nothing_left(sandbox)


def test_a_tampered_token_signature_fails_jwt_validation_only(sandbox, monkeypatch):
    sign_in = SandboxCognito.sign_in

    def tampered(self, email, password):
        result = dict(sign_in(self, email, password))
        header, payload, signature = result["IdToken"].split(".")
        flipped = ("A" if signature[10] != "A" else "B")
        result["IdToken"] = ".".join((header, payload, signature[:10] + flipped + signature[11:]))
        return result

    monkeypatch.setattr(SandboxCognito, "sign_in", tampered)
    result = run(sandbox)[STEP]

    assert result.status == "failed"
    assert {n for n, s in statuses(result).items() if s != "ok"} == {"jwt_validation"}
    detail = next(c["detail"] for c in result.evidence["checks"] if c["name"] == "jwt_validation")
    assert "ID token" in detail and "Signature verification failed" in detail
    assert_nothing_left(sandbox)


def test_ctrl_c_during_the_checks_still_cleans_up(sandbox, monkeypatch):
    from runbook.steps.integration_test import IntegrationTest

    def interrupted(self, state):
        raise KeyboardInterrupt

    monkeypatch.setattr(IntegrationTest, "authenticate", interrupted)
    box, aws, _ = sandbox
    config = config_mod.load(PROD_CONFIG)
    runner = new_runner(config, aws, Progress(quiet=True), dry_run=True, sleep=lambda s: None,
                    database_dsn=box.database_dsn)
    with pytest.raises(KeyboardInterrupt):
        runner.run([STEP])

    result = runner.interrupted
    assert result.status == "interrupted"
    checks = {c["name"]: (c["status"], c["detail"]) for c in result.evidence["checks"]}
    assert checks["authentication"] == ("failed", "interrupted by the operator")
    assert checks["profile_row"][0] == "ok" and checks["cleanup"][0] == "ok"
    assert checks["jwt_validation"] == ("skipped", "not reached")
    assert_nothing_left(sandbox)


def test_a_user_that_cannot_be_deleted_fails_cleanup_and_its_rows_are_still_deleted(sandbox):
    from botocore.exceptions import ClientError

    box, _, outputs = sandbox

    def throttle_delete(service, operation, write):
        if operation == "AdminDeleteUser":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)

    aws = ClientFactory(REGION, endpoint_url=box.aws_url, credentials=SANDBOX_CREDENTIALS,
                        interceptors=[throttle_delete])
    runner = new_runner(config_mod.load(PROD_CONFIG), aws, Progress(quiet=True), dry_run=True,
                    sleep=lambda s: None, database_dsn=box.database_dsn)
    [result] = runner.run([STEP])

    assert result.status == "failed"
    checks = {c["name"]: (c["status"], c["detail"]) for c in result.evidence["checks"]}
    status, detail = checks["cleanup"]
    assert status == "failed"
    assert "could not be deleted (delete it by hand): ThrottlingException" in detail
    assert "deleting the profile removed the private profile (cascade)" in detail
    assert "@example.com" not in detail.replace("***@example.com", "")
    with psycopg.connect(box.database_dsn) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM profiles), "
                            "(SELECT count(*) FROM private_profiles)").fetchone() == (0, 0)
    idp = ClientFactory(REGION, endpoint_url=box.aws_url,
                        credentials=SANDBOX_CREDENTIALS).client("cognito-idp")
    pool = outputs["cognito"]["user_pool_id"]
    [left] = idp.list_users(UserPoolId=pool)["Users"]  # the one the delete could not remove
    idp.admin_delete_user(UserPoolId=pool, Username=left["Username"])
    assert_nothing_left(sandbox)


def test_a_green_run_leaves_nothing_behind(sandbox):
    result = run(sandbox)[STEP]
    assert result.status == "ok", result.error
    assert set(statuses(result).values()) == {"ok"}
    assert result.outputs["checks_passed"] == 10
    assert_nothing_left(sandbox)



@pytest.mark.slow
def test_the_command_exits_1_when_the_deployed_handler_raises(workdir, cli, tmp_path,
                                                              monkeypatch):
    from tests.conftest import read_report

    raising_handler(tmp_path, monkeypatch)
    config = workdir / "config" / "prod.yaml"  # short waits for rows and log lines
    config.write_text(config.read_text().replace("row_timeout_s: 15", "row_timeout_s: 2")
                      .replace("log_timeout_s: 60", "log_timeout_s: 2"))

    result = cli("run", "--phase", "a3", "--dry-run")

    assert result.exit_code == 1, result.output
    assert "3 of 10 checks failed: post_confirmation_trigger (" in result.stderr
    assert "; profile_row (the profile did not appear within 2 s); cloudwatch_logs (" \
        in result.stderr
    report = read_report(workdir, "integration-test", dry_run=True)
    assert report["status"] == "failed"
    cleanup = next(c for c in report["steps"][0]["checks"] if c["name"] == "cleanup")
    assert cleanup["status"] == "ok" and "deleted the Cognito user" in cleanup["detail"]

