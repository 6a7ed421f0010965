"""The connector shared by runbook and the Lambda handlers (runbook.lambda_runtime.db)."""

from __future__ import annotations

import json
import socket

import boto3
import pytest
from moto import mock_aws

from runbook.lambda_runtime import db
from tests.conftest import REGION

SECRET = {"engine": "postgres", "host": "matbakh-prod.cluster-abc.eu-central-1.rds.amazonaws.com",
          "port": 5432, "dbname": "matbakh_main", "username": "postgres",
          "password": "Pw-must-stay-hidden-123"}


def test_secret_gives_a_tls_target_whose_repr_hides_the_password():
    target = db.from_secret(json.dumps(SECRET), "secret matbakh-db-postgres")
    assert (target.host, target.port, target.dbname, target.user, target.sslmode) == (
        SECRET["host"], 5432, "matbakh_main", "postgres", "require")
    assert SECRET["password"] not in repr(target)
    assert SECRET["password"] not in target.describe()


@pytest.mark.parametrize("text, expected", [
    ("not json", "does not hold JSON"),
    ("[1, 2]", "not an object"),
    (json.dumps({"host": "h", "password": "Pw-must-stay-hidden-123"}), "lacks port, dbname, username"),
    (json.dumps({**SECRET, "port": "five"}), "port is not a number"),
])
def test_a_malformed_secret_names_what_is_wrong_and_never_the_password(text, expected):
    with pytest.raises(db.ConnectError) as caught:
        db.from_secret(text, "secret s")
    assert caught.value.kind == "config"
    assert expected in str(caught.value)
    assert "Pw-must-stay-hidden-123" not in str(caught.value)


def test_iam_token_is_the_password_and_the_server_is_verified_by_default():
    rds = boto3.client("rds", region_name=REGION)  # signing is local: no call is made
    target = db.from_iam(SECRET["host"], 5432, "matbakh_main", "lambda_writer", region=REGION,
                         rds_client=rds, sslrootcert="/opt/rds-ca/global-bundle.pem")
    assert (target.sslmode, target.sslrootcert) == ("verify-full", "/opt/rds-ca/global-bundle.pem")
    assert "X-Amz-Signature=" in target.password and "Action=connect" in target.password
    assert target.password not in repr(target) and "X-Amz" not in target.describe()
    weaker = db.from_iam(SECRET["host"], 5432, "d", "u", region=REGION, rds_client=rds,
                         sslrootcert=None, sslmode="require")  # allow_unverified_tls
    assert weaker.sslmode == "require"


@pytest.mark.parametrize("sslmode, sslrootcert, expected", [
    ("prefer", "/ca.pem", "only sent over TLS"),
    ("disable", "/ca.pem", "only sent over TLS"),
    ("verify-full", None, "needs the RDS CA bundle"),
    ("verify-ca", "", "needs the RDS CA bundle"),
])
def test_an_iam_login_is_never_weakened_silently(sslmode, sslrootcert, expected):
    rds = boto3.client("rds", region_name=REGION)
    with pytest.raises(db.ConnectError, match=expected) as caught:
        db.from_iam(SECRET["host"], 5432, "d", "u", region=REGION, rds_client=rds,
                    sslmode=sslmode, sslrootcert=sslrootcert)
    assert caught.value.kind == "config"


def test_environment_prefers_db_dsn_then_iam_then_the_secret():
    local = db.from_environment({"DB_DSN": "postgresql://app@localhost:5433/local",
                                 "DB_SECRET_ARN": "arn:unused"})
    assert (local.host, local.port, local.dbname, local.source) == ("localhost", 5433, "local",
                                                                      "DB_DSN")
    with pytest.raises(db.ConnectError, match="DB_AUTH=iam needs DB_HOST, DB_USER, DB_SSLROOTCERT"):
        db.from_environment({"DB_AUTH": "iam", "DB_NAME": "x"})
    iam = db.from_environment({"DB_AUTH": "IAM", "DB_HOST": "h.example", "DB_NAME": "n",
                               "DB_USER": "lambda_writer", "AWS_REGION": REGION,
                               "DB_SSLROOTCERT": "/opt/rds-ca/global-bundle.pem",
                               "DB_SECRET_ARN": "arn:unused"},
                              session=boto3.session.Session(region_name=REGION))
    assert (iam.user, iam.sslmode, iam.sslrootcert) == (
        "lambda_writer", "verify-full", "/opt/rds-ca/global-bundle.pem")
    assert (iam.hostaddr, iam.hostaddr_port) == (None, None)
    with pytest.raises(db.ConnectError, match="set DB_SECRET_ARN"):
        db.from_environment({})


def test_hostaddr_reaches_another_socket_but_the_token_stays_for_the_endpoint():
    iam = db.from_environment({"DB_AUTH": "iam", "DB_HOST": "h.example", "DB_PORT": "5432",
                               "DB_NAME": "n", "DB_USER": "u", "AWS_REGION": REGION,
                               "DB_SSLROOTCERT": "/ca.pem", "DB_HOSTADDR": "127.0.0.1",
                               "DB_HOSTADDR_PORT": "6543"},
                              session=boto3.session.Session(region_name=REGION))
    assert (iam.host, iam.port, iam.hostaddr, iam.hostaddr_port) == (
        "h.example", 5432, "127.0.0.1", 6543)
    assert iam.password.startswith("h.example:5432/?Action=connect")


@mock_aws
def test_environment_reads_the_rds_style_secret():
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="matbakh-db-postgres", SecretString=json.dumps(SECRET))["ARN"]
    target = db.from_environment({"DB_SECRET_ARN": arn},
                                 session=boto3.session.Session(region_name=REGION))
    assert target.user == "postgres" and target.password == SECRET["password"]


def test_an_unreachable_server_is_reported_without_the_password():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    target = db.from_dsn(f"postgresql://postgres:Pw-must-stay-hidden-123@127.0.0.1:{port}/x",
                         "RUNBOOK_PG_DSN")
    assert "Pw-must-stay-hidden-123" not in repr(target)
    with pytest.raises(db.ConnectError) as caught:
        db.connect(target, timeout_s=2)
    assert caught.value.kind == "unreachable"
    assert f"127.0.0.1:{port}/x as postgres (RUNBOOK_PG_DSN)" in str(caught.value)
    assert "Pw-must-stay-hidden-123" not in str(caught.value)


def test_a_bad_dsn_is_a_config_error_that_does_not_echo_it():
    with pytest.raises(db.ConnectError) as caught:
        db.from_dsn("host=x password=Pw-must-stay-hidden-123 nonsense", "RUNBOOK_PG_DSN")
    assert caught.value.kind == "config"
    assert "Pw-must-stay-hidden-123" not in str(caught.value)


def test_e_mail_addresses_are_withheld():
    assert db.redact_emails("Key (email)=(anna.schmidt@example.com) exists") == \
        "Key (email)=(<e-mail>) exists"
