"""The UserMigration trigger's pure parts (runbook.lambda_runtime.migration), with no I/O
and no hash check: reading the event, the staged item, the attributes and the answer.
The handler against DynamoDB, with real hashes, is tests/functional/test_user_migration_handler.py."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest

from runbook.lambda_runtime import migration
from runbook.lambda_runtime.legacy_hashes import LegacyHash
from tests.conftest import REPO

EVENTS = REPO / "tests" / "fixtures" / "events"
BCRYPT = "$2a$10$" + "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"


def fixture(name: str) -> dict:
    return json.loads((EVENTS / f"user_migration_{name}.json").read_text())


def test_the_fixture_events_are_awss_shape():
    signing_in, resetting = fixture("authentication"), fixture("forgot_password")
    for data in (signing_in, resetting):
        assert set(data) == {"version", "region", "userPoolId", "userName", "callerContext",
                             "triggerSource", "request", "response"}
        assert set(data["request"]) == {"password", "validationData", "clientMetadata"}
        assert set(data["response"]) == {"userAttributes", "forceAliasCreation", "enableSMSMFA",
                                         "finalUserStatus", "messageAction",
                                         "desiredDeliveryMediums"}
        assert all(value is None for value in data["response"].values())
    assert (signing_in["triggerSource"], resetting["triggerSource"]) == migration.SOURCES
    assert resetting["request"]["password"] is None


def test_a_sign_in_event_gives_the_lower_cased_name_and_the_password():
    data = fixture("authentication")
    data["userName"] = " Legacy.Owner@Example.COM "
    request = migration.parse(data)
    assert request == migration.MigrationRequest(migration.AUTHENTICATION,
                                                 "legacy.owner@example.com",
                                                 "correct horse battery staple")
    assert request.email_domain == "example.com"


def test_a_reset_event_has_no_password_even_when_one_is_sent():
    data = fixture("forgot_password")
    data["request"]["password"] = "sent anyway"
    assert migration.parse(data).password is None


def test_a_user_name_that_is_no_address_has_no_domain_to_log():
    data = fixture("authentication")
    data["userName"] = "legacy.owner"
    assert migration.parse(data).email_domain is None


def test_the_request_repr_shows_neither_name_nor_password():
    data = fixture("authentication")
    shown = repr(migration.parse(data))
    assert "legacy.owner" not in shown and "correct horse" not in shown
    assert migration.AUTHENTICATION in shown


def change(path: str, value):
    data = fixture("authentication")
    if path == "":
        return value
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "field"), [
    ("", ["not", "an", "object"], "the event"),
    ("", None, "the event"),
    ("triggerSource", "UserMigration_Sneaky-secret-value", "triggerSource"),
    ("triggerSource", KeyError, "triggerSource"),
    ("triggerSource", ["UserMigration_Authentication"], "triggerSource"),
    ("userName", KeyError, "userName"),
    ("userName", "", "userName"),
    ("userName", 42, "userName"),
    ("request", KeyError, "request"),
    ("request", "password=secret-value", "request"),
    ("request.password", KeyError, "request.password"),
    ("request.password", None, "request.password"),
    ("request.password", "", "request.password"),
    ("request.password", {"secret": "secret-value"}, "request.password"),
])
def test_a_malformed_event_names_the_field_never_the_value(path, value, field):
    with pytest.raises(migration.MalformedEvent) as raised:
        migration.parse(change(path, value))
    error = raised.value
    assert isinstance(error, ValueError) and isinstance(error, migration.Refusal)
    assert error.category == migration.MALFORMED_EVENT
    assert error.fields["field"] == field
    assert str(error).startswith(f"malformed UserMigration event: {field} ")
    assert "secret-value" not in str(error) and "Sneaky" not in str(error)


def test_a_malformed_event_logs_its_source_only_once_it_is_a_known_one():
    with pytest.raises(migration.MalformedEvent) as raised:
        migration.parse(change("request.password", None))
    assert raised.value.fields == {"field": "request.password",
                                   "trigger_source": migration.AUTHENTICATION}
    with pytest.raises(migration.MalformedEvent) as raised:
        migration.parse(change("triggerSource", "PreSignUp_SignUp"))
    assert raised.value.fields == {"field": "triggerSource"}


# -- the staged item ---------------------------------------------------------------------

def item(**attributes) -> dict:
    return {"email": {"S": "lena.maier@example.com"}, "hash": {"S": BCRYPT},
            "profile": {"M": {"display_name": {"S": "Lena"}}}, **attributes}


def test_an_item_written_by_the_loader_is_read_back_whole():
    user = LegacyHash("lena.maier@example.com", BCRYPT,
                      {"display_name": "Lena", "visits": Decimal(3), "tags": ["legacy"]})
    assert migration.staged_user(user.to_item()) == user


@pytest.mark.parametrize(("found", "category"), [
    (None, migration.UNKNOWN_USER),
    ({"email": {"S": "lena.maier@example.com"}}, migration.NO_HASH),
    (item(hash={"S": ""}), migration.NO_HASH),
    (item(hash={"NULL": True}), migration.NO_HASH),
    (item(hash={"S": "$fbscrypt$v=1,n=14,r=8,p=1,ss=Bw==,sk=a2V5$c2FsdA==$aGFzaA=="}),
     migration.UNSUPPORTED_HASH),
    (item(hash={"S": BCRYPT.replace("$2a$", "$2x$")}), migration.UNSUPPORTED_HASH),
    (item(profile={"M": {"tags": {"SS": ["a", "b"]}}}), migration.MALFORMED_ITEM),
])
def test_an_item_that_is_no_usable_user_is_a_refusal_by_category(found, category):
    with pytest.raises(migration.Refusal) as raised:
        migration.staged_user(found)
    assert raised.value.category == category
    assert BCRYPT not in str(raised.value) and "lena" not in str(raised.value)


@pytest.mark.parametrize("profile", [None, {"NULL": True}, {"S": "owner"}])
def test_an_item_without_a_profile_object_has_an_empty_profile(profile):
    found = item()
    if profile is None:
        del found["profile"]
    else:
        found["profile"] = profile
    assert migration.staged_user(found).profile == {}


# -- attributes and the answer -----------------------------------------------------------

@pytest.mark.parametrize(("setting", "names"), [
    (None, ()), ("", ()), (" , ", ()), ("role", ("role",)),
    ("role, plan ,custom:team", ("role", "plan", "team")), ("role,role,custom:role", ("role",)),
])
def test_custom_attribute_names_are_read_from_the_setting(setting, names):
    assert migration.custom_attribute_names(setting) == names


def test_attributes_take_the_profiles_strings_and_only_the_custom_ones_asked_for():
    user = LegacyHash("lena.maier@example.com", BCRYPT,
                      {"display_name": "Lena Maier", "language": "en", "role": "admin",
                       "plan": Decimal(3), "team": "", "flag": True, "other": "not asked"})
    assert migration.user_attributes(user, ("role", "plan", "team", "flag", "absent")) == {
        "email": "lena.maier@example.com", "email_verified": "true", "name": "Lena Maier",
        "locale": "en", "custom:role": "admin"}


def test_the_answer_to_a_sign_in_confirms_the_user_and_keeps_the_rest_of_the_event():
    data = fixture("authentication")
    before = copy.deepcopy(data)
    attributes = {"email": "legacy.owner@example.com", "email_verified": "true"}

    answer = migration.response(data, migration.AUTHENTICATION, attributes)

    assert answer["response"] == {"userAttributes": attributes, "finalUserStatus": "CONFIRMED",
                                  "messageAction": "SUPPRESS",
                                  "desiredDeliveryMediums": ["EMAIL"],
                                  "forceAliasCreation": None, "enableSMSMFA": None}
    assert {k: v for k, v in answer.items() if k != "response"} == \
        {k: v for k, v in before.items() if k != "response"}


def test_the_answer_to_a_reset_sets_no_status():
    data = fixture("forgot_password")
    data["response"]["finalUserStatus"] = "CONFIRMED"
    answer = migration.response(data, migration.FORGOT_PASSWORD, {"email_verified": "true"})
    assert "finalUserStatus" not in answer["response"]
    assert answer["response"]["messageAction"] == "SUPPRESS"


def test_an_event_without_a_response_object_gets_one():
    data = fixture("authentication")
    data["response"] = None
    answer = migration.response(data, migration.AUTHENTICATION, {"email_verified": "true"})
    assert answer["response"]["finalUserStatus"] == "CONFIRMED"
