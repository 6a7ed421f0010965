"""Fuzzed Cognito trigger events for the Pre-SignUp and Post-Confirmation handlers, the
latter against a real PostgreSQL migrated by fix-tables (loaded as test_handlers loads
them: a fresh module is a cold Lambda container).

hypothesis derives the events from the fixtures in tests/fixtures/events/: keys
removed at any depth, values of the wrong JSON type, SQL metacharacters, unicode (NUL,
lone surrogates, right-to-left overrides) and huge strings in the attributes. Every event
gets either a clear error, a ValueError or RuntimeError subclass that says what is wrong
(MalformedEvent naming the field, SignUpRejected, ProfileNotSaved), or the right result:
for Post-Confirmation one profile and one private profile holding exactly the values
sent, under the sub sent; never one row without the other.

Each test counts the distinct events it sent and how they ended, and asserts the counts
it states (so that both the refusals and the stored rows are really exercised):

    Post-Confirmation, truncated and wrongly typed   80 events: 15+ stored, 30+ refused
    Post-Confirmation, hostile attribute values     120 events: 60+ stored, 20+ refused
    Pre-SignUp, truncated, wrongly typed, hostile    80 events: 20+ accepted, 5+ rejected,
                                                    ---         20+ malformed
                                                    280 events

Settings are derandomized, so CI sends the same events on every run.
"""

from __future__ import annotations

import copy
import json
from collections import Counter

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.database.test_handlers import (EVENTS, HANDLER_ENVIRONMENT, Context, counts,
                                          load_handler, migrate, query)

SIGN_UP = json.loads((EVENTS / "post_confirmation_confirm_signup.json").read_text())
FORGOT_PASSWORD = json.loads((EVENTS / "post_confirmation_confirm_forgot_password.json")
                             .read_text())
PRE_SIGN_UP = json.loads((EVENTS / "pre_signup_signup.json").read_text())
CONFIRMATIONS = ("PostConfirmation_ConfirmSignUp", "PostConfirmation_ConfirmForgotPassword")
SIGN_UPS = ("PreSignUp_SignUp", "PreSignUp_AdminCreateUser", "PreSignUp_ExternalProvider")
# The one attribute stored values may not hold: PostgreSQL text refuses NUL. A lone
# surrogate cannot be encoded for it at all.
UNSTORABLE = ("\x00",) + tuple(chr(c) for c in range(0xD800, 0xE000))
# PostgreSQL's B-tree indexes (on sub and e-mail) refuse an entry of more than 2704 bytes
# after compression, so an attribute about that long may be refused instead of stored.
INDEX_ENTRY_BYTES = 2600

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


# -- the contract, stated independently of the handlers ------------------------------------

def refused_field(event, sources, required=()) -> str | None:
    """The field a MalformedEvent must name for `event`, or None when it is well-formed:
    an object with a known triggerSource and `request.userAttributes`, an object of
    strings that are text (no NUL, no lone surrogate), `required` ones not blank."""
    if not isinstance(event, dict):
        return "the event"
    if not isinstance(event.get("triggerSource"), str) or event["triggerSource"] not in sources:
        return "triggerSource"
    if not isinstance(event.get("request"), dict):
        return "request"
    attributes = event["request"].get("userAttributes")
    if not isinstance(attributes, dict):
        return "request.userAttributes"
    for name, value in attributes.items():
        if not isinstance(value, str) or any(char in value for char in UNSTORABLE):
            return f"request.userAttributes.{name}"
    for name in required:
        if not attributes.get(name, "").strip():
            return f"request.userAttributes.{name}"
    return None


def expected_row(attributes: dict) -> tuple:
    """(sub, email, display_name, language, role, first_name, last_name, phone) as the
    Post-Confirmation trigger must store them for a user it has never seen."""
    def get(name):
        return attributes.get(name, "").strip() or None

    given, family = get("given_name"), get("family_name")
    display = get("name") or " ".join(part for part in (given, family) if part) or None
    primary = (get("locale") or "").replace("_", "-").split("-")[0].lower()
    return (get("sub"), get("email"), display, primary if primary in ("de", "en") else "de",
            "owner", given, family, get("phone_number"))


STORED = """
    SELECT p.cognito_user_id, p.email, p.display_name, p.language, p.role,
           pp.first_name, pp.last_name, pp.phone
      FROM profiles p JOIN private_profiles pp ON pp.user_id = p.id"""


# -- events -----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False,
                                                                         allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)


