"""Signing a presigned request again at its own date: how the sandbox checks the IAM
tokens AWS services take as passwords (RDS IAM logins, MSK's IAM listener).

Such a token is a SigV4 presigned GET (SigV4QueryAuth), signed offline. botocore's
signer stamps the current time; a check must sign at the token's X-Amz-Date, with the
credentials the token must have been made with, and compare the signatures.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

MAX_EXPIRES_S = 900          # what RDS and MSK allow, and what their token makers ask for
CLOCK_SKEW_S = 300           # a token dated this far in the future still counts
AMZ_DATE = "%Y%m%dT%H%M%SZ"


def check_signing(query: dict, *, service: str, region: str, credentials: dict,
                  now: datetime, refused: type[Exception], by: str) -> int:
    """The checks every presigned token passes before its signature is made again: the
    algorithm, the signed headers, the credential scope for `credentials`' key,
    `service` and `region`, and its age. Raises `refused` (its service's TokenRefused;
    `by` names the service in messages) or returns X-Amz-Expires."""
    if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise refused("the token is not signed with AWS4-HMAC-SHA256")
    if query.get("X-Amz-SignedHeaders") != "host":
        raise refused("the token must sign exactly the host header")
    try:
        signed_at = datetime.strptime(query.get("X-Amz-Date", ""), AMZ_DATE).replace(
            tzinfo=timezone.utc)
        expires = int(query.get("X-Amz-Expires", ""))
    except ValueError:
        raise refused("the token's X-Amz-Date or X-Amz-Expires is malformed") from None
    scope = query.get("X-Amz-Credential", "").split("/")
    wanted = [credentials["aws_access_key_id"], signed_at.strftime("%Y%m%d"), region, service,
              "aws4_request"]
    if scope != wanted:
        raise refused(f"the token's credential scope is not <key id>/<date>/{region}/"
                      f"{service}/aws4_request for the expected key")
    if not 0 < expires <= MAX_EXPIRES_S:
        raise refused(f"the token asks to be valid {expires} s; {by} allows at most "
                      f"{MAX_EXPIRES_S}")
    if signed_at > now + timedelta(seconds=CLOCK_SKEW_S):
        raise refused("the token is dated in the future")
    if now > signed_at + timedelta(seconds=expires):
        raise refused(f"the token expired {int((now - signed_at).total_seconds()) - expires}"
                      " s ago")
    return expires


def signature_at(request, *, service: str, region: str, credentials: dict, amz_date: str,
                 expires: int, session_token: str | None) -> str:
    """The X-Amz-Signature of botocore AWSRequest `request` presigned for `service` at
    `amz_date` with `credentials` ({"aws_access_key_id", "aws_secret_access_key"})."""
    from botocore.auth import SigV4QueryAuth
    from botocore.credentials import Credentials

    class SignedAt(SigV4QueryAuth):
        def add_auth(self, request):
            request.context["timestamp"] = amz_date
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            signature = self.signature(self.string_to_sign(request, canonical), request)
            self._inject_signature_to_request(request, signature)

    creds = Credentials(credentials["aws_access_key_id"], credentials["aws_secret_access_key"],
                        session_token)
    SignedAt(creds, service, region, expires=expires).add_auth(request)
    return dict(parse_qsl(urlsplit(request.url).query))["X-Amz-Signature"]
