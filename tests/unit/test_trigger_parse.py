"""runbook.lambda_runtime.trigger.parse scans all the values at once and names an
attribute only when one is wrong: whichever attribute that is, it is named. (The
handlers' refusals: tests/database/test_handlers.py.)"""

from __future__ import annotations

import pytest

from runbook.lambda_runtime import trigger

SOURCE = "PostConfirmation_ConfirmSignUp"


def event(**attributes) -> dict:
    return {"triggerSource": SOURCE, "request": {"userAttributes": {
        "sub": "0f6b2c1e", "email": "lena.maier@example.com", "given_name": "Lena",
        **attributes}}}


def refusal(data: dict) -> str:
    with pytest.raises(trigger.MalformedEvent) as refused:
        trigger.parse(data, (SOURCE,))
    return str(refused.value)


def test_a_good_event_is_read_whole():
    parsed = trigger.parse(event(locale="de", name="Zoë"), (SOURCE,), required=("sub", "email"))
    assert parsed.source == SOURCE
    assert dict(parsed.attributes) == event(locale="de", name="Zoë")["request"]["userAttributes"]


@pytest.mark.parametrize("value, named", [
    ("a\x00b", "contains a NUL character"),
    ("a\udfffb", "contains a lone surrogate (U+DFFF)"),
])
def test_the_last_attribute_is_named_when_it_cannot_be_stored(value, named):
    assert refusal(event(zz_last=value)) == \
        f"malformed Cognito event: request.userAttributes.zz_last {named}, which PostgreSQL " \
        "text cannot hold"


def test_a_value_that_is_not_a_string_is_named_among_good_ones():
    assert refusal(event(email_verified=True, zz_last="fine")) == \
        "malformed Cognito event: request.userAttributes.email_verified is a bool, not a string"


def test_two_halves_of_a_pair_in_two_attributes_are_each_lone():
    # Scanned as one text, "\ud83d" ending one value and "\ude00" starting the next are
    # still two lone surrogates: the first one's attribute is named.
    assert refusal(event(a_first="x\ud83d", b_second="\ude00y")).endswith(
        "request.userAttributes.a_first contains a lone surrogate (U+D83D), which PostgreSQL "
        "text cannot hold")