def paths(value, path=()):
    """Every path into the objects and lists of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield path + (index,)
            yield from paths(item, path + (index,))


def at(value, path):
    for part in path:
        value = value[part]
    return value


@st.composite
def damaged(draw, fixtures: list[dict]):
    """A fixture event with keys removed (a truncated event) or a value of another JSON
    type, anywhere in it; or no object at all."""
    event = copy.deepcopy(draw(st.sampled_from(fixtures)))
    kind = draw(st.sampled_from(["truncated"] * 3 + ["retyped"] * 3 + ["not-an-object"]))
    if kind == "not-an-object":
        return draw(JSON_VALUES.filter(lambda value: not isinstance(value, dict)))
    for _ in range(draw(st.integers(1, 3))):
        where = list(paths(event))
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = at(event, path[:-1])
        if kind == "truncated":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return event


SQL = ["'", "''", '"', "; DROP TABLE profiles; --", "'); DROP TABLE private_profiles; --",
       "\\", "\\'", "$$", "$x$", "%s", "%(sub)s", "{schema}", "/*", "*/", "--", "E'\\x00'",
       "NULL", "' OR '1'='1", "\\N", "\\.", "\t", "\n", "\r\n", ";", "`"]
UNICODE = ["\x00", "\ud800", "\udfff", "\u202e", "\u200f", "\ufeff", "\u200b", "\u0301",
           "\U0001f4a3", "ي", "ש", "Ω", "İ", "ß", "\u2028", "\x7f", "\x1b"]
HUGE = st.builds(lambda unit, size: (unit * size)[:size], st.text(min_size=1, max_size=3),
                st.integers(1000, 200_000))
PIECES = st.one_of(st.sampled_from(SQL), st.sampled_from(UNICODE), st.text(max_size=12), HUGE)
HOSTILE = st.lists(PIECES, min_size=1, max_size=4).map("".join)
ATTRIBUTES = ["sub", "email", "name", "given_name", "family_name", "phone_number", "locale",
              "custom:role", "cognito:user_status", "email_verified", "zoneinfo"]


@st.composite
def hostile(draw, fixtures: list[dict]):
    """A fixture event whose attributes (and pool id and user name) hold SQL
    metacharacters, unicode and huge strings."""
    event = copy.deepcopy(draw(st.sampled_from(fixtures)))
    attributes = event["request"]["userAttributes"]
    for name in draw(st.lists(st.sampled_from(ATTRIBUTES), min_size=1, max_size=6, unique=True)):
        value = draw(HOSTILE)
        if name == "email" and draw(st.booleans()):
            value = f"{value}@example.com"
        attributes[name] = value
    for field in draw(st.lists(st.sampled_from(["userPoolId", "userName"]), unique=True)):
        event[field] = draw(HOSTILE)
    return event


def shown(event) -> str:
    return json.dumps(event, sort_keys=True, default=repr)


# -- Post-Confirmation ------------------------------------------------------------------------

@pytest.fixture
def post_confirmation(write_config, pg_dsn, monkeypatch):
    """The handler, cold, with DB_DSN pointing at a fresh database migrated by fix-tables."""
    for name in HANDLER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    migrate(write_config, pg_dsn)
    monkeypatch.setenv("DB_DSN", pg_dsn)
    module = load_handler("post_confirmation")
    yield module, pg_dsn
    module.DATABASE.close()


def call(module, event, sources, required=()) -> tuple[str, object]:
    """Call the handler with `event`: ("malformed", error) when it refused the event as
    the contract says it must, ("raised", error) for another ValueError or RuntimeError,
    ("returned", result) otherwise. Any other exception fails the test."""
    field = refused_field(event, sources, required)
    try:
        result = module.handler(event, Context())
    except module.trigger.MalformedEvent as exc:
        assert field is not None, f"refused a well-formed event: {exc}"
        assert str(exc).startswith(f"malformed Cognito event: {field} "), str(exc)
        return "malformed", exc
    except (ValueError, RuntimeError) as exc:
        assert field is None, f"expected MalformedEvent naming {field}, got {exc!r}"
        return "raised", exc
    assert field is None, f"accepted an event that is malformed at {field}"
    return "returned", result


def confirm(module, dsn, event, capsys) -> str:
    """Deliver `event` to a database with no profile, check what the handler did, and say
    how it ended: stored, malformed, or not saved."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE profiles, private_profiles")
    capsys.readouterr()
    sent = copy.deepcopy(event)
    how, what = call(module, event, CONFIRMATIONS, required=("sub", "email"))
    if how == "raised":
        assert isinstance(what, module.ProfileNotSaved), repr(what)
        attributes = event["request"]["userAttributes"]
        long = max(len(attributes["sub"].encode()), len(attributes["email"].encode()))
        assert long > INDEX_ENTRY_BYTES, f"a storable profile was not saved: {what}"
        assert str(what).startswith("profile not saved: PostgreSQL error 54000: index row")
        outcome = "not saved"
    elif how == "returned":
        assert what is event and what == sent
        assert query(dsn, STORED) == [expected_row(event["request"]["userAttributes"])]
        outcome = "stored"
    else:
        outcome = "malformed"
    assert counts(dsn) == ((1, 1) if outcome == "stored" else (0, 0)), "a partial write"
    for line in capsys.readouterr().out.splitlines():
        json.loads(line)  # a log line is one JSON object, whatever the event held
    return outcome


