"""Checking an RDS IAM auth token the way RDS does, for the sandbox's TLS front-end.

A token (`generate_db_auth_token`) is a SigV4 presigned GET, signed offline, for one
endpoint and one database user:

    <host>:<port>/?Action=connect&DBUser=<user>&X-Amz-Algorithm=AWS4-HMAC-SHA256
        &X-Amz-Credential=<key id>/<yyyymmdd>/<region>/rds-db/aws4_request
        &X-Amz-Date=<yyyymmddThhmmssZ>&X-Amz-Expires=900&X-Amz-SignedHeaders=host
        &X-Amz-Signature=<hex>

`verify` parses it, checks what it is for (host, port, DBUser, Action=connect), its
credential scope and its age, and then signs the same request again, at the token's own
X-Amz-Date, with the credentials it must have been made with (botocore's SigV4QueryAuth,
service rds-db), and compares the signatures. So a token whose user, host, expiry or
date was edited, or that was signed with other credentials, is refused, as RDS would.

No message here contains the token or its signature.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

SERVICE = "rds-db"
MAX_EXPIRES_S = 900          # what RDS allows, and what generate_db_auth_token asks for
CLOCK_SKEW_S = 300           # a token dated this far in the future still counts
AMZ_DATE = "%Y%m%dT%H%M%SZ"


class TokenRefused(Exception):
    """The token is not one RDS would accept for this login; the message says why."""


def verify(token: str, *, host: str, port: int, user: str, region: str, credentials: dict,
           now: datetime | None = None) -> None:
    """Raise TokenRefused unless `token` lets `user` log in at `host`:`port`, signed with
    `credentials` ({"aws_access_key_id", "aws_secret_access_key"}) for `region`."""
    now = now or datetime.now(timezone.utc)
    parts = urlsplit("https://" + (token or ""))
    try:
        token_port = parts.port
    except ValueError:
        raise TokenRefused("the token's port is not a number") from None
    if parts.path != "/" or not parts.hostname:
        raise TokenRefused("not an RDS auth token (expected host:port/?Action=connect&...)")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs):
        raise TokenRefused("the token repeats a query parameter")
    if query.get("Action") != "connect":
        raise TokenRefused("the token is not for Action=connect")
    if (parts.hostname, token_port) != (host.lower(), int(port)):
        raise TokenRefused(f"the token is for {parts.hostname}:{token_port}, not {host}:{port}")
    if query.get("DBUser") != user:
        raise TokenRefused(f"the token is for another database user, not {user}")
    if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise TokenRefused("the token is not signed with AWS4-HMAC-SHA256")
    if query.get("X-Amz-SignedHeaders") != "host":
        raise TokenRefused("the token must sign exactly the host header")
    try:
        signed_at = datetime.strptime(query.get("X-Amz-Date", ""), AMZ_DATE).replace(
            tzinfo=timezone.utc)
        expires = int(query.get("X-Amz-Expires", ""))
    except ValueError:
        raise TokenRefused("the token's X-Amz-Date or X-Amz-Expires is malformed") from None
    scope = query.get("X-Amz-Credential", "").split("/")
    wanted = [credentials["aws_access_key_id"], signed_at.strftime("%Y%m%d"), region, SERVICE,
              "aws4_request"]
    if scope != wanted:
        raise TokenRefused(f"the token's credential scope is not <key id>/<date>/{region}/"
                           f"{SERVICE}/aws4_request for the expected key")
    if not 0 < expires <= MAX_EXPIRES_S:
        raise TokenRefused(f"the token asks to be valid {expires} s; RDS allows at most "
                           f"{MAX_EXPIRES_S}")
    if signed_at > now + timedelta(seconds=CLOCK_SKEW_S):
        raise TokenRefused("the token is dated in the future")
    if now > signed_at + timedelta(seconds=expires):
        raise TokenRefused(f"the token expired {int((now - signed_at).total_seconds()) - expires}"
                           " s ago")
    expected = _signature(parts.hostname, token_port, user, region, credentials,
                          query.get("X-Amz-Date"), expires, query.get("X-Amz-Security-Token"))
    if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
        raise TokenRefused("the token's signature does not match (edited, or signed with "
                           "other credentials)")


def _signature(host: str, port: int, user: str, region: str, credentials: dict,
               amz_date: str, expires: int, session_token: str | None) -> str:
    """The X-Amz-Signature botocore gives the same request signed at `amz_date`."""
    from botocore.awsrequest import AWSRequest

    from runbook.aws.sigv4 import signature_at

    # As generate_db_auth_token builds it: a GET whose parameters botocore moves from
    # the body into the query string, before the X-Amz-* ones.
    request = AWSRequest(method="GET", url=f"https://{host}:{port}/",
                         data={"Action": "connect", "DBUser": user})
    return signature_at(request, service=SERVICE, region=region, credentials=credentials,
                        amz_date=amz_date, expires=expires, session_token=session_token)
