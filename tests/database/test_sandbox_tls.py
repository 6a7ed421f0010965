"""The sandbox's TLS front-end (runbook.sandbox.tls) in front of a real PostgreSQL, with
libpq as the client and tokens signed by botocore: logins verify the server for real,
and what RDS refuses is refused."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import boto3
import psycopg
import pytest

from runbook.sandbox.stack import SANDBOX_CREDENTIALS
from runbook.sandbox.tls import SandboxCA, TlsFrontEnd
from runbook.lambda_runtime import db

HOST = "matbakh-prod.cluster-abc123.eu-central-1.rds.amazonaws.com"
READER = "matbakh-prod.cluster-ro-abc123.eu-central-1.rds.amazonaws.com"
REGION = "eu-central-1"
SESSION = boto3.session.Session(region_name=REGION, **SANDBOX_CREDENTIALS)


@pytest.fixture
def front_end(pg_dsn, tmp_path):
    """A front-end answering for HOST:5432, database matbakh_main mapped to pg_dsn's."""
    with TlsFrontEnd(tmp_path / "tls", backend=pg_dsn, credentials=SANDBOX_CREDENTIALS) as fe:
        fe.serve([HOST, READER], port=5432, database="matbakh_main", region=REGION)
        yield fe


def handler_environment(fe: TlsFrontEnd, ca_file, user: str = "postgres") -> dict:
    """What the local invoker gives a handler configured with DB_AUTH=iam."""
    return {"DB_AUTH": "iam", "DB_HOST": HOST, "DB_PORT": "5432", "DB_NAME": "matbakh_main",
            "DB_USER": user, "DB_SSLROOTCERT": str(ca_file), "AWS_REGION": REGION,
            "DB_HOSTADDR": fe.host, "DB_HOSTADDR_PORT": str(fe.port)}


def token(user: str = "postgres", host: str = HOST, at: datetime | None = None) -> str:
    """An auth token as generate_db_auth_token makes it; with `at`, signed at that time."""
    if at is None:
        return SESSION.client("rds").generate_db_auth_token(
            DBHostname=host, Port=5432, DBUsername=user, Region=REGION)
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    class SignedAt(SigV4QueryAuth):
        def add_auth(self, request):
            request.context["timestamp"] = at.strftime("%Y%m%dT%H%M%SZ")
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            self._inject_signature_to_request(
                request, self.signature(self.string_to_sign(request, canonical), request))

    request = AWSRequest(method="GET", url=f"https://{host}:5432/",
                         data={"Action": "connect", "DBUser": user})
    SignedAt(SESSION.get_credentials(), "rds-db", REGION, expires=900).add_auth(request)
    return request.url[len("https://"):]


def login(fe: TlsFrontEnd, password: str, *, user: str = "postgres", host: str = HOST,
          sslmode: str = "verify-full"):
    return psycopg.connect(host=host, hostaddr=fe.host, port=fe.port, dbname="matbakh_main",
                           user=user, password=password, sslmode=sslmode,
                           sslrootcert=str(fe.ca_file), connect_timeout=5)


def test_a_handler_login_with_verify_full_succeeds_against_the_right_ca_and_fails_against_a_wrong_one(
        front_end, pg_dsn, tmp_path):
    target = db.from_environment(handler_environment(front_end, front_end.ca_file),
                                 session=SESSION)
    assert (target.sslmode, target.host, target.port) == ("verify-full", HOST, 5432)
    with db.connect(target) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "postgres", psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"])
    assert front_end.logins == 1

    wrong = SandboxCA(tmp_path / "wrong")  # another CA: a server in the middle
    impostor = db.from_environment(handler_environment(front_end, wrong.ca_file), session=SESSION)
    with pytest.raises(db.ConnectError, match="certificate verify failed") as refused:
        db.connect(impostor, timeout_s=5)
    assert refused.value.kind == "tls"
    # The client stopped at the handshake: the token was never sent.
    assert front_end.logins == 1 and list(front_end.refusals) == []
    assert impostor.password not in str(refused.value)


def test_the_reader_endpoint_is_served_and_an_unknown_name_fails_verify_full(front_end):
    with login(front_end, token(host=READER), host=READER) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        login(front_end, token(host="elsewhere.example.com"), host="elsewhere.example.com")


def test_a_client_that_does_not_start_tls_is_refused(front_end):
    with pytest.raises(psycopg.OperationalError, match="SSL off"):
        login(front_end, token(), sslmode="disable")
    assert front_end.refusals[-1] == "no TLS from user 'postgres'"
    assert front_end.logins == 0


def test_a_tampered_token_is_refused(front_end):
    value = token(user="someone_else")
    forged = value.replace("DBUser=someone_else", "DBUser=postgres")
    with pytest.raises(psycopg.OperationalError, match='PAM authentication failed for user "postgres"'):
        login(front_end, forged)
    assert "signature does not match" in front_end.refusals[-1]
    assert front_end.logins == 0


def test_an_expired_token_is_refused(front_end):
    stale = token(at=datetime.now(timezone.utc) - timedelta(minutes=16))
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, stale)
    assert "expired" in front_end.refusals[-1]
    fresh = token(at=datetime.now(timezone.utc) - timedelta(minutes=14))
    with login(front_end, fresh) as conn:  # the same signing, within its 15 minutes
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_token_for_another_user_is_refused(front_end):
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, token(user="lambda_writer"), user="postgres")
    assert "another database user" in front_end.refusals[-1]


def test_a_token_for_another_endpoint_or_signed_with_other_keys_is_refused(front_end):
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, token(host=READER))  # valid, but for the reader endpoint
    assert f"not {HOST}:5432" in front_end.refusals[-1]
    other = boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                  aws_secret_access_key="not-the-sandbox-secret")
    foreign = other.client("rds").generate_db_auth_token(DBHostname=HOST, Port=5432,
                                                          DBUsername="postgres", Region=REGION)
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        login(front_end, foreign)
    assert "signature does not match" in front_end.refusals[-1]
    assert not any("X-Amz" in reason for reason in front_end.refusals)


def test_stopping_closes_the_listener_and_open_sessions(pg_dsn, tmp_path):
    fe = TlsFrontEnd(tmp_path / "tls", backend=pg_dsn, credentials=SANDBOX_CREDENTIALS).start()
    fe.serve([HOST], port=5432, database="matbakh_main", region=REGION)
    conn = login(fe, token())
    fe.stop()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        login(fe, token())
    fe.stop()  # a second stop is harmless


def test_a_database_other_than_the_clusters_is_not_mapped(front_end):
    target = dataclasses.replace(
        db.from_environment(handler_environment(front_end, front_end.ca_file), session=SESSION),
        dbname="no_such_database")
    with pytest.raises(db.ConnectError, match='database "no_such_database" does not exist'):
        db.connect(target, timeout_s=5)
