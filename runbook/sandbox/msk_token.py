"""Checking an MSK IAM auth token the way MSK's IAM listener does, for the sandbox.

The token (`aws-msk-iam-sasl-signer-python`) is a SigV4 presigned GET, signed offline,
base64url-encoded without padding:

    https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect
        &X-Amz-Algorithm=AWS4-HMAC-SHA256
        &X-Amz-Credential=<key id>/<yyyymmdd>/<region>/kafka-cluster/aws4_request
        &X-Amz-Date=<yyyymmddThhmmssZ>&X-Amz-Expires=900&X-Amz-SignedHeaders=host
        &X-Amz-Signature=<hex>[&X-Amz-Security-Token=...]&User-Agent=<signer>

Unlike an RDS token it names no cluster: the host is the region's. The User-Agent is
added after signing, so it is dropped before the request is signed again. `verify`
checks what the token is for, its scope and age, then signs the same request again at
the token's X-Amz-Date with the credentials it must have been made with (service
kafka-cluster) and compares the signatures, as runbook.database.rds_token does for RDS.

No message here contains the token or its signature.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

from runbook.aws.sigv4 import check_signing, signature_at

SERVICE = "kafka-cluster"
ACTION = "kafka-cluster:Connect"
UNSIGNED = {"User-Agent"}
SIGNED = {"Action", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
          "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"}


class TokenRefused(Exception):
    """The token is not one MSK would accept; the message says why."""


def verify(token: str, *, region: str, credentials: dict, now: datetime | None = None) -> None:
    """Raise TokenRefused unless `token` is a kafka-cluster:Connect token for `region`,
    signed with `credentials` ({"aws_access_key_id", "aws_secret_access_key"})."""
    now = now or datetime.now(timezone.utc)
    try:
        url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise TokenRefused("not an MSK IAM token (not base64url text)") from None
    parts = urlsplit(url)
    host = f"kafka.{region}.amazonaws.com"
    if parts.scheme != "https" or parts.hostname != host or parts.path not in ("", "/"):
        raise TokenRefused(f"the token is not a presigned URL for {host}")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs):
        raise TokenRefused("the token repeats a query parameter")
    extra = set(query) - SIGNED - UNSIGNED
    if extra:
        raise TokenRefused(f"the token has parameters MSK does not expect: {sorted(extra)}")
    if query.get("Action") != ACTION:
        raise TokenRefused(f"the token is not for Action={ACTION}")
    expires = check_signing(query, service=SERVICE, region=region, credentials=credentials,
                            now=now, refused=TokenRefused, by="MSK")
    expected = _signature(host, region, credentials, query["X-Amz-Date"], expires,
                          query.get("X-Amz-Security-Token"))
    if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
        raise TokenRefused("the token's signature does not match (edited, or signed with "
                           "other credentials)")


def _signature(host: str, region: str, credentials: dict, amz_date: str, expires: int,
               session_token: str | None) -> str:
    """The X-Amz-Signature botocore gives the same request signed at `amz_date`."""
    from botocore.awsrequest import AWSRequest


    request = AWSRequest(method="GET", url=f"https://{host}/", params={"Action": ACTION})
    return signature_at(request, service=SERVICE, region=region, credentials=credentials,
                        amz_date=amz_date, expires=expires, session_token=session_token)
