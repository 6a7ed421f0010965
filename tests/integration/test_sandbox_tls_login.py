"""A handler's IAM login in the sandbox, as on AWS: Post-Confirmation, configured by
deploy-post-confirmation with DB_AUTH=iam as the trigger role, run by the local invoker,
logs in through the sandbox's TLS front-end with a token botocore signed, verifying the
certificate (verify-full) against the sandbox CA. A server in the middle whose
certificate another CA issued is refused before the token is sent."""

from __future__ import annotations

import io
import json
import types
import zipfile

import psycopg
import pytest
import yaml

from runbook import config as config_mod
from runbook.functions import package
from runbook.database import rds_ca
from runbook.aws.clients import ClientFactory
from runbook.steps import new_runner
from runbook.functions.invoke import LocalInvoker
from runbook.output.progress import Progress
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from runbook.sandbox.tls import TlsFrontEnd
from runbook.database.migrations import TEMPLATES
from tests.conftest import FIXTURES, PROD_CONFIG, REGION

pytestmark = pytest.mark.slow

THROUGH = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
           "deploy-post-confirmation"]
FUNCTION = "matbakh-cognito-post-confirmation"
ROLE = "matbakh_post_confirmation"
EVENT = json.loads((FIXTURES / "events" / "post_confirmation_confirm_signup.json").read_text())


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A sandbox with a1..a3 deployed, the trigger logging in by IAM as its own role,
    straight to the cluster's endpoint: without step db-proxy (tests/integration/
    test_a3_dry_run.py logs in through the proxy, as config/prod.yaml ships)."""
    data = yaml.safe_load(PROD_CONFIG.read_text())
    data["database"]["roles"] = {ROLE: {"trigger": "post-confirmation"}}
    data["phases"]["a3"].remove("db-proxy")
    path = tmp_path_factory.mktemp("tls-config") / "prod.yaml"
    path.write_text(yaml.safe_dump(data))
    config = config_mod.load(path)
    with Sandbox(Progress(quiet=True)) as sandbox:
        aws = ClientFactory(REGION, endpoint_url=sandbox.aws_url, credentials=SANDBOX_CREDENTIALS)
        results = {r.name: r for r in new_runner(
            config, aws, Progress(quiet=True), dry_run=True, sleep=lambda s: None,
            database_dsn=sandbox.database_dsn, database_tls=sandbox.database_tls).run(THROUGH)}
        assert all(r.status == "ok" for r in results.values()), \
            {n: r.error for n, r in results.items() if r.error}
        yield sandbox, aws, results


def invoker(sandbox, aws, route) -> LocalInvoker:
    return LocalInvoker(aws, endpoint_url=sandbox.aws_url, credentials=SANDBOX_CREDENTIALS,
                        database_dsn=sandbox.database_dsn, database_tls=route)


def profiles(dsn: str, sub: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM profiles WHERE cognito_user_id = %s",
                            (sub,)).fetchone()[0]


def test_the_function_logs_in_by_token_with_verify_full_against_the_rds_bundle_in_its_layer(
        deployed):
    sandbox, aws, results = deployed
    variables = aws.client("lambda").get_function_configuration(
        FunctionName=FUNCTION)["Environment"]["Variables"]
    assert (variables["DB_AUTH"], variables["DB_USER"]) == ("iam", ROLE)
    assert variables["DB_SSLROOTCERT"] == rds_ca.LAYER_PATH == "/opt/rds-ca/global-bundle.pem"
    assert "DB_DSN" not in variables and "DB_SECRET_ARN" not in variables
    simulated = " ".join(sandbox.simulated)
    assert "TLS front-end" in simulated and "sandbox CA" in simulated
    # The dry run's layer carries the sandbox CA where the handler looks for the bundle.
    layer = package.build_layer("python3.11", ca_bundle=rds_ca.from_file(
        sandbox.database_tls.ca_file, "the sandbox CA"))
    with zipfile.ZipFile(io.BytesIO(layer.data)) as archive:
        assert archive.read(rds_ca.LAYER_ENTRY) == sandbox.database_tls.ca_file.read_bytes()
    published = aws.client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]
    assert [x["Arn"] for x in published["Layers"]] == [
        results["deploy-post-confirmation"].outputs["layer_version_arn"]]
    [version] = aws.client("lambda").list_layer_versions(
        LayerName="matbakh-cognito-deps")["LayerVersions"]
    assert package.content_hash_of(version["Description"]) == layer.content_hash


def test_a_handler_login_with_verify_full_succeeds_against_the_right_ca(deployed):
    sandbox, aws, _ = deployed
    tls = sandbox.database_tls
    before = tls.logins
    event = {**EVENT, "request": {"userAttributes": {
        **EVENT["request"]["userAttributes"], "sub": "11111111-2222-4333-8444-555555555555",
        "email": "tls.right@example.com"}}}
    invocation = invoker(sandbox, aws, tls).invoke(FUNCTION, event, trigger=True)
    assert invocation.ok, (invocation.error_type, invocation.error_message, invocation.log_lines)
    assert tls.logins == before + 1       # through the front-end, with a token it checked
    assert profiles(sandbox.database_dsn, "11111111-2222-4333-8444-555555555555") == 1
    assert not any("X-Amz" in line for line in invocation.log_lines)


def test_a_handler_login_with_verify_full_fails_against_a_wrong_ca(deployed, tmp_path):
    """A server in the middle: the same kind of front-end before the same database, but
    with a certificate from a CA of its own. The handler still trusts the sandbox CA."""
    sandbox, aws, _ = deployed
    with TlsFrontEnd(tmp_path / "impostor", backend=sandbox.database_dsn,
                     credentials=SANDBOX_CREDENTIALS) as impostor:
        route = types.SimpleNamespace(host=impostor.host, port=impostor.port,
                                      ca_file=sandbox.database_tls.ca_file, serve=impostor.serve)
        event = {**EVENT, "request": {"userAttributes": {
            **EVENT["request"]["userAttributes"], "sub": "66666666-7777-4888-9999-000000000000",
            "email": "tls.wrong@example.com"}}}
        invocation = invoker(sandbox, aws, route).invoke(FUNCTION, event, trigger=True)
        assert not invocation.ok
        assert "certificate verify failed" in invocation.error_message
        # The handshake failed, so the token never reached the impostor.
        assert impostor.logins == 0 and list(impostor.refusals) == []
    assert profiles(sandbox.database_dsn, "66666666-7777-4888-9999-000000000000") == 0


def test_with_database_auth_iam_runbooks_own_login_in_a_dry_run_goes_through_the_front_end(
        tmp_path):
    """fix-tables logs in as a live run would with database.auth: iam: a token for the
    cluster's endpoint, over TLS verified against the sandbox CA; not straight to the
    sandbox's PostgreSQL."""
    data = yaml.safe_load(PROD_CONFIG.read_text())
    data["database"]["auth"] = "iam"
    # The migrations alone: no roles for the functions, so no proxy to log in through.
    data["database"]["roles"] = {}
    data["phases"]["a3"].remove("db-proxy")
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(data))
    config = config_mod.load(path)
    assert config.database.sslmode == "verify-full"
    steps = ["network", "database", "store-secrets", "fix-tables"]
    with Sandbox(Progress(quiet=True)) as sandbox:
        aws = ClientFactory(REGION, endpoint_url=sandbox.aws_url, credentials=SANDBOX_CREDENTIALS)
        before = sandbox.database_tls.logins

        results = new_runner(config, aws, Progress(quiet=True), dry_run=True, sleep=lambda s: None,
                         database_dsn=sandbox.database_dsn,
                         database_tls=sandbox.database_tls).run(steps)

        assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
        migrations = len(list(TEMPLATES.glob("*.sql.j2")))
        assert results[-1].applied == migrations  # every one, through the front-end
        assert sandbox.database_tls.logins > before
        assert not sandbox.database_tls.refusals
        with psycopg.connect(sandbox.database_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM runbook.schema_migrations").fetchone() == (
                migrations,)
