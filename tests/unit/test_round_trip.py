"""runbook.lambda_runtime.round_trip's message: the timeouts, then the statement, with
the schemas quoted as identifiers, made once per statement and schemas. (Sending it:
tests/database/test_trigger_functions.py.)"""

from __future__ import annotations

from runbook.lambda_runtime import profiles, round_trip, signups


def test_the_message_sets_the_timeouts_before_the_statement():
    text = round_trip.message(profiles.WRITE_PROFILE, schema="public")
    first, second = text.split(";\n")
    assert first == ("SELECT set_config('statement_timeout', %s, true), "
                     "set_config('lock_timeout', %s, true)")
    assert second.startswith('CALL "public".write_profile(')
    assert text.count("%s") == 2 + 8


def test_a_schema_is_quoted_as_an_identifier_and_the_message_made_once():
    text = round_trip.message(signups.STORE_SIGNUPS, users='odd"schema; DROP')
    assert 'FROM "odd""schema; DROP".store_signups(' in text
    assert round_trip.message(signups.STORE_SIGNUPS, users='odd"schema; DROP') is text
