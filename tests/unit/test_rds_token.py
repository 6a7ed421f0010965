"""Checking RDS auth tokens made by botocore (runbook.database.rds_token): what RDS refuses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest

from runbook.database.rds_token import TokenRefused, verify

HOST = "matbakh-prod.cluster-abc123.eu-central-1.rds.amazonaws.com"
REGION = "eu-central-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def token(user="lambda_writer", host=HOST, port=5432, region=REGION, creds=CREDS) -> str:
    rds = boto3.client("rds", region_name=region, **creds)  # signs locally; no call
    return rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user,
                                      Region=region)


def edited(value: str, **changes) -> str:
    """`value` with query parameters replaced, the signature left as it was."""
    parts = urlsplit("https://" + value)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return f"{parts.netloc}{parts.path}?{urlencode(query)}"


def check(value: str, **overrides) -> None:
    args = {"host": HOST, "port": 5432, "user": "lambda_writer", "region": REGION,
            "credentials": CREDS, **overrides}
    verify(value, **args)


def test_a_token_botocore_made_with_the_same_credentials_passes():
    check(token())


@pytest.mark.parametrize("value, overrides, reason", [
    (lambda: edited(token(), DBUser="postgres"), {"user": "postgres"}, "signature does not match"),
    (lambda: token(user="postgres"), {}, "another database user"),
    (lambda: token(host="other.cluster-x.eu-central-1.rds.amazonaws.com"), {}, "not " + HOST),
    (lambda: token(port=5433), {}, "not " + HOST),
    (lambda: token(creds={**CREDS, "aws_secret_access_key": "other"}), {},
     "signature does not match"),
    (lambda: token(creds={**CREDS, "aws_access_key_id": "AKIAOTHER"}), {}, "credential scope"),
    (lambda: token(region="eu-west-1"), {}, "credential scope"),
    (lambda: edited(token(), Action="describe"), {}, "Action=connect"),
    (lambda: edited(token(), **{"X-Amz-Expires": "3600"}), {}, "at most 900"),
    (lambda: edited(token(), **{"X-Amz-Expires": "899"}), {}, "signature does not match"),
    (lambda: "not a token", {}, "not an RDS auth token"),
    (lambda: "", {}, "not an RDS auth token"),
])
def test_what_rds_would_refuse_is_refused_with_the_reason(value, overrides, reason):
    with pytest.raises(TokenRefused, match=reason):
        check(value(), **overrides)


def test_a_token_is_valid_for_its_15_minutes_and_not_after():
    value = token()
    signed = datetime.strptime(dict(parse_qsl(urlsplit("https://" + value).query))["X-Amz-Date"],
                               "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    check(value, now=signed + timedelta(seconds=899))
    with pytest.raises(TokenRefused, match="expired"):
        check(value, now=signed + timedelta(seconds=901))
    with pytest.raises(TokenRefused, match="future"):
        check(value, now=signed - timedelta(minutes=10))


def test_no_refusal_quotes_the_token_or_its_signature():
    value = edited(token(), DBUser="postgres")
    signature = dict(parse_qsl(urlsplit("https://" + value).query))["X-Amz-Signature"]
    with pytest.raises(TokenRefused) as refused:
        check(value, user="postgres")
    assert signature not in str(refused.value) and "X-Amz" not in str(refused.value)
