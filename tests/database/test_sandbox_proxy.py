"""The sandbox's TLS front-end answering for an RDS Proxy's endpoint: a proxy made in a
moto server (end-to-end IAM, RequireTLS, with the sandbox's CreateDBProxy fix) with the
cluster registered, served by the local invoker as it serves the cluster, before a real
PostgreSQL. A handler's login through the proxy endpoint verifies the proxy's certificate
and sends a token signed for the proxy; what RDS Proxy refuses is refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import psycopg
import pytest

from runbook.aws.clients import ClientFactory
from runbook.functions.invoke import LocalInvoker
from runbook.lambda_runtime import db
from runbook.output.progress import Progress
from runbook.sandbox import rds_proxy as sandbox_rds_proxy
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from runbook.sandbox.tls import SandboxCA, TlsFrontEnd
from tests.database.test_sandbox_tls import REGION, SESSION, token

CLUSTER = "matbakh-prod"
DATABASE = "matbakh_main"
PROXY = "matbakh-prod-proxy"
LONELY = "matbakh-prod-lonely"     # a proxy with no cluster registered


@pytest.fixture
def account(moto_endpoint):
    """A cluster and two proxies in the moto server: PROXY with the cluster registered
    in its default target group, LONELY with none. {name: endpoint} as RDS gives them."""
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                                 AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
               for i, zone in enumerate("ab")]
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=CLUSTER, Engine="aurora-postgresql", DatabaseName=DATABASE,
        MasterUsername="matbakh_admin", MasterUserPassword="not-used-here-1",
        Port=5432, EnableIAMDatabaseAuthentication=True)["DBCluster"]
    endpoints = {"cluster": cluster["Endpoint"]}
    for name in (PROXY, LONELY):
        proxy = rds.create_db_proxy(
            DBProxyName=name, EngineFamily="POSTGRESQL", DefaultAuthScheme="IAM_AUTH",
            RoleArn="arn:aws:iam::123456789012:role/matbakh-prod-proxy",
            VpcSubnetIds=subnets, RequireTLS=True)["DBProxy"]
        endpoints[name] = proxy["Endpoint"]
    rds.register_db_proxy_targets(DBProxyName=PROXY, TargetGroupName="default",
                                  DBClusterIdentifiers=[CLUSTER])
    return endpoints


@pytest.fixture
def front_end(pg_dsn, tmp_path):
    with TlsFrontEnd(tmp_path / "tls", backend=pg_dsn, credentials=SANDBOX_CREDENTIALS) as fe:
        yield fe


@pytest.fixture
def invoker(moto_endpoint, front_end, pg_dsn):
    aws = ClientFactory(REGION, endpoint_url=moto_endpoint, credentials=SANDBOX_CREDENTIALS)
    return LocalInvoker(aws, endpoint_url=moto_endpoint, credentials=SANDBOX_CREDENTIALS,
                        database_dsn=pg_dsn, database_tls=front_end)


def handler_environment(invoker: LocalInvoker, host: str, *, user: str = "postgres",
                        tmp_path) -> dict:
    """What the local invoker gives a handler configured with DB_AUTH=iam and DB_HOST
    `host` (it serves the account's endpoints on the way)."""
    configuration = {
        "FunctionName": "matbakh-process-user-signup",
        "FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:matbakh-process-user-signup",
        "Environment": {"Variables": {
            "DB_AUTH": "iam", "DB_HOST": host, "DB_PORT": "5432", "DB_NAME": DATABASE,
            "DB_USER": user, "DB_SSLROOTCERT": "/opt/rds-ca/global-bundle.pem"}}}
    return invoker._environment(configuration)


def login(fe: TlsFrontEnd, host: str, password: str, *, user: str = "postgres",
          sslmode: str = "verify-full"):
    return psycopg.connect(host=host, hostaddr=fe.host, port=fe.port, dbname=DATABASE,
                           user=user, password=password, sslmode=sslmode,
                           sslrootcert=str(fe.ca_file), connect_timeout=5)


@pytest.fixture
def served(account, invoker, tmp_path):
    """The proxy endpoint, once the invoker has had the front-end serve the account."""
    handler_environment(invoker, account[PROXY], tmp_path=tmp_path)
    return account[PROXY]


def test_a_handler_logs_in_through_the_proxy_endpoint_with_verify_full_and_a_proxy_token(
        account, invoker, front_end, pg_dsn, tmp_path):
    [proxy] = boto3.client("rds", region_name=REGION).describe_db_proxies(
        DBProxyName=PROXY)["DBProxies"]
    assert account[PROXY] == proxy["Endpoint"]      # served as RDS names it, not derived
    env = handler_environment(invoker, account[PROXY], tmp_path=tmp_path)
    assert (env["DB_HOSTADDR"], env["DB_SSLROOTCERT"]) == (front_end.host,
                                                           str(front_end.ca_file))
    target = db.from_environment(env, session=SESSION)
    assert (target.sslmode, target.host, target.port) == ("verify-full", account[PROXY], 5432)
    with db.connect(target) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "postgres", psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"])
    assert front_end.logins == 1 and list(front_end.refusals) == []


def test_a_handler_that_verifies_against_another_ca_stops_at_the_handshake(
        served, invoker, front_end, tmp_path):
    env = handler_environment(invoker, served, tmp_path=tmp_path)
    env["DB_SSLROOTCERT"] = str(SandboxCA(tmp_path / "wrong").ca_file)
    impostor = db.from_environment(env, session=SESSION)
    with pytest.raises(db.ConnectError, match="certificate verify failed") as refused:
        db.connect(impostor, timeout_s=5)
    assert refused.value.kind == "tls"
    assert front_end.logins == 0 and list(front_end.refusals) == []   # no token was sent
    assert impostor.password not in str(refused.value)


def test_a_client_that_does_not_start_tls_is_refused_at_the_proxy_endpoint(served, front_end):
    with pytest.raises(psycopg.OperationalError, match="SSL off"):
        login(front_end, served, token(host=served), sslmode="disable")
    assert front_end.refusals[-1] == "no TLS from user 'postgres'"
    assert front_end.logins == 0


def test_a_tampered_token_is_refused_at_the_proxy_endpoint(served, front_end):
    forged = token(user="someone_else", host=served).replace("DBUser=someone_else",
                                                              "DBUser=postgres")
    with pytest.raises(psycopg.OperationalError,
                       match='PAM authentication failed for user "postgres"'):
        login(front_end, served, forged)
    assert "signature does not match" in front_end.refusals[-1]
    assert front_end.logins == 0


def test_an_expired_token_is_refused_at_the_proxy_endpoint(served, front_end):
    stale = token(host=served, at=datetime.now(timezone.utc) - timedelta(minutes=16))
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, served, stale)
    assert "expired" in front_end.refusals[-1]
    assert front_end.logins == 0


