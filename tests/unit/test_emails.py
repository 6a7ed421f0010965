"""E-mail addresses in output: masked to a first character and a domain, never whole."""

from __future__ import annotations

import pytest

from runbook.lambda_runtime import emails
from tests.regex_steps import StepCounter


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


# Texts of n characters in which the address pattern used to restart at every position
# of a long run of address characters: 9 s for 40,000 characters, so a trigger logging
# a huge attribute ran out of time. (bench/emails.py measures the time.)
SHAPES = {
    "letters": lambda n: "a" * n,
    "dotted": lambda n: "a." * (n // 2),
    "domain without a dot": lambda n: "x@" + "a-" * (n // 2),
    "long domain": lambda n: "x@" + "a." * (n // 2) + "a",
    "at signs": lambda n: "a@" * (n // 2),
    "addresses": lambda n: ("lena.maier@example.com, " * n)[:n],
}
SAMPLES = ["lena.maier@example.com", "a@b.de and z_z@c.org", "no @handles and a@b here",
           '{"email": "Lena.Maier+x@Sub.Example.COM", "n": 1}', "x@" + "a-" * 30 + "b.c",
           "__a@b.c..d@e.f-g", "(a@b.cd)a@b.cd+a@b.cd"]


def steps(text, items=None) -> int:
    counter = StepCounter(emails.IN_TEXT, items)
    counter.scan(text)
    return counter.steps


@pytest.mark.parametrize("text", SAMPLES + [shape(60) for shape in SHAPES.values()])
def test_the_step_counter_finds_the_matches_re_finds(text):
    found = [m.span() for m in emails.IN_TEXT.finditer(text)]
    assert StepCounter(emails.IN_TEXT).scan(text) == found


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_address_pattern_examines_each_character_a_bounded_number_of_times(shape):
    """Masking and redacting (both emails.IN_TEXT) do work linear in the text's length:
    twice the text, at most about twice the character tests, never four times."""
    small, large = steps(shape(400)), steps(shape(800))
    assert large <= 2.05 * small
    assert large <= 6 * 800


def test_the_pattern_without_its_look_behind_is_quadratic_which_the_count_shows():
    # What the check above guards against: the look-behind dropped, a run of letters is
    # rescanned from each of its positions.
    without = StepCounter(emails.IN_TEXT).items[1:]
    assert str(without[0][0]) == "SUBPATTERN"  # the look-behind was the first item
    small, large = steps("a" * 200, without), steps("a" * 400, without)
    assert large >= 3.9 * small


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_redacting_uses_the_counted_pattern(shape):
    from runbook.lambda_runtime.db import redact_emails

    text = shape(20_000)
    assert redact_emails(text) == emails.IN_TEXT.sub("<e-mail>", text)


def test_redacting_still_withholds_every_address_in_a_text():
    from runbook.lambda_runtime.db import redact_emails

    assert redact_emails("from lena.maier@example.com to a-b+c@x.example.org!") == \
        "from <e-mail> to <e-mail>!"
