"""The layer's CA bundle carries Amazon Root CA 1-4 beside the RDS bundle: an RDS Proxy's
certificate is issued by AWS Certificate Manager and chains to them, not to the RDS CA.
They are taken from certifi by subject, with no download, in fixed bytes."""

from __future__ import annotations

import hashlib
import random

import certifi
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from runbook.database import rds_ca
from runbook.errors import BadInput
from tests.conftest import TEST_CA_BUNDLE


def _blocks(data: bytes) -> list[bytes]:
    return rds_ca.PEM_CERTIFICATE.findall(data)


def _subjects(pem: bytes) -> list[tuple[str, str]]:
    return [(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
             c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value)
            for c in x509.load_pem_x509_certificates(pem)]


def test_the_four_amazon_roots_are_picked_by_subject_in_order():
    pem = rds_ca.amazon_roots()
    assert _subjects(pem) == [(f"Amazon Root CA {n}", "Amazon") for n in range(1, 5)]
    for cert in x509.load_pem_x509_certificates(pem):
        assert cert.subject == cert.issuer          # roots: self-issued


def test_the_same_roots_give_the_same_bytes_whatever_the_source_file_looks_like(tmp_path):
    blocks = _blocks(open(certifi.where(), "rb").read())
    random.Random(15).shuffle(blocks)
    shuffled = tmp_path / "cacert.pem"
    shuffled.write_bytes(b"\r\n".join(b.replace(b"\n", b"\r\n") for b in blocks))
    assert rds_ca.amazon_roots(shuffled) == rds_ca.amazon_roots()


def test_a_trust_store_without_them_is_refused_naming_what_lacks(tmp_path):
    others = [b for b in _blocks(open(certifi.where(), "rb").read())
              if b not in _blocks(rds_ca.amazon_roots())][:5]
    # Re-encoded blocks differ in line breaks only; compare by subject instead.
    others = [b for b in others if "Amazon" not in str(_subjects(b))]
    path = tmp_path / "cacert.pem"
    path.write_bytes(b"\n".join(others))
    with pytest.raises(BadInput, match="lacks Amazon Root CA 1, Amazon Root CA 2"):
        rds_ca.amazon_roots(path)


def test_the_layer_bundle_is_the_rds_bundle_then_the_roots_with_a_stable_sha256():
    rds = rds_ca.from_file(TEST_CA_BUNDLE, "test")
    one, two = rds_ca.with_amazon_roots(rds), rds_ca.with_amazon_roots(rds)
    assert one.data.startswith(rds.data.rstrip(b"\n"))
    assert one.data.endswith(rds_ca.amazon_roots())
    assert one.sha256 == two.sha256 == hashlib.sha256(one.data).hexdigest() != rds.sha256
    assert len(_blocks(one.data)) == len(_blocks(rds.data)) + 4
    assert "Amazon Root CA 1-4" in one.source
