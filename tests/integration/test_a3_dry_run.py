"""Phase a3 in the sandbox: the whole run up to deploy-post-confirmation, `runbook
invoke --dry-run`, and Cognito's triggers fired by the sandbox on sign-up and
confirmation, with the handlers writing to the real PostgreSQL behind it."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.sandbox.cognito import SandboxCognito, TriggerFailed
from runbook.steps import new_runner
from runbook.functions.invoke import ENVIRONMENTS, LocalInvoker
from runbook.output.progress import Progress
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from runbook.steps.integration_test import CHECKS
from tests.conftest import FIXTURES, PROD_CONFIG, REGION, read_report

A3_THROUGH = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
              "db-proxy", "deploy-post-confirmation"]
SIGNUP_EVENT = FIXTURES / "events" / "post_confirmation_confirm_signup.json"
EMAIL = "lena.maier@example.com"


@pytest.mark.slow
def test_dry_run_of_a3_is_green_with_every_integration_check_ok(workdir, cli):
    result = cli("run", "--phase", "a3", "--dry-run")

    assert result.exit_code == 0, result.output
    report = read_report(workdir, "a3", dry_run=True)
    assert report["status"] == "ok"
    statuses = [(s["name"], s["status"]) for s in report["steps"]]
    assert statuses == [(name, "ok") for name in A3_THROUGH + ["integration-test"]]
    test = report["steps"][-1]
    assert test["idempotent"] is False
    assert [(c["name"], c["status"]) for c in test["checks"]] == [
        (name, "ok") for name in CHECKS]
    assert all(c["detail"] and c["duration_ms"] >= 0 for c in test["checks"])
    timings = test["timings"]
    assert 0 < timings["trigger_ms"] <= timings["trigger_budget_ms"] == 5000
    assert timings["signup_to_row_ms"] > 0 and timings["handler_ms"] >= 0
    # The verify pass runs what can converge, and it writes nothing.
    assert report["verify_pass"]["writes"] == 0
    verified = {s["name"]: s for s in report["verify_pass"]["steps"]}
    assert list(verified) == ["vpc-integrate", "fix-tables", "db-proxy",
                              "deploy-post-confirmation"]
    assert verified["deploy-post-confirmation"]["changes"] == []
    assert verified["deploy-post-confirmation"]["api_calls"]["write"] == 0
    # The second build of unchanged code uploaded nothing: same CodeSha256, no update.
    first = next(s for s in report["steps"] if s["name"] == "deploy-post-confirmation")
    assert first["outputs"]["code_sha256"] == verified["deploy-post-confirmation"]["outputs"]["code_sha256"]
    # The integration test's report is also written alone.
    alone = read_report(workdir, "integration-test", dry_run=True)
    assert alone["steps"] == [test] and alone["status"] == "ok"
    text = json.dumps(report)
    assert EMAIL not in text and "runbook-it+" not in text and "@example.com" not in \
        text.replace("***@example.com", "")
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.", text)  # no JWT
    # Secrets appear in plans by name only, never by value.
    assert re.findall(r'"(?:password|password_id|jwt_secret)": "([^"]*)"', text) == [
        "(generated)"] * 3
    assert "error:" not in result.stderr


@pytest.mark.slow
def test_invoke_dry_run_prints_the_result_and_the_log_lines(workdir, cli):
    result = cli("invoke", "post_confirmation", "--event", str(SIGNUP_EVENT), "--dry-run")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Profile created/updated" in out
    assert "Post-Confirmation processing completed" in out
    assert "START RequestId" not in out or "END RequestId" in out
    assert '"triggerSource": "PostConfirmation_ConfirmSignUp"' in out
    assert EMAIL not in result.output  # neither the log lines nor the (masked) result
    assert '"email": "l***@example.com"' in out


@pytest.mark.slow
def test_invoke_with_a_bad_event_file_exits_2_naming_it(workdir, cli, tmp_path):
    bad = tmp_path / "event.json"
    bad.write_text("{not json")
    result = cli("invoke", "post_confirmation", "--event", str(bad), "--dry-run")
    assert result.exit_code == 2
    assert "event.json" in result.stderr and "Traceback" not in result.output
    result = cli("invoke", "no_such_function", "--event", str(SIGNUP_EVENT), "--dry-run")
    assert result.exit_code == 2 and "post_confirmation" in result.stderr


@pytest.fixture(scope="module")
def sandbox_a3():
    """One sandbox with a1..a3 deployed (through deploy-post-confirmation), shared by the
    trigger tests below: provisioning it takes a while."""
    config = config_mod.load(PROD_CONFIG)
    with Sandbox(Progress(quiet=True)) as sandbox:
        aws = ClientFactory(REGION, endpoint_url=sandbox.aws_url, credentials=SANDBOX_CREDENTIALS)
        runner = new_runner(config, aws, Progress(quiet=True), dry_run=True, sleep=lambda s: None,
                        database_dsn=sandbox.database_dsn, database_tls=sandbox.database_tls)
        results = {r.name: r for r in runner.run(A3_THROUGH)}
        assert all(r.status == "ok" for r in results.values()), \
            {n: r.error for n, r in results.items() if r.error}
        invoker = LocalInvoker(aws, endpoint_url=sandbox.aws_url, credentials=SANDBOX_CREDENTIALS,
                               database_dsn=sandbox.database_dsn,
                               database_tls=sandbox.database_tls)
        cognito = SandboxCognito(aws, invoker, pool_id=results["cognito"].outputs["user_pool_id"],
                                 client_id=results["cognito"].outputs["client_id"])
        yield sandbox, aws, cognito


def rows(dsn, email):
    with psycopg.connect(dsn) as conn:
        profiles = conn.execute("SELECT id, cognito_user_id FROM profiles WHERE email = %s",
                                (email,)).fetchall()
        private = conn.execute("SELECT count(*) FROM private_profiles p JOIN profiles q "
                               "ON q.id = p.user_id WHERE q.email = %s", (email,)).fetchone()[0]
    return profiles, private


@pytest.mark.slow
def test_sign_up_and_confirmation_fire_the_triggers_and_write_the_profile(sandbox_a3):
    sandbox, aws, cognito = sandbox_a3
    email = "signup.one@example.com"
    signed = cognito.sign_up(email, "Sandbox-Passw0rd!", {"given_name": "Ona"})
    assert signed["UserConfirmed"] is False  # no auto-confirm outside listed domains
    assert rows(sandbox.database_dsn, email) == ([], 0)
    cognito.confirm_sign_up(email)
    profiles, private = rows(sandbox.database_dsn, email)
    assert [p[1] for p in profiles] == [signed["UserSub"]] and private == 1
    sources = [i.result["triggerSource"] for i in cognito.invocations[-2:]]
    assert sources == ["PreSignUp_SignUp", "PostConfirmation_ConfirmSignUp"]
    tokens = cognito.sign_in(email, "Sandbox-Passw0rd!")
    assert tokens["AccessToken"]


@pytest.mark.slow
def test_handler_output_goes_to_the_functions_log_group(sandbox_a3):
    sandbox, aws, cognito = sandbox_a3
    email = "signup.logs@example.com"
    cognito.sign_up(email, "Sandbox-Passw0rd!")
    cognito.confirm_sign_up(email)
    last = cognito.invocations[-1]
    logs = aws.client("logs")
    events = logs.get_log_events(logGroupName="/aws/lambda/matbakh-cognito-post-confirmation",
                                 logStreamName=last.log_stream)["events"]
    messages = [e["message"] for e in events]
    # The stream is the execution environment's: the last invocation's lines end it.
    start = messages.index(f"START RequestId: {last.request_id} Version: $LATEST")
    mine = messages[start:]
    assert mine[-1].startswith(f"REPORT RequestId: {last.request_id}")
    assert any("Profile created/updated" in m for m in mine)
    assert not any(email in m for m in messages)


@pytest.mark.slow
def test_a_refused_sign_up_creates_no_user(sandbox_a3):
    sandbox, aws, cognito = sandbox_a3
    with pytest.raises(TriggerFailed) as refused:
        cognito.sign_up("not-an-address", "Sandbox-Passw0rd!")
    assert refused.value.trigger == "PreSignUp"
    users = aws.client("cognito-idp").list_users(UserPoolId=cognito.pool_id)["Users"]
    assert not any(u["Username"] == "not-an-address" for u in users)


@pytest.mark.slow
def test_post_confirmation_logs_in_through_the_proxy_as_its_role_with_a_token(sandbox_a3):
    """config/prod.yaml runs db-proxy in a3: the trigger's DB_HOST is the proxy's endpoint,
    which only the front-end standing in for the proxy answers for (verify-full checks
    that name), and it logs in there as its own role with an IAM token; no secret."""
    sandbox, aws, cognito = sandbox_a3
    variables = aws.client("lambda").get_function_configuration(
        FunctionName="matbakh-cognito-post-confirmation")["Environment"]["Variables"]
    [proxy] = aws.client("rds").describe_db_proxies()["DBProxies"]
    assert variables["DB_HOST"] == proxy["Endpoint"]
    assert (variables["DB_AUTH"], variables["DB_USER"]) == ("iam", "matbakh_post_confirmation")
    assert "DB_SECRET_ARN" not in variables
    email = "signup.proxy@example.com"
    # A new execution environment: a warm one would reuse its connection.
    ENVIRONMENTS.close(sandbox.aws_url)
    before = sandbox.database_tls.logins
    signed = cognito.sign_up(email, "Sandbox-Passw0rd!")
    cognito.confirm_sign_up(email)
    assert sandbox.database_tls.logins > before
    profiles, private = rows(sandbox.database_dsn, email)
    assert [p[1] for p in profiles] == [signed["UserSub"]] and private == 1
    # The next confirmation is served warm, on the connection the first one opened.
    logged_in = sandbox.database_tls.logins
    second = cognito.sign_up("signup.proxy2@example.com", "Sandbox-Passw0rd!")
    cognito.confirm_sign_up("signup.proxy2@example.com")
    assert cognito.invocations[-1].init_ms is None
    assert sandbox.database_tls.logins == logged_in
    profiles, _ = rows(sandbox.database_dsn, "signup.proxy2@example.com")
    assert [p[1] for p in profiles] == [second["UserSub"]]