def deliver_all(strategy, wanted: int, check) -> Counter:
    """Deliver `wanted` distinct events; how many ended each way.

    Hypothesis may draw an event twice, and how many distinct ones it draws in a given
    number of tries changes with what else the session imported (it mines the loaded
    modules for constants to try): so it gets twice as many tries, and only the first
    `wanted` distinct events are delivered.
    """
    sent: set[str] = set()
    outcomes: Counter = Counter()

    @settings(max_examples=2 * wanted, **SETTINGS)
    @given(strategy)
    def each(event):
        key = shown(event)
        if key in sent or len(sent) >= wanted:
            return
        sent.add(key)
        outcomes[check(event)] += 1

    each()
    return outcomes


def test_80_truncated_or_wrongly_typed_confirmations_are_refused_by_field_or_stored_whole(
        post_confirmation, capsys):
    module, dsn = post_confirmation
    outcomes = deliver_all(damaged([SIGN_UP, FORGOT_PASSWORD]), 80,
                           lambda event: confirm(module, dsn, event, capsys))
    assert sum(outcomes.values()) == 80
    assert outcomes["stored"] >= 15 and outcomes["malformed"] >= 30


def test_120_confirmations_with_sql_unicode_or_huge_attributes_store_them_exactly_or_refuse(
        post_confirmation, capsys):
    module, dsn = post_confirmation
    outcomes = deliver_all(hostile([SIGN_UP, FORGOT_PASSWORD]), 120,
                           lambda event: confirm(module, dsn, event, capsys))
    assert sum(outcomes.values()) == 120
    assert outcomes["stored"] >= 60 and outcomes["malformed"] + outcomes["not saved"] >= 20
    assert query(dsn, "SELECT to_regclass('public.profiles') IS NOT NULL, "
                      "to_regclass('public.private_profiles') IS NOT NULL") == [(True, True)]


# -- Pre-SignUp -------------------------------------------------------------------------------

REJECTIONS = ("An e-mail address is required to sign up", "The e-mail address is not valid")


def sign_up(module, event, capsys) -> str:
    """Deliver `event`, check what the handler did, and say how it ended: accepted,
    rejected (the address) or malformed."""
    capsys.readouterr()
    how, what = call(module, event, SIGN_UPS)
    if how == "raised":
        assert isinstance(what, module.SignUpRejected) and str(what) in REJECTIONS, repr(what)
    elif how == "returned":
        address = event["request"]["userAttributes"]["email"].strip()
        local, _, domain = address.rpartition("@")
        assert local and "." in domain and "@" not in local and len(address) <= 254
        assert not any(char.isspace() or not char.isprintable() for char in address)
        flags = ("autoConfirmUser", "autoVerifyEmail", "autoVerifyPhone")
        assert what is event and [what["response"][flag] for flag in flags] == [False] * 3
    for line in capsys.readouterr().out.splitlines():
        json.loads(line)
    return {"raised": "rejected", "returned": "accepted"}.get(how, how)


def test_80_truncated_wrongly_typed_or_hostile_sign_ups_are_refused_clearly_or_accepted(
        monkeypatch, capsys):
    for name in HANDLER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    module = load_handler("pre_signup")
    # Apart, so that each kind of event is delivered 40 times whatever Hypothesis draws.
    damaged_outcomes = deliver_all(damaged([PRE_SIGN_UP]), 40,
                                   lambda event: sign_up(module, event, capsys))
    hostile_outcomes = deliver_all(hostile([PRE_SIGN_UP]), 40,
                                   lambda event: sign_up(module, event, capsys))
    outcomes = damaged_outcomes + hostile_outcomes
    assert sum(outcomes.values()) == 80
    assert outcomes["accepted"] >= 20 and outcomes["rejected"] >= 5
    # How many of the damaged events are malformed for Pre-SignUp depends on what
    # Hypothesis draws, which changes with the modules the session has loaded: a quarter
    # at least shows the strategy damages what the handler reads.
    assert damaged_outcomes["malformed"] >= 10
