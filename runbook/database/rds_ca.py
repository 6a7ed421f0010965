"""The RDS CA bundle: what a login with an IAM token verifies the cluster's certificate
against (sslmode=verify-full).

AWS publishes one bundle for every region, `global-bundle.pem`, on its RDS trust-store
site (BUNDLE_URL). It goes into the dependency layer, where the handlers find it at
LAYER_PATH, and runbook's own live login uses the same file. Where it comes from:

  database.ca_bundle    a local copy, named in the environment file (air-gapped hosts,
                        a pinned bundle); RUNBOOK_RDS_CA_BUNDLE does the same for a whole
                        machine (CI, the test suite)
  otherwise             fetched once over verified HTTPS (the system's trust store checks
                        the site's certificate and name) and kept in the cache,
                        <cache>/rds-ca/global-bundle.pem, beside its sha256, which is
                        checked on every later read. Delete the folder to fetch it again.

A dry run never fetches: its handlers verify the sandbox's own CA (runbook.sandbox.tls).

An RDS Proxy's certificate is not issued by the RDS CA but by AWS Certificate Manager,
whose chain ends at the Amazon Trust Services roots: a function that verifies the proxy
with the RDS bundle alone fails its TLS handshake. The layer therefore carries the RDS
bundle followed by Amazon Root CA 1-4 (`with_amazon_roots`), taken by subject from
certifi's cacert.pem on this machine (no download) and written in a fixed order and
encoding, so the same two inputs give the same bytes and the same layer content hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from runbook.errors import BadInput
from runbook.files import cache_root, write_atomically

BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
BUNDLE_NAME = "global-bundle.pem"
# Inside the layer zip; Lambda unpacks layers under /opt.
LAYER_ENTRY = "rds-ca/global-bundle.pem"
LAYER_PATH = "/opt/" + LAYER_ENTRY
ENVIRONMENT_VARIABLE = "RUNBOOK_RDS_CA_BUNDLE"
FETCH_TIMEOUT_S = 30
MAX_BYTES = 2_000_000        # the bundle is ~160 KB
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+"
                             rb"-----END CERTIFICATE-----")


@dataclass(frozen=True)
class CaBundle:
    path: Path
    sha256: str                   # hex, of the file's bytes
    source: str                   # for messages and the plan
    data: bytes = field(repr=False)


def from_file(path: str | Path, source: str) -> CaBundle:
    """A bundle read from a local file, checked to hold PEM certificates."""
    try:
        path = Path(path).expanduser()   # RuntimeError: ~user of no such user
        data = path.read_bytes()
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise BadInput(f"{source}: cannot read {path} ({reason}); it must be the RDS CA "
                       f"bundle ({BUNDLE_NAME}, from {BUNDLE_URL})") from None
    _check_pem(data, f"{source}: {path}")
    return CaBundle(path, hashlib.sha256(data).hexdigest(), source, data)


def for_config(config, *, cache_dir: Path | None = None, fetch: bool = True) -> CaBundle:
    """The bundle a live run uses: database.ca_bundle, else RUNBOOK_RDS_CA_BUNDLE, else
    the cached download (fetched now when the cache has none, if `fetch`)."""
    if config.database.ca_bundle:
        return from_file(config.database.ca_bundle, "database.ca_bundle")
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return from_file(os.environ[ENVIRONMENT_VARIABLE], ENVIRONMENT_VARIABLE)
    if not fetch:
        raise BadInput("no local RDS CA bundle, and a dry run does not fetch it: set "
                       f"database.ca_bundle (or {ENVIRONMENT_VARIABLE}) to a copy of "
                       f"{BUNDLE_NAME}")
    return cached_or_fetched(cache_dir=cache_dir)


def cached_or_fetched(*, url: str = BUNDLE_URL, cache_dir: Path | None = None,
                      context: ssl.SSLContext | None = None) -> CaBundle:
    """The cached bundle if its recorded sha256 still matches; else fetch it from `url`
    over HTTPS verified by `context` (the system's trust store by default) and cache it."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path, digest_file = folder / BUNDLE_NAME, folder / f"{BUNDLE_NAME}.sha256"
    try:
        data, recorded = path.read_bytes(), digest_file.read_text().split()[0]
    except (OSError, IndexError):
        data, recorded = None, None
    if data is not None and hashlib.sha256(data).hexdigest() == recorded:
        return CaBundle(path, recorded, f"cached {url}", data)
    data = fetch(url, context=context)
    digest = hashlib.sha256(data).hexdigest()
    write_atomically(path, data)
    write_atomically(digest_file, f"{digest}  {BUNDLE_NAME}\n".encode())
    return CaBundle(path, digest, url, data)


def fetch(url: str = BUNDLE_URL, *, context: ssl.SSLContext | None = None) -> bytes:
    """GET `url` over HTTPS whose certificate and host name are verified."""
    if not url.startswith("https://"):
        raise BadInput(f"the RDS CA bundle is fetched over HTTPS only, not {url}")
    context = context or ssl.create_default_context()
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise BadInput("the RDS CA bundle must be fetched with certificate and host name "
                       "verification")
    request = urllib.request.Request(url, headers={"User-Agent": "runbook"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S, context=context) as answer:
            data = answer.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInput(f"cannot fetch the RDS CA bundle from {url} ({reason}). Download "
                       f"{BUNDLE_NAME} on a machine that can, and name it in "
                       "database.ca_bundle.") from None
    if len(data) > MAX_BYTES:
        raise BadInput(f"{url} answered more than {MAX_BYTES} bytes; that is not the RDS CA "
                       "bundle")
    _check_pem(data, url)
    return data


def default_cache_dir() -> Path:
    """$RUNBOOK_CACHE_DIR/rds-ca, else $XDG_CACHE_HOME/runbook/rds-ca (runbook.files)."""
    return cache_root() / "rds-ca"


def _check_pem(data: bytes, where: str) -> None:
    if not PEM_CERTIFICATE.search(data):
        raise BadInput(f"{where} holds no PEM certificate; expected the RDS CA bundle "
                       f"({BUNDLE_NAME}, from {BUNDLE_URL})")


# The roots an RDS Proxy's ACM certificate chains to (Amazon Trust Services), in order.
AMAZON_ROOTS = tuple(f"Amazon Root CA {n}" for n in range(1, 5))


def amazon_roots(cacert: str | Path | None = None) -> bytes:
    """Amazon Root CA 1-4 as PEM, in AMAZON_ROOTS' order, picked by subject (CN and
    O=Amazon) from `cacert` (certifi's cacert.pem by default). Re-encoded, so comments
    and line endings of the source do not change the bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.utils import CryptographyDeprecationWarning
    from cryptography.x509.oid import NameOID

    if cacert is None:
        import certifi

        cacert = certifi.where()
    found: dict[str, bytes] = {}
    with warnings.catch_warnings():
        # Another root of certifi's has a serial number RFC 5280 disallows; cryptography
        # warns about it on every parse. It is not one of ours, and is skipped.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        certificates = x509.load_pem_x509_certificates(Path(cacert).read_bytes())
    for cert in certificates:
        names = {attr.oid: attr.value for attr in cert.subject}
        common = names.get(NameOID.COMMON_NAME)
        if common in AMAZON_ROOTS and names.get(NameOID.ORGANIZATION_NAME) == "Amazon":
            found[common] = cert.public_bytes(Encoding.PEM)
    missing = [name for name in AMAZON_ROOTS if name not in found]
    if missing:
        raise BadInput(f"{cacert} lacks {', '.join(missing)}: an RDS Proxy's certificate "
                       "chains to them. Install a current certifi (pip install -U certifi)")
    return b"".join(found[name] for name in AMAZON_ROOTS)


def with_amazon_roots(bundle: CaBundle, cacert: str | Path | None = None) -> CaBundle:
    """`bundle` followed by Amazon Root CA 1-4 (amazon_roots): what a function verifies
    both the cluster (RDS CA) and the RDS Proxy (ACM) with."""
    data = bundle.data.rstrip(b"\n") + b"\n" + amazon_roots(cacert)
    return CaBundle(bundle.path, hashlib.sha256(data).hexdigest(),
                    f"{bundle.source} + {AMAZON_ROOTS[0]}-{AMAZON_ROOTS[-1][-1]} (certifi)",
                    data)
