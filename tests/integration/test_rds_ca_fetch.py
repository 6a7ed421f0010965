"""Fetching the RDS CA bundle (runbook.database.rds_ca) over verified HTTPS, from a local HTTPS
server whose certificate a CA made by the test issued (no internet): what is fetched is
cached with its sha256, read back without a request, fetched again when the cache no
longer matches, and refused from a server the trust store does not vouch for."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import threading

import pytest

from runbook.database import rds_ca
from runbook.errors import BadInput
from runbook.sandbox.tls import SandboxCA
from tests.conftest import TEST_CA_BUNDLE

pytestmark = pytest.mark.slow


class Site:
    """A HTTPS server on 127.0.0.1 serving /global/global-bundle.pem, counting requests."""

    def __init__(self, folder, body: bytes):
        self.ca = SandboxCA(folder / "site-ca", name="test web CA")
        chain, key = self.ca.issue(["localhost", "127.0.0.1"])
        self.requests = 0
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                site.requests += 1
                found = self.path == "/global/global-bundle.pem"
                self.send_response(200 if found else 404)
                self.end_headers()
                if found:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/global/global-bundle.pem"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trusted(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.ca_file))

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def site(tmp_path):
    served = Site(tmp_path, TEST_CA_BUNDLE.read_bytes())
    yield served
    served.close()


def test_the_bundle_is_fetched_over_verified_https_and_cached_with_its_sha256(site, tmp_path):
    cache = tmp_path / "rds-ca"
    bundle = rds_ca.cached_or_fetched(url=site.url, cache_dir=cache, context=site.trusted())

    expected = hashlib.sha256(TEST_CA_BUNDLE.read_bytes()).hexdigest()
    assert (bundle.sha256, bundle.data, bundle.source) == (expected, TEST_CA_BUNDLE.read_bytes(),
                                                           site.url)
    assert (cache / "global-bundle.pem").read_bytes() == TEST_CA_BUNDLE.read_bytes()
    assert (cache / "global-bundle.pem.sha256").read_text() == f"{expected}  global-bundle.pem\n"
    assert site.requests == 1

    again = rds_ca.cached_or_fetched(url=site.url, cache_dir=cache, context=site.trusted())
    assert (again.sha256, site.requests) == (expected, 1)  # from the cache, no request

    (cache / "global-bundle.pem").write_bytes(b"edited\n" + TEST_CA_BUNDLE.read_bytes())
    repaired = rds_ca.cached_or_fetched(url=site.url, cache_dir=cache, context=site.trusted())
    assert (repaired.sha256, site.requests) == (expected, 2)  # no longer matched: fetched
    assert (cache / "global-bundle.pem").read_bytes() == TEST_CA_BUNDLE.read_bytes()


def test_a_server_the_trust_store_does_not_vouch_for_is_refused_and_nothing_is_cached(
        site, tmp_path):
    cache = tmp_path / "rds-ca"
    # The system's trust store does not know the test's CA: the certificate fails.
    with pytest.raises(BadInput, match="cannot fetch the RDS CA bundle .*database.ca_bundle"):
        rds_ca.cached_or_fetched(url=site.url, cache_dir=cache)
    # Trusted CA, but the name in the URL is not the certificate's.
    wrong_name = site.url.replace("localhost", "127.0.0.2")
    with pytest.raises(BadInput, match="cannot fetch"):
        rds_ca.cached_or_fetched(url=wrong_name, cache_dir=cache, context=site.trusted())
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with pytest.raises(BadInput, match="certificate and host name verification"):
        rds_ca.fetch(site.url, context=unverified)
    with pytest.raises(BadInput, match="over HTTPS only"):
        rds_ca.fetch(site.url.replace("https://", "http://"))
    assert not cache.exists() and site.requests == 0


def test_an_answer_that_is_not_a_bundle_is_refused(tmp_path):
    site = Site(tmp_path, b"<html>maintenance</html>")
    try:
        with pytest.raises(BadInput, match="holds no PEM certificate"):
            rds_ca.cached_or_fetched(url=site.url, cache_dir=tmp_path / "c",
                                     context=site.trusted())
    finally:
        site.close()
    assert not (tmp_path / "c").exists()


def test_a_live_run_uses_database_ca_bundle_or_the_machine_setting_before_fetching(
        tmp_path, monkeypatch, write_config):
    from runbook import config as config_mod

    copy = tmp_path / "bundle.pem"
    copy.write_bytes(TEST_CA_BUNDLE.read_bytes() * 2)
    configured = config_mod.load(write_config(
        lambda d: d["database"].update(ca_bundle=str(copy))))
    assert rds_ca.for_config(configured).path == copy
    plain = config_mod.load(write_config())
    assert rds_ca.for_config(plain).path == TEST_CA_BUNDLE   # RUNBOOK_RDS_CA_BUNDLE (tests)
    monkeypatch.delenv("RUNBOOK_RDS_CA_BUNDLE")
    with pytest.raises(BadInput, match="a dry run does not fetch it"):
        rds_ca.for_config(plain, fetch=False)