def test_a_token_for_another_user_is_refused_at_the_proxy_endpoint(served, front_end):
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, served, token(user="lambda_writer", host=served))
    assert "another database user" in front_end.refusals[-1]
    assert front_end.logins == 0


def test_a_password_that_is_not_a_token_is_refused_at_the_proxy_endpoint(served, front_end):
    """The proxy requires IAM: the master password gets no one in."""
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, served, "not-used-here-1")
    assert "not an RDS auth token" in front_end.refusals[-1]
    assert front_end.logins == 0


def test_a_token_signed_for_the_cluster_is_refused_at_the_proxy_and_the_other_way_round(
        account, served, front_end):
    cluster = account["cluster"]
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, served, token(host=cluster))
    assert f"not {served}:5432" in front_end.refusals[-1]
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, cluster, token(host=served))
    assert f"not {cluster}:5432" in front_end.refusals[-1]
    assert front_end.logins == 0
    with login(front_end, cluster, token(host=cluster)) as conn:   # each with its own
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with login(front_end, served, token(host=served)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not any("X-Amz" in reason for reason in front_end.refusals)


def test_a_proxy_with_no_registered_cluster_refuses_every_login_until_one_is_registered(
        account, invoker, front_end, tmp_path):
    lonely = account[LONELY]
    handler_environment(invoker, lonely, tmp_path=tmp_path)
    with pytest.raises(psycopg.OperationalError, match="no cluster registered"):
        login(front_end, lonely, token(host=lonely))
    assert front_end.refusals[-1] == (
        f"sandbox TLS front-end: RDS Proxy {LONELY} has no cluster registered with its "
        "default target group, so it has no database to connect to (run step db-proxy)")
    assert front_end.logins == 0

    boto3.client("rds", region_name=REGION).register_db_proxy_targets(
        DBProxyName=LONELY, TargetGroupName="default", DBClusterIdentifiers=[CLUSTER])
    handler_environment(invoker, lonely, tmp_path=tmp_path)
    with login(front_end, lonely, token(host=lonely)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_report_names_the_proxy_stand_in_and_what_it_does_not_emulate():
    simulated = Sandbox(Progress(quiet=True)).simulated
    assert sandbox_rds_proxy.SIMULATED_ENDPOINT in simulated
    for missing in ("pooling", "pinning", "IAM login to the cluster", "IAM policies"):
        assert missing in sandbox_rds_proxy.SIMULATED_ENDPOINT
