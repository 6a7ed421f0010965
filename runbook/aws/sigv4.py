"""Signing a presigned request again at its own date: how the sandbox checks the IAM
tokens AWS services take as passwords (RDS IAM logins, MSK's IAM listener).

Such a token is a SigV4 presigned GET (SigV4QueryAuth), signed offline. botocore's
signer stamps the current time; a check must sign at the token's X-Amz-Date, with the
credentials the token must have been made with, and compare the signatures.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit


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
