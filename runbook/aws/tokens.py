"""Checking the tokens a Cognito user pool issues, as an API behind it would.

Both tokens are RS256 JWTs signed with a key of the pool's JWKS, published at
`https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json`. A token
is accepted when its signature verifies with the key its header names (`kid`), it has
not expired, it was issued by this pool (`iss`), for this app client (`aud` in an ID
token, `client_id` in an access token), and it says what it is (`token_use`). The ID
token must also carry the user's custom attributes.

Through an emulator (`AWS_ENDPOINT_URL`, the sandbox's moto server) the JWKS is served
at `<endpoint>/<pool id>/.well-known/jwks.json` instead, and its tokens carry
`kid: "dummy"`; the issuer is still the AWS URL, so nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

LEEWAY_S = 30  # clock skew tolerated on exp and iat


class TokenInvalid(ValueError):
    """A token failed a check; the message names the token and the check, never the token."""


@dataclass(frozen=True)
class Pool:
    region: str
    pool_id: str
    client_id: str

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.pool_id}"

    def jwks_url(self, endpoint_url: str | None = None) -> str:
        base = endpoint_url.rstrip("/") + f"/{self.pool_id}" if endpoint_url else self.issuer
        return f"{base}/.well-known/jwks.json"


def key_source(pool: Pool, endpoint_url: str | None = None):
    """A JWKS client for the pool's keys (fetched once, cached by kid)."""
    import jwt

    return jwt.PyJWKClient(pool.jwks_url(endpoint_url), cache_keys=True, timeout=10)


def verify(id_token: str, access_token: str, pool: Pool, keys,
           expected_attributes: dict[str, str]) -> dict:
    """Check both tokens (see the module docstring); what was checked, for the report.

    Raises TokenInvalid naming the first failure.
    """
    claims = _decode("ID token", id_token, pool, keys, audience=pool.client_id)
    _expect("ID token", claims, "token_use", "id")
    for name, value in expected_attributes.items():
        _expect("ID token", claims, name, value)
    access = _decode("access token", access_token, pool, keys, audience=None)
    _expect("access token", access, "token_use", "access")
    _expect("access token", access, "client_id", pool.client_id)
    if access.get("sub") != claims.get("sub"):
        raise TokenInvalid("the access token names another user (sub) than the ID token")
    return {"kid": _kid(id_token), "issuer": pool.issuer, "audience": pool.client_id,
            "token_use": ["id", "access"], "attributes": sorted(expected_attributes),
            "expires_in_s": int(claims["exp"]) - int(claims["iat"])}


def _decode(what: str, token: str, pool: Pool, keys, *, audience: str | None) -> dict:
    import jwt

    try:
        key = keys.get_signing_key_from_jwt(token).key
        return jwt.decode(token, key, algorithms=["RS256"], issuer=pool.issuer,
                          audience=audience, leeway=LEEWAY_S,
                          options={"require": ["exp", "iat", "iss", "sub", "token_use"],
                                   "verify_aud": audience is not None})
    except jwt.PyJWKClientConnectionError as exc:
        raise TokenInvalid(f"the pool's JWKS could not be fetched: {exc}") from None
    except jwt.PyJWKClientError as exc:
        raise TokenInvalid(f"{what}: no key of the pool's JWKS matches ({exc})") from None
    except jwt.InvalidTokenError as exc:
        # PyJWT's messages name the failed check, never the token itself.
        raise TokenInvalid(f"{what}: {type(exc).__name__}: {exc}") from None


def _expect(what: str, claims: dict, name: str, value: str) -> None:
    if claims.get(name) != value:
        shown = "missing" if name not in claims else repr(claims[name])[:60]
        raise TokenInvalid(f"{what}: claim {name} is {shown}, expected {value!r}")


def _kid(token: str) -> str | None:
    import jwt

    return jwt.get_unverified_header(token).get("kid")
