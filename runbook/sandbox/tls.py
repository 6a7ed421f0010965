"""The sandbox's database endpoint: TLS and IAM token logins in front of PostgreSQL.

pgserver's PostgreSQL is built without OpenSSL, so it cannot answer a TLS handshake, and
a local server knows nothing of RDS auth tokens. Without this, no handler would ever log
in in a dry run as it does on AWS: over TLS whose certificate it verifies (verify-full),
with a token as its password. `TlsFrontEnd` stands in for the cluster's endpoint:

  - it answers PostgreSQL's SSLRequest with TLS, using a certificate issued by a CA the
    sandbox makes (`SandboxCA`, with `cryptography`) for the endpoint names it serves,
    so that a client's verify-full checks the chain and the host name for real (a
    cluster's endpoints, and an RDS Proxy's: runbook.sandbox.rds_proxy.serve_proxies);
  - it refuses a client that does not start TLS, as `rds.force_ssl = 1` does;
  - it asks for a password, takes it as an RDS auth token and checks it like RDS
    (runbook.database.rds_token: host, port, DBUser, Action, credential scope, expiry, and the
    signature made again with the sandbox's credentials);
  - then it logs in to the embedded server as that user (which trusts local logins) and
    relays the connection both ways.

It listens on 127.0.0.1 only, in one asyncio loop on one thread (TLS through memory
BIOs, so a connection's reads and writes never race), takes at most MAX_CONNECTIONS at
once, gives each step of a login a time limit, and stops with the sandbox. Neither its
messages nor `refusals` contain a token.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import ipaddress
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from runbook.database import rds_token

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
MAX_CONNECTIONS = 32
MAX_MESSAGE = 16384          # a startup packet or a password (a token is ~1 KB)
STEP_TIMEOUT_S = 10.0        # each step of a login: handshake, startup, password, backend
UNKNOWN_NAME = "unknown-endpoint.runbook-sandbox.invalid"


# -- the certificate authority ------------------------------------------------------------

class SandboxCA:
    """A throwaway CA and the server certificates it issues, as PEM files in `folder`."""

    def __init__(self, folder: Path, *, name: str = "runbook sandbox RDS CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc)
        self._cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256()))
        self.ca_file = self.folder / "ca.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._issued = 0

    def issue(self, names: list[str]) -> tuple[Path, Path]:
        """A server certificate for the DNS names (or IP addresses) `names`: its chain
        file and its key file (mode 0600)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        alt = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
            .issuer_name(self._cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        self._issued += 1
        chain = self.folder / f"server-{self._issued}.pem"
        key_file = self.folder / f"server-{self._issued}.key"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.touch(mode=0o600)
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return chain, key_file


# -- the front-end -------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """A cluster's endpoints, or an RDS Proxy's endpoint, that the front-end answers for."""

    names: tuple[str, ...]      # the writer endpoint and the reader endpoint
    port: int                   # the port the cluster is configured with (in the token)
    database: str               # the cluster's database, mapped to the sandbox's
    region: str
    unavailable: str | None = None  # why no login can get through (a proxy with no target)


class LoginRefused(Exception):
    def __init__(self, sqlstate: str, message: str, detail: str | None = None):
        self.sqlstate, self.detail = sqlstate, detail
        super().__init__(message)


class TlsFrontEnd:
    """See the module docstring. `backend` is the sandbox database's libpq DSN, whose
    server trusts local logins; `credentials` are what every token must be signed with."""

    def __init__(self, folder: Path, *, backend: str, credentials: dict):
        from psycopg.conninfo import conninfo_to_dict

        self.ca = SandboxCA(folder)
        self.credentials = dict(credentials)
        parts = conninfo_to_dict(backend)
        self._backend_host = str(parts.get("host") or "localhost")
        self._backend_port = int(parts.get("port") or 5432)
        self._backend_database = str(parts.get("dbname") or "postgres")
        self._endpoints: dict[str, Endpoint] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._default = self._context([UNKNOWN_NAME])
        self._default.sni_callback = self._pick_context
        self.refusals: collections.deque[str] = collections.deque(maxlen=100)
        self.logins = 0
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._tasks: set[asyncio.Task] = set()
        self._slots = MAX_CONNECTIONS

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_file

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "TlsFrontEnd":
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, 0, limit=MAX_MESSAGE))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="runbook-sandbox-tls", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and end the loop's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shut() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(shut(), loop).result(15)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._loop = self._thread = None

    def __enter__(self) -> "TlsFrontEnd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what it serves -----------------------------------------------------------------

    def serve(self, names: list[str], *, port: int, database: str, region: str,
              unavailable: str | None = None) -> None:
        """Answer for the endpoint `names` (a cluster's writer and reader endpoints, or a
        proxy's endpoint), whose tokens are signed for <name>:`port` in `region`; database
        `database` is the sandbox's. With `unavailable`, the endpoint's TLS and tokens are
        checked as for any other, and then every login is refused with that reason (a
        proxy with no target has nothing to log in to). Serving a name again replaces
        what it maps to."""
        names = [n.lower() for n in names if n]
        endpoint = Endpoint(tuple(names), int(port), database, region, unavailable)
        with self._lock:
            if all(self._endpoints.get(n) == endpoint for n in names):
                return
            # One certificate for the cluster's names, as RDS has; one context per name,
            # so that the context a handshake ends with tells which name was asked for.
            chain, key = self.ca.issue(names)
            for name in names:
                self._endpoints[name] = endpoint
                self._contexts[name] = _server_context(chain, key)

    def _context(self, names: list[str]) -> ssl.SSLContext:
        return _server_context(*self.ca.issue(names))

    def _pick_context(self, ssl_object, server_name, _context) -> None:
        """SNI: present the certificate of the endpoint the client asked for. libpq
        sends the host name (never hostaddr) when it is not an IP address."""
        with self._lock:
            context = self._contexts.get((server_name or "").lower())
        if context is not None:
            ssl_object.context = context

    def _endpoint_of(self, context: ssl.SSLContext) -> tuple[str | None, Endpoint | None]:
        with self._lock:
            for name, candidate in self._contexts.items():
                if candidate is context:
                    return name, self._endpoints[name]
        return None, None

    # -- one connection -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            if self._slots <= 0:
                await _send_error(writer, "53300", "sorry, too many clients already")
                return
            self._slots -= 1
            try:
                await self._login_and_relay(reader, writer)
            finally:
                self._slots += 1
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.TimeoutError, ssl.SSLError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _login_and_relay(self, reader, writer) -> None:
        code, body = await _timed(_read_startup(reader))
        while code == GSSENC_REQUEST:      # no GSSAPI here; libpq then asks for TLS
            writer.write(b"N")
            code, body = await _timed(_read_startup(reader))
        if code == CANCEL_REQUEST:
            return
        if code == PROTOCOL_3:
            params = _parameters(body)
            self._refuse(f"no TLS from user {params.get('user')!r}")
            await _send_error(writer, "28000", (
                f'no pg_hba.conf entry for host "{self.host}", user "{params.get("user", "")}", '
                f'database "{params.get("database", "")}", SSL off'))
            return
        if code != SSL_REQUEST:
            self._refuse("not a PostgreSQL client")
            return
        writer.write(b"S")
        await writer.drain()
        await _timed(writer.start_tls(self._default))
        name, endpoint = self._endpoint_of(writer.get_extra_info("ssl_object").context)
        code, body = await _timed(_read_startup(reader))
        if code != PROTOCOL_3:
            await _send_error(writer, "08P01", "unsupported frontend protocol")
            return
        params = _parameters(body)
        user, database = params.get("user", ""), params.get("database") or params.get("user", "")
        writer.write(b"R" + struct.pack("!ii", 8, 3))     # AuthenticationCleartextPassword
        await writer.drain()
        password = await _timed(_read_password(reader))
        try:
            if endpoint is None:
                raise LoginRefused("28000", f'PAM authentication failed for user "{user}"',
                                   "the client did not ask for an endpoint this sandbox serves "
                                   "(no or an unknown TLS server name)")
            try:
                rds_token.verify(password, host=name, port=endpoint.port, user=user,
                                 region=endpoint.region, credentials=self.credentials)
            except rds_token.TokenRefused as exc:
                raise LoginRefused("28P01", f'PAM authentication failed for user "{user}"',
                                   f"sandbox TLS front-end: {exc}") from None
            if endpoint.unavailable:
                raise LoginRefused("08004", f'{name} refused the login of user "{user}": '
                                            f"{endpoint.unavailable}",
                                   f"sandbox TLS front-end: {endpoint.unavailable}")
            backend_reader, backend_writer = await _timed(self._backend_login(
                params, user, self._backend_database if database == endpoint.database
                else database))
        except LoginRefused as exc:
            self._refuse(exc.detail or str(exc))
            await _send_error(writer, exc.sqlstate, str(exc), exc.detail)
            return
        self.logins += 1
        try:
            await _relay(reader, writer, backend_reader, backend_writer)
        finally:
            backend_writer.close()

    async def _backend_login(self, params: dict, user: str, database: str):
        """Log in to the sandbox's server as `user`; answer the client with what it sends
        from AuthenticationOk on. A server that wants a password is refused: the
        front-end has none to give."""
        if self._backend_host.startswith("/"):
            reader, writer = await asyncio.open_unix_connection(
                f"{self._backend_host}/.s.PGSQL.{self._backend_port}", limit=MAX_MESSAGE)
        else:
            reader, writer = await asyncio.open_connection(
                self._backend_host, self._backend_port, limit=MAX_MESSAGE)
        try:
            wanted = {k: v for k, v in params.items() if k not in ("user", "database")}
            wanted.update(user=user, database=database)
            payload = struct.pack("!i", PROTOCOL_3) + b"".join(
                k.encode() + b"\0" + v.encode() + b"\0" for k, v in wanted.items()) + b"\0"
            writer.write(struct.pack("!i", len(payload) + 4) + payload)
            await writer.drain()
            kind = await reader.readexactly(1)
            length = struct.unpack("!i", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
            if kind == b"R" and struct.unpack("!i", body[:4])[0] == 0:
                return _Prefixed(reader, kind + struct.pack("!i", length) + body), writer
            if kind == b"E":
                fields = _error_fields(body)
                raise LoginRefused(fields.get("C", "28000"), fields.get("M", "login refused"),
                                   "the sandbox's PostgreSQL refused the login")
            raise LoginRefused("28000", f'PAM authentication failed for user "{user}"',
                               "the sandbox's PostgreSQL asks this user for a password; the "
                               "TLS front-end logs in to it by trust only")
        except BaseException:
            writer.close()
            raise

    def _refuse(self, reason: str) -> None:
        self.refusals.append(reason)


def _server_context(chain: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(chain, key)
    return context


class _Prefixed:
    """A StreamReader whose first bytes were already read (the backend's AuthenticationOk)."""

    def __init__(self, reader: asyncio.StreamReader, first: bytes):
        self._reader, self._first = reader, first

    async def read(self, n: int) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            return first
        return await self._reader.read(n)


async def _relay(client_reader, client_writer, backend_reader, backend_writer) -> None:
    async def pump(source, sink) -> None:
        while True:
            data = await source.read(65536)
            if not data:
                break
            sink.write(data)
            await sink.drain()

    tasks = [asyncio.ensure_future(pump(backend_reader, client_writer)),
             asyncio.ensure_future(pump(client_reader, backend_writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _timed(awaitable):
    return await asyncio.wait_for(awaitable, STEP_TIMEOUT_S)


async def _read_startup(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    length = struct.unpack("!i", await reader.readexactly(4))[0]
    if not 8 <= length <= MAX_MESSAGE:
        raise ConnectionError("bad startup packet length")
    body = await reader.readexactly(length - 4)
    return struct.unpack("!i", body[:4])[0], body[4:]


async def _read_password(reader: asyncio.StreamReader) -> str:
    kind = await reader.readexactly(1)
    length = struct.unpack("!i", await reader.readexactly(4))[0]
    if kind != b"p" or not 5 <= length <= MAX_MESSAGE:
        raise ConnectionError("expected a password message")
    return (await reader.readexactly(length - 4)).rstrip(b"\0").decode("utf-8", "replace")


def _parameters(body: bytes) -> dict[str, str]:
    items = body.split(b"\0")
    return {items[i].decode("utf-8", "replace"): items[i + 1].decode("utf-8", "replace")
            for i in range(0, len(items) - 1, 2) if items[i]}


def _error_fields(body: bytes) -> dict[str, str]:
    return {chunk[:1].decode(): chunk[1:].decode("utf-8", "replace")
            for chunk in body.split(b"\0") if chunk}


async def _send_error(writer, sqlstate: str, message: str, detail: str | None = None) -> None:
    fields = [b"SFATAL", b"VFATAL", b"C" + sqlstate.encode(), b"M" + message.encode()]
    if detail:
        fields.append(b"D" + detail.encode())
    body = b"\0".join(fields) + b"\0\0"
    writer.write(b"E" + struct.pack("!i", len(body) + 4) + body)
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass
