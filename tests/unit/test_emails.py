"""E-mail addresses in output: masked to a first character and a domain, never whole."""

from __future__ import annotations

import pytest

from runbook.shared import emails


@pytest.mark.parametrize("text, masked", [
    ("lena.maier@example.com", "l***@example.com"),
    ('{"email": "Lena.Maier+x@Sub.Example.COM", "n": 1}', '{"email": "L***@sub.example.com", "n": 1}'),
    ("a@b.de and z_z@c.org", "a***@b.de and z***@c.org"),
    ("no address here, only @handles and a@b", "no address here, only @handles and a@b"),
])
def test_mask_keeps_the_first_character_and_the_domain(text, masked):
    assert emails.mask(text) == masked


def test_a_masked_text_holds_no_whole_address():
    text = emails.mask("contact: lena.maier@example.com, anna.schulz@example.org")
    assert "lena.maier@" not in text and "anna.schulz@" not in text
    assert emails.mask(text) == text  # masking twice changes nothing more
