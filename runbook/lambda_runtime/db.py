"""Opening a PostgreSQL connection the same way in runbook and in the Lambda handlers.

A `Target` says where to connect and how to log in. It comes from one of three sources:

    from_dsn      a local server: RUNBOOK_PG_DSN (sandbox, tests) or DB_DSN (local runs)
    from_secret   the RDS-style secret JSON: host, port, dbname, username, password
    from_iam      an RDS IAM auth token for host, port and user, over TLS that verifies
                  the server (verify-full against the RDS CA bundle) unless told otherwise

`connect` opens a Target with a connect timeout and turns every failure into a
`ConnectError` that says why. Neither a Target's repr nor any error message contains
the password or the token.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Mapping

from runbook.lambda_runtime import emails

CONNECT_TIMEOUT_S = 10


class ConnectError(Exception):
    """The database could not be reached or refused the login.

    `kind` is one of: config (the connection settings are incomplete), unreachable
    (nothing answered in time), auth (the server refused the credentials), tls, failed.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    dbname: str
    user: str
    source: str                                   # where the settings came from
    password: str | None = field(default=None, repr=False)
    sslmode: str = "prefer"
    dsn: str | None = field(default=None, repr=False)
    sslrootcert: str | None = None                # the CA bundle verify-ca/-full checks with
    # Where to open the socket when it is not `host`:`port` (the sandbox's TLS front-end).
    # libpq still checks the certificate against `host` and sends it as SNI.
    hostaddr: str | None = None
    hostaddr_port: int | None = None

    def describe(self) -> str:
        """host:port/dbname as user (source), for messages: never the password."""
        return f"{self.host}:{self.port}/{self.dbname} as {self.user} ({self.source})"

    def with_database(self, dbname: str) -> "Target":
        dsn = None if self.dsn is None else _replace_dbname(self.dsn, dbname)
        return dataclasses.replace(self, dbname=dbname, dsn=dsn)


def from_dsn(dsn: str, source: str) -> Target:
    """A Target for a libpq connection string or URI (e.g. RUNBOOK_PG_DSN)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - psycopg's message may quote the password
        raise ConnectError("config", f"{source} is not a valid PostgreSQL connection string "
                                     "(expected e.g. postgresql://user@host:5432/dbname)") from None
    port = str(parts.get("port") or 5432)
    return Target(host=str(parts.get("host") or "localhost"),
                  port=int(port) if port.isdigit() else 5432,
                  dbname=str(parts.get("dbname") or parts.get("user") or "postgres"),
                  user=str(parts.get("user") or "postgres"), source=source,
                  password=parts.get("password") or None,
                  sslmode=str(parts.get("sslmode") or "prefer"), dsn=dsn)


SECRET_FIELDS = ("host", "port", "dbname", "username", "password")


def from_secret(secret_string: str, source: str, *, sslmode: str = "require",
                sslrootcert: str | None = None) -> Target:
    """A Target from an RDS-style secret: {"host", "port", "dbname", "username", "password"}."""
    try:
        data = json.loads(secret_string)
    except (TypeError, ValueError):
        raise ConnectError("config", f"{source} does not hold JSON; expected the RDS "
                                     f"secret shape with {', '.join(SECRET_FIELDS)}") from None
    if not isinstance(data, dict):
        raise ConnectError("config", f"{source} holds JSON but not an object")
    missing = [key for key in SECRET_FIELDS if data.get(key) in (None, "")]
    if missing:
        raise ConnectError("config", f"{source} lacks {', '.join(missing)} (expected the RDS "
                                     f"secret shape with {', '.join(SECRET_FIELDS)})")
    try:
        port = int(data["port"])
    except (TypeError, ValueError):
        raise ConnectError("config", f"{source}: port is not a number") from None
    return Target(host=str(data["host"]), port=port, dbname=str(data["dbname"]),
                  user=str(data["username"]), source=source, password=str(data["password"]),
                  sslmode=sslmode, sslrootcert=sslrootcert)


def from_iam(host: str, port: int, dbname: str, user: str, *, region: str, rds_client,
             sslrootcert: str | None, sslmode: str = "verify-full", hostaddr: str | None = None,
             hostaddr_port: int | None = None) -> Target:
    """A Target that logs in with a fresh RDS IAM auth token (valid 15 minutes), over TLS.

    The token is a bearer credential for its 15 minutes: sent to a server whose certificate
    is not checked, it can be replayed by whoever answered. So the server is verified
    (verify-full against `sslrootcert`, the RDS CA bundle) unless the caller passes a
    weaker `sslmode` explicitly (database.allow_unverified_tls); below TLS there is none.
    The token is signed for `host`:`port`, also when `hostaddr` reaches it elsewhere.
    Generating the token signs a request locally; it makes no AWS call.
    """
    if sslmode not in ("require", "verify-ca", "verify-full"):
        raise ConnectError("config", f"an IAM token is only sent over TLS; sslmode {sslmode!r} "
                                     "would allow a plain connection")
    if sslmode.startswith("verify") and not sslrootcert:
        raise ConnectError("config", f"sslmode {sslmode} needs the RDS CA bundle to verify the "
                                     "server with (sslrootcert)")
    token = rds_client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user,
                                              Region=region)
    return Target(host=host, port=int(port), dbname=dbname, user=user,
                  source=f"IAM auth token for {user}", password=token, sslmode=sslmode,
                  sslrootcert=sslrootcert, hostaddr=hostaddr, hostaddr_port=hostaddr_port)


def from_environment(environ: Mapping[str, str], *, session=None) -> Target:
    """The Target a Lambda handler uses, from its environment variables.

    DB_DSN (local runs) wins; then DB_AUTH=iam with DB_HOST, DB_PORT, DB_NAME, DB_USER and
    DB_SSLROOTCERT (the RDS CA bundle in the layer: an IAM login always verifies the
    server, verify-full); then DB_SECRET_ARN. DB_HOSTADDR and DB_HOSTADDR_PORT (the
    sandbox only) say where to open the socket, while the certificate and the token stay
    for DB_HOST:DB_PORT. `session` is a boto3 Session (one is made when omitted).
    """
    if environ.get("DB_DSN"):
        return from_dsn(environ["DB_DSN"], "DB_DSN")
    if environ.get("DB_AUTH", "").lower() == "iam":
        missing = [k for k in ("DB_HOST", "DB_NAME", "DB_USER", "DB_SSLROOTCERT")
                   if not environ.get(k)]
        if missing:
            raise ConnectError("config", f"DB_AUTH=iam needs {', '.join(missing)} to be set")
        hostaddr_port = environ.get("DB_HOSTADDR_PORT")
        return from_iam(environ["DB_HOST"], int(environ.get("DB_PORT") or 5432),
                        environ["DB_NAME"], environ["DB_USER"],
                        region=environ.get("AWS_REGION") or _session(session).region_name,
                        rds_client=_session(session).client("rds"),
                        sslrootcert=environ["DB_SSLROOTCERT"],
                        hostaddr=environ.get("DB_HOSTADDR") or None,
                        hostaddr_port=int(hostaddr_port) if hostaddr_port else None)
    if environ.get("DB_SECRET_ARN"):
        client = _session(session).client("secretsmanager")
        secret = client.get_secret_value(SecretId=environ["DB_SECRET_ARN"])
        return from_secret(secret["SecretString"], "the secret in DB_SECRET_ARN")
    raise ConnectError("config", "no database settings: set DB_SECRET_ARN, or DB_AUTH=iam "
                                 "with DB_HOST, DB_PORT, DB_NAME, DB_USER and DB_SSLROOTCERT, "
                                 "or DB_DSN")


def connect(target: Target, *, timeout_s: int = CONNECT_TIMEOUT_S, autocommit: bool = True,
            application_name: str = "runbook"):
    """Open a psycopg connection to `target`, or raise ConnectError saying why."""
    import psycopg

    options = {"connect_timeout": timeout_s, "autocommit": autocommit,
               "application_name": application_name}
    try:
        if target.dsn is not None:
            return psycopg.connect(target.dsn, **options)
        tls = {"sslrootcert": target.sslrootcert} if target.sslrootcert else {}
        if target.hostaddr:
            tls["hostaddr"] = target.hostaddr
        return psycopg.connect(host=target.host, port=target.hostaddr_port or target.port,
                               dbname=target.dbname, user=target.user, password=target.password,
                               sslmode=target.sslmode, **tls, **options)
    except psycopg.OperationalError as exc:
        reason = scrub(" ".join(str(exc).split()), target)
        raise ConnectError(_kind(reason), f"cannot connect to {target.describe()} within "
                                          f"{timeout_s} s: {reason}") from None


def scrub(text: str, target: Target) -> str:
    """`text` with the target's password (or token) and any e-mail address withheld."""
    if target.password:
        text = text.replace(target.password, "***")
    return redact_emails(text)


