"""runbook.lambda_runtime.logs: a line is the JSON object json.dumps writes for
{"level", "message", bound fields..., line fields...}, however it is built, and goes
through the guards (line breaks, surrogates, e-mail addresses) before it is written."""

from __future__ import annotations

import datetime
import json

import pytest

from runbook.lambda_runtime import logs


def written(capsys, log: logs.Log, message: str, **fields) -> str:
    log.info(message, **fields)
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    return out[:-1]


def as_before(level: str, message: str, bound: dict, fields: dict) -> str:
    """The line as one json.dumps of the merged fields writes it."""
    return json.dumps({"level": level, "message": message, **bound, **fields}, default=str,
                      ensure_ascii=False)


@pytest.mark.parametrize("bound, fields", [
    ({}, {}),
    ({}, {"duration_ms": 12}),
    ({"request_id": None}, {}),
    ({"request_id": "r-1", "sub": "0f6b2c1e", "trigger_source": "PostConfirmation_ConfirmSignUp"},
     {"email_domain": "example.com", "email_verified": True, "user_status": "CONFIRMED",
      "user_pool_id": None}),
    # Values json cannot encode are written as str() of them.
    ({"request_id": "r-1"}, {"at": datetime.date(2024, 5, 1), "ids": {"a", }}),
    # Names and text beyond ASCII stay readable.
    ({"sub": "s"}, {"name": "Zoë Ünal", "quote": 'he said "hi"\n'}),
])
def test_a_line_is_the_merged_fields_as_json_dumps_writes_them(capsys, bound, fields):
    log = logs.Log(**bound)
    assert written(capsys, log, "Something happened", **fields) == \
        as_before("INFO", "Something happened", bound, fields)


def test_a_line_field_replaces_a_bound_field_in_its_place(capsys):
    log = logs.Log(request_id="r-1").bind(sub="first", trigger_source="t")
    line = written(capsys, log, "m", sub="second", profile="created")
    assert line == as_before("INFO", "m", {"request_id": "r-1", "sub": "first",
                                           "trigger_source": "t"},
                             {"sub": "second", "profile": "created"})
    assert list(json.loads(line)) == ["level", "message", "request_id", "sub", "trigger_source",
                                      "profile"]
    assert json.loads(line)["sub"] == "second"


@pytest.mark.parametrize("bound, fields", [
    ({"level": "bound"}, {}),
    ({"message": "bound"}, {"n": 1}),
    ({"sub": "s"}, {"level": "line"}),
])
def test_a_field_named_level_or_message_replaces_it_as_before(capsys, bound, fields):
    line = written(capsys, logs.Log(**bound), "m", **fields)
    assert line == as_before("INFO", "m", bound, fields)
    assert line.count('"level"') == 1 and line.count('"message"') == 1


def test_bind_adds_fields_and_leaves_the_bound_log_as_it_was(capsys):
    base = logs.Log(request_id="r-1")
    bound = base.bind(sub="s", request_id="r-2")
    assert json.loads(written(capsys, base, "m")) == {"level": "INFO", "message": "m",
                                                      "request_id": "r-1"}
    assert json.loads(written(capsys, bound, "m")) == {"level": "INFO", "message": "m",
                                                       "request_id": "r-2", "sub": "s"}


def test_each_level_is_named(capsys):
    log = logs.Log(sub="s")
    log.warning("w", n=1)
    log.error("e")
    first, second = capsys.readouterr().out.splitlines()
    assert first == as_before("WARNING", "w", {"sub": "s"}, {"n": 1})
    assert second == as_before("ERROR", "e", {"sub": "s"}, {})


def test_an_address_in_a_bound_or_line_field_is_withheld(capsys):
    log = logs.Log(request_id="r-1").bind(reason_seen="user lena.maier@example.com")
    line = written(capsys, log, "failed", reason="Key (email)=(lena.maier@example.com) exists")
    assert "lena.maier" not in line
    assert json.loads(line)["reason"] == "Key (email)=(<e-mail>) exists"
    assert json.loads(line)["reason_seen"] == "user <e-mail>"


def test_line_breaks_and_lone_surrogates_are_escaped(capsys):
    log = logs.Log(sub="a\u2028b")
    line = written(capsys, log, "m", bad="x\ud800y", nel="p\x85q")
    assert "\u2028" not in line and "\x85" not in line
    assert json.loads(line)["sub"] == "a\u2028b"
    assert json.loads(line)["nel"] == "p\x85q"
    assert "\\ud800" in line
