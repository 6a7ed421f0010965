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
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

from runbook.aws.sigv4 import check_signing, signature_at

SERVICE = "rds-db"


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
    expires = check_signing(query, service=SERVICE, region=region, credentials=credentials,
                            now=now, refused=TokenRefused, by="RDS")
    expected = _signature(parts.hostname, token_port, user, region, credentials,
                          query.get("X-Amz-Date"), expires, query.get("X-Amz-Security-Token"))
    if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
        raise TokenRefused("the token's signature does not match (edited, or signed with "
                           "other credentials)")


def _signature(host: str, port: int, user: str, region: str, credentials: dict,
               amz_date: str, expires: int, session_token: str | None) -> str:
    """The X-Amz-Signature botocore gives the same request signed at `amz_date`."""
    from botocore.awsrequest import AWSRequest


    # As generate_db_auth_token builds it: a GET whose parameters botocore moves from
    # the body into the query string, before the X-Amz-* ones.
    request = AWSRequest(method="GET", url=f"https://{host}:{port}/",
                         data={"Action": "connect", "DBUser": user})
    return signature_at(request, service=SERVICE, region=region, credentials=credentials,
                        amz_date=amz_date, expires=expires, session_token=session_token)
