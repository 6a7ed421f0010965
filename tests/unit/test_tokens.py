"""Token checks with a key pair made here: the signature, iss, aud/client_id, token_use,
exp and the custom attributes, each refused with a message naming the check. The JWKS
is served from memory instead of over HTTPS; everything else is PyJWT's real code."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from runbook.aws import tokens

POOL = tokens.Pool("eu-central-1", "eu-central-1_Ab12Cd34E", "client123")
SUB = "0f6b2c1e-3d4a-4b5c-8d9e-1f2a3b4c5d6e"


def keypair(kid: str):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "alg": "RS256", "use": "sig"}


PRIVATE, PUBLIC = keypair("key-1")
OTHER_PRIVATE, _ = keypair("key-1")  # same kid, another key: a forged token


class MemoryKeys:
    """PyJWKClient's one method, from a JWKS held in memory."""

    def __init__(self, *jwks):
        self.keys = {k["kid"]: jwt.PyJWK(k) for k in jwks}

    def get_signing_key_from_jwt(self, token):
        kid = jwt.get_unverified_header(token).get("kid")
        if kid not in self.keys:
            raise jwt.PyJWKClientError(f'Unable to find a signing key that matches: "{kid}"')
        return self.keys[kid]


def token(use: str, *, key=PRIVATE, kid="key-1", **claims) -> str:
    now = int(time.time())
    payload = {"sub": SUB, "iss": POOL.issuer, "token_use": use, "iat": now, "exp": now + 3600}
    payload.update({"aud": POOL.client_id, "custom:role": "runbook-it"} if use == "id"
                   else {"client_id": POOL.client_id})
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def verify(id_token=None, access_token=None):
    return tokens.verify(id_token or token("id"), access_token or token("access"), POOL,
                         MemoryKeys(PUBLIC), {"custom:role": "runbook-it"})


def test_valid_tokens_pass_and_say_what_was_checked():
    checked = verify()
    assert checked["kid"] == "key-1" and checked["issuer"] == POOL.issuer
    assert checked["attributes"] == ["custom:role"] and checked["expires_in_s"] == 3600


@pytest.mark.parametrize("id_token, access_token, message", [
    (token("id", key=OTHER_PRIVATE), None, "ID token: InvalidSignatureError"),
    (None, token("access", key=OTHER_PRIVATE), "access token: InvalidSignatureError"),
    (token("id", kid="unknown"), None, "no key of the pool's JWKS matches"),
    (token("id", iss="https://cognito-idp.eu-central-1.amazonaws.com/other"), None,
     "InvalidIssuerError"),
    (token("id", aud="another-client"), None, "InvalidAudienceError"),
    (None, token("access", client_id="another-client"), "claim client_id is 'another-client'"),
    (token("id", token_use="access"), None, "claim token_use is 'access', expected 'id'"),
    (None, token("access", token_use="id"), "claim token_use is 'id', expected 'access'"),
    (token("id", exp=int(time.time()) - 120), None, "ExpiredSignatureError"),
    (token("id", exp=None), None, "MissingRequiredClaimError"),
    (token("id", **{"custom:role": None}), None, "claim custom:role is missing"),
    (None, token("access", sub="someone-else"), "names another user"),
])
def test_each_failed_check_is_named(id_token, access_token, message):
    with pytest.raises(tokens.TokenInvalid, match=message):
        verify(id_token, access_token)


def test_a_flipped_signature_byte_is_refused():
    header, payload, signature = token("id").split(".")
    flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
    with pytest.raises(tokens.TokenInvalid, match="Signature verification failed"):
        verify(".".join((header, payload, flipped)))


def test_the_jwks_comes_from_aws_or_from_the_endpoint_in_use():
    assert POOL.jwks_url() == ("https://cognito-idp.eu-central-1.amazonaws.com/"
                               "eu-central-1_Ab12Cd34E/.well-known/jwks.json")
    assert POOL.jwks_url("http://127.0.0.1:5000/") == (
        "http://127.0.0.1:5000/eu-central-1_Ab12Cd34E/.well-known/jwks.json")
