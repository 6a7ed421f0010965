"""MSK IAM auth tokens (runbook.aws.kafka.TokenSource, made by aws-msk-iam-sasl-signer-python)
and the sandbox's check of them (runbook.sandbox.msk_token): what MSK refuses."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest

from runbook.aws.kafka import RENEW_BEFORE_S, KafkaAccess, TokenSource
from runbook.sandbox.msk_token import TokenRefused, verify

REGION = "eu-central-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def token(region=REGION, creds=CREDS, session_token=None) -> str:
    session = boto3.Session(region_name=region, aws_session_token=session_token, **creds)
    return TokenSource(session, region).token()


def url(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def edited(value: str, **changes) -> str:
    """`value` with query parameters replaced (None: removed), the signature kept."""
    parts = urlsplit(url(value))
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    query = {k: v for k, v in query.items() if v is not None}
    return encoded(f"https://{parts.netloc}/?{urlencode(query)}")


def check(value: str, **overrides) -> None:
    verify(value, **{"region": REGION, "credentials": CREDS, **overrides})


def test_the_signers_token_for_the_same_credentials_passes_with_and_without_a_session_token():
    value = token()
    assert "=" not in value and url(value).startswith(f"https://kafka.{REGION}.amazonaws.com/")
    check(value)
    check(token(session_token="session-abc"))
    # The signer's User-Agent is added after signing: dropping it changes nothing.
    check(edited(value, **{"User-Agent": None}))


@pytest.mark.parametrize("value, overrides, reason", [
    (lambda: token(creds={**CREDS, "aws_secret_access_key": "other"}), {},
     "signature does not match"),
    (lambda: token(creds={**CREDS, "aws_access_key_id": "AKIAOTHER"}), {}, "credential scope"),
    (lambda: token(region="eu-west-1"), {}, "not a presigned URL for kafka.eu-central-1"),
    (lambda: token(session_token="abc"), {}, None),
    (lambda: edited(token(), **{"X-Amz-Security-Token": "other"}), {}, "signature does not match"),
    (lambda: edited(token(), Action="kafka-cluster:WriteData"), {}, "Action=kafka-cluster:Connect"),
    (lambda: edited(token(), **{"X-Amz-Expires": "3600"}), {}, "at most 900"),
    (lambda: edited(token(), **{"X-Amz-Expires": "899"}), {}, "signature does not match"),
    (lambda: edited(token(), **{"X-Amz-SignedHeaders": "host;x-amz-date"}), {}, "host header"),
    (lambda: edited(token(), Extra="1"), {}, "does not expect"),
    (lambda: token(), {"region": "eu-west-1"}, "not a presigned URL for kafka.eu-west-1"),
    (lambda: "not a token!", {}, "not an MSK IAM token|not a presigned URL"),
    (lambda: "", {}, "not a presigned URL"),
])
def test_what_msk_would_refuse_is_refused_with_the_reason(value, overrides, reason):
    if reason is None:  # a session token the checker knows nothing of still verifies:
        check(value())  # it is signed, and MSK looks it up with the key; nothing to refuse
        return
    with pytest.raises(TokenRefused, match=reason):
        check(value(), **overrides)


def test_a_token_is_valid_for_its_15_minutes_and_not_after():
    value = token()
    signed = datetime.strptime(dict(parse_qsl(urlsplit(url(value)).query))["X-Amz-Date"],
                               "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    check(value, now=signed + timedelta(seconds=899))
    with pytest.raises(TokenRefused, match="expired"):
        check(value, now=signed + timedelta(seconds=901))
    with pytest.raises(TokenRefused, match="future"):
        check(value, now=signed - timedelta(minutes=10))


def test_no_refusal_quotes_the_token_or_its_signature():
    value = token(creds={**CREDS, "aws_secret_access_key": "other"})
    signature = dict(parse_qsl(urlsplit(url(value)).query))["X-Amz-Signature"]
    with pytest.raises(TokenRefused) as refused:
        check(value)
    assert signature not in str(refused.value) and value not in str(refused.value)


def test_a_token_is_reused_until_shortly_before_it_expires():
    now = [1_000_000_000.0]
    session = boto3.Session(region_name=REGION, **CREDS)
    source = TokenSource(session, REGION, clock=lambda: now[0])
    first = source.token()
    expires = source._expires_s
    now[0] = expires - RENEW_BEFORE_S - 1
    assert source.token() == first
    now[0] = expires - RENEW_BEFORE_S + 1
    # A new token is signed at the real time: it differs from the first only if a second
    # has passed since; what matters is that the source made one and it still verifies.
    again = source.token()
    assert source._expires_s >= expires
    check(again)


def test_live_clients_use_tls_and_oauthbearer_with_the_signers_token():
    access = KafkaAccess(boto3.Session(region_name=REGION, **CREDS), REGION)
    settings = access.client_kwargs()
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["sasl_mechanism"] == "OAUTHBEARER"
    check(settings["sasl_oauth_token_provider"].token())