def describe_error(exc: BaseException) -> str:
    """A PostgreSQL error as SQLSTATE and primary message, e-mail addresses withheld.

    Not str(exc): its DETAIL line quotes row values, e.g. the e-mail of a duplicate key.
    """
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or (str(exc).splitlines() or [""])[0]
    return describe_state(getattr(exc, "sqlstate", None), primary)


def describe_state(state: str | None, primary: str) -> str:
    """An error's SQLSTATE and primary message as describe_error gives them, e-mail
    addresses withheld (for an error caught in the server, e.g. by a function)."""
    return redact_emails(f"PostgreSQL error {state}: {primary}" if state else primary)


def describe(exc: BaseException) -> str:
    """What went wrong, for a handler's log and error: a PostgreSQL error as
    describe_error gives it, anything else by type and text; e-mail addresses withheld."""
    if hasattr(exc, "sqlstate"):  # a psycopg error
        return describe_error(exc)
    return redact_emails(f"{type(exc).__name__}: {exc}")


def redact_emails(text: str) -> str:
    """`text` with every e-mail address replaced by <e-mail>."""
    if "@" not in text:  # no address can be in it: the scan costs a handler's log line more
        return text
    return emails.IN_TEXT.sub("<e-mail>", text)


def _kind(reason: str) -> str:
    lowered = reason.lower()
    if "authentication failed" in lowered or "no pg_hba.conf entry" in lowered:
        return "auth"
    if "ssl" in lowered or "certificate" in lowered:
        return "tls"
    if "does not exist" in lowered:
        return "config"
    if any(s in lowered for s in ("timeout expired", "connection refused", "could not translate",
                                  "no route to host", "network is unreachable",
                                  "no such file or directory", "name or service not known")):
        return "unreachable"
    return "failed"


def _replace_dbname(dsn: str, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=dbname)


def _session(session):
    if session is not None:
        return session
    import boto3

    return boto3.session.Session()
