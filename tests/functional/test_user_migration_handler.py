"""The UserMigration trigger (lambdas/user_migration) against moto's DynamoDB: a real table
keyed on `email`, items written as the loader writes them (LegacyHash.to_item), real
hashes (bcrypt cost 10 from the `bcrypt` module, argon2 from argon2-cffi) checked by
the handler's passlib, and events shaped as tests/fixtures/events/user_migration_*.json.

Which hash checks a refusal made is read from a recorder around the real CryptContext
(it passes every call on): that, not a clock, shows that an unknown user costs the same
bcrypt check as a wrong password. bench/user_migration.py times it."""

from __future__ import annotations

import copy
import functools
import importlib.util
import itertools
import json
import traceback

import argon2
import bcrypt
import boto3
import pytest
from moto import mock_aws

from runbook.lambda_runtime import migration
from runbook.lambda_runtime.legacy_hashes import LegacyHash, hash_format
from tests.conftest import REGION, REPO

EVENTS = REPO / "tests" / "fixtures" / "events"
TABLE = "matbakh-prod-legacy-user-hashes"
ADDRESS = "legacy.owner@example.com"   # the fixture events' userName
PASSWORD = "correct horse battery staple"
NON_ASCII = "Pässwört-Ω-1234"
PROFILE = {"display_name": "Lena Maier", "language": "de", "role": "owner"}
FBSCRYPT = "$fbscrypt$v=1,n=14,r=8,p=1,ss=Bw==,sk=c2VjcmV0LWtleQ==$c2FsdHNhbHQ=$aGFzaGhhc2g="
_loads = itertools.count()


def load_handler():
    """lambdas/user_migration/handler.py as a new module: a cold Lambda container."""
    path = REPO / "lambdas" / "user_migration" / "handler.py"
    spec = importlib.util.spec_from_file_location(f"lambda_user_migration_{next(_loads)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def make_hash(kind: str, password: str) -> str:
    """A hash of `password` as Supabase holds it: bcrypt cost 10 ($2a$ is GoTrue's), or
    argon2 v=19 as GoTrue imports it."""
    secret = password.encode()
    if kind in ("2a", "2b"):
        return bcrypt.hashpw(secret, bcrypt.gensalt(10, prefix=kind.encode())).decode()
    if kind == "2y":
        # PHP's crypt_blowfish name for the same algorithm as $2b$ (the bcrypt module
        # makes only $2a$ and $2b$): the same salt and digest under the other prefix.
        return "$2y$" + bcrypt.hashpw(secret, bcrypt.gensalt(10, prefix=b"2b")).decode()[4:]
    types = {"argon2i": argon2.Type.I, "argon2id": argon2.Type.ID}
    return argon2.PasswordHasher(type=types[kind]).hash(password)


KINDS = ("2a", "2b", "2y", "argon2i", "argon2id")


def event(name: str = "authentication", **changes) -> dict:
    """A fixture event; `userName=`, `triggerSource=` and `password=` change it."""
    data = copy.deepcopy(json.loads((EVENTS / f"user_migration_{name}.json").read_text()))
    if "password" in changes:
        data["request"]["password"] = changes.pop("password")
    data.update(changes)
    return data


def forgot(**changes) -> dict:
    return event("forgot_password", **changes)


class Recorder:
    """The real CryptContext, with the hashes it was asked to check written down."""

    def __init__(self, context):
        self.context = context
        self.checked: list[str] = []

    def verify(self, secret, hashed):
        self.checked.append(hashed)
        return self.context.verify(secret, hashed)


class Migration:
    """The handler module, the table's client, and what the handler sent and checked."""

    def __init__(self, module, dynamodb, recorder):
        self.module = module
        self.dynamodb = dynamodb
        self.recorder = recorder
        self.gets: list[dict] = []
        module.CLIENT.meta.events.register("before-call.dynamodb.GetItem", self._sent)

    def _sent(self, params, **_):
        self.gets.append(json.loads(params["body"]))

    def stage(self, email: str = ADDRESS, hashed: str | None = None, password: str = PASSWORD,
              kind: str = "2a", profile: dict | None = None) -> LegacyHash:
        user = LegacyHash(email, hashed or make_hash(kind, password),
                          PROFILE if profile is None else profile)
        self.dynamodb.put_item(TableName=TABLE, Item=user.to_item())
        return user

    def put(self, item: dict) -> None:
        self.dynamodb.put_item(TableName=TABLE, Item=item)

    def __call__(self, data: dict):
        return self.module.handler(data, None)


@pytest.fixture
def migrate(monkeypatch):
    monkeypatch.setenv("HASH_TABLE", TABLE)
    monkeypatch.setenv("CUSTOM_ATTRIBUTES", "role")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "email",
                                                     "AttributeType": "S"}])
        module = load_handler()
        assert module.CLIENT is not None, "the client is made in the init"
        recorder = Recorder(migration.CONTEXT)
        monkeypatch.setattr(migration, "CONTEXT", recorder)
        yield Migration(module, dynamodb, recorder)


def log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def only_line(capsys) -> dict:
    lines = log_lines(capsys)
    assert len(lines) == 1, lines
    return lines[0]


# -- signing in --------------------------------------------------------------------------

@pytest.mark.parametrize("password", [PASSWORD, NON_ASCII])
@pytest.mark.parametrize("kind", KINDS)
def test_every_hash_kind_signs_in_with_its_password(migrate, capsys, kind, password):
    user = migrate.stage(kind=kind, password=password)
    assert user.hash.startswith(f"${kind}$")

    answer = migrate(event(password=password))

    assert answer["response"] == {
        "userAttributes": {"email": ADDRESS, "email_verified": "true", "name": "Lena Maier",
                           "locale": "de", "custom:role": "owner"},
        "finalUserStatus": "CONFIRMED", "messageAction": "SUPPRESS",
        "desiredDeliveryMediums": ["EMAIL"], "forceAliasCreation": None, "enableSMSMFA": None}
    assert all(isinstance(v, str) for v in answer["response"]["userAttributes"].values())
    assert answer["userName"] == ADDRESS and answer["request"]["password"] == password
    assert migrate.recorder.checked == [user.hash]
    line = only_line(capsys)
    assert line["message"] == "User migrated" and line["level"] == "INFO"
    assert line["trigger_source"] == "UserMigration_Authentication"
    assert line["email_domain"] == "example.com"
    assert line["hash_format"] == ("bcrypt" if kind.startswith("2") else "argon2")
    assert isinstance(line["duration_ms"], int)


@pytest.mark.parametrize("user_name", ["Legacy.Owner@Example.COM", "LEGACY.OWNER@EXAMPLE.COM",
                                       "  legacy.owner@example.com "])
def test_a_mixed_case_user_name_reads_the_lower_cased_item(migrate, capsys, user_name):
    migrate.stage()

    answer = migrate(event(userName=user_name))

    assert answer["response"]["userAttributes"]["email"] == ADDRESS
    assert migrate.gets == [{"TableName": TABLE, "Key": {"email": {"S": ADDRESS}},
                             "ConsistentRead": True}]
    logged = capsys.readouterr().out
    assert user_name.strip() not in logged and ADDRESS not in logged


def test_a_password_of_exactly_72_bytes_signs_in_against_bcrypt(migrate):
    password = "ä" * 36                       # 72 bytes in UTF-8
    migrate.stage(password=password)
    assert migrate(event(password=password))["response"]["finalUserStatus"] == "CONFIRMED"


def test_a_password_over_72_bytes_signs_in_against_argon2(migrate):
    password = "Ω" * 60                       # 120 bytes: bcrypt's limit is not argon2's
    migrate.stage(kind="argon2id", password=password)
    assert migrate(event(password=password))["response"]["finalUserStatus"] == "CONFIRMED"


# -- attributes --------------------------------------------------------------------------

def test_only_the_configured_custom_attributes_that_are_strings_are_returned(migrate,
                                                                            monkeypatch):
    monkeypatch.setenv("CUSTOM_ATTRIBUTES", "role, plan,custom:team, ,tier")
    migrate.stage(profile={"display_name": "Lena Maier", "language": "en", "role": "admin",
                           "plan": 3, "team": "kitchen", "tier": None, "note": "not asked for",
                           "address": {"city": "Berlin"}})

    attributes = migrate(event())["response"]["userAttributes"]

    assert attributes == {"email": ADDRESS, "email_verified": "true", "name": "Lena Maier",
                          "locale": "en", "custom:role": "admin", "custom:team": "kitchen"}


@pytest.mark.parametrize("setting", [None, ""])
def test_without_custom_attributes_only_the_standard_ones_are_returned(migrate, monkeypatch,
                                                                       setting):
    if setting is None:
        monkeypatch.delenv("CUSTOM_ATTRIBUTES")
    else:
        monkeypatch.setenv("CUSTOM_ATTRIBUTES", setting)
    migrate.stage()
    assert migrate(event())["response"]["userAttributes"] == {
        "email": ADDRESS, "email_verified": "true", "name": "Lena Maier", "locale": "de"}


def test_a_profile_without_name_or_language_gives_the_address_only(migrate):
    migrate.stage(profile={"display_name": 7, "language": "  ", "role": ["owner"]})
    assert migrate(event())["response"]["userAttributes"] == {
        "email": ADDRESS, "email_verified": "true"}


def test_an_item_without_a_profile_migrates_with_the_address_only(migrate):
    migrate.put({"email": {"S": ADDRESS}, "hash": {"S": make_hash("2a", PASSWORD)}})
    assert migrate(event())["response"]["userAttributes"] == {
        "email": ADDRESS, "email_verified": "true"}


# -- forgot password ---------------------------------------------------------------------

def test_forgot_password_returns_the_attributes_and_no_status(migrate, capsys):
    user = migrate.stage(kind="argon2id", password=NON_ASCII)

    answer = migrate(forgot(userName="Legacy.Owner@Example.com"))

    assert answer["response"] == {
        "userAttributes": {"email": ADDRESS, "email_verified": "true", "name": "Lena Maier",
                           "locale": "de", "custom:role": "owner"},
        "messageAction": "SUPPRESS", "desiredDeliveryMediums": ["EMAIL"],
        "forceAliasCreation": None, "enableSMSMFA": None}
    assert "finalUserStatus" not in answer["response"]
    assert migrate.recorder.checked == [], "no password, no check"
    line = only_line(capsys)
    assert (line["message"], line["trigger_source"], line["hash_format"]) == (
        "User migrated", "UserMigration_ForgotPassword", "argon2")
    assert user.hash not in json.dumps(line)


def test_forgot_password_ignores_a_password_in_the_event(migrate):
    migrate.stage()
    answer = migrate(forgot(password="whatever"))
    assert "finalUserStatus" not in answer["response"]
    assert migrate.recorder.checked == []


# -- refusals ----------------------------------------------------------------------------

def unknown_user(m):
    m.stage()
    return event(userName="nobody@example.com"), "unknown_user"


def wrong_password(m):
    m.stage()
    return event(password="Pässwört-Ω-1235"), "wrong_password"


def no_hash(m):
    m.put({"email": {"S": ADDRESS}, "profile": {"M": {}}})
    return event(), "no_hash"


def empty_hash(m):
    m.put({"email": {"S": ADDRESS}, "hash": {"S": ""}, "profile": {"M": {}}})
    return event(), "no_hash"


def null_hash(m):
    m.put({"email": {"S": ADDRESS}, "hash": {"NULL": True}, "profile": {"M": {}}})
    return event(), "no_hash"


def unsupported_hash(m):
    m.put({"email": {"S": ADDRESS}, "hash": {"S": FBSCRYPT}, "profile": {"M": {}}})
    return event(), "unsupported_hash_format"


def password_too_long(m):
    # 73 bytes in UTF-8: a verifier that cut it to 72 would take it for the staged one.
    m.stage(password="ä" * 36)
    return event(password="ä" * 36 + "x"), "password_too_long"


def nul_in_password(m):
    m.stage()
    return event(password="correct horse\x00battery staple"), "wrong_password"


def user_name_not_an_address(m):
    m.stage()
    return event(userName="legacy.owner"), "unknown_user"


REFUSALS = [unknown_user, wrong_password, no_hash, empty_hash, null_hash, unsupported_hash,
            password_too_long, nul_in_password, user_name_not_an_address]


def malformed(field, **changes):
    def make(m):
        m.stage()
        data = event(**changes)
        if field == "request":
            del data["request"]
        if field == "the event":
            data = [data]
        return data, "malformed_event"
    make.__name__ = f"malformed_{field}_{'_'.join(changes) or 'shape'}"
    make.field = field
    return make


MALFORMED = [
    malformed("triggerSource", triggerSource="PreSignUp_SignUp"),
    malformed("triggerSource", triggerSource=None),
    malformed("userName", userName=None),
    malformed("userName", userName="   "),
    malformed("userName", userName=["legacy.owner@example.com"]),
    malformed("request.password", password=None),
    malformed("request.password", password=""),
    malformed("request.password", password=12345678),
    malformed("request"),
    malformed("the event"),
]


def refused(migrate, data) -> BaseException:
    with pytest.raises(Exception) as raised:
        migrate(data)
    return raised.value


@pytest.mark.parametrize("case", REFUSALS + MALFORMED, ids=lambda c: c.__name__)
def test_every_refusal_raises_the_same_exception_and_logs_its_reason(migrate, capsys, case):
    data, reason = case(migrate)
    secret = data["request"]["password"] if isinstance(data, dict) and \
        isinstance(data.get("request", {}).get("password"), str) else None

    error = refused(migrate, data)

    assert type(error) is migrate.module.MigrationRefused
    assert str(error) == migrate.module.REFUSED
    assert error.__cause__ is None and error.__context__ is None
    line = only_line(capsys)
    assert (line["level"], line["message"], line["reason"]) == (
        "WARNING", "User migration refused", reason)
    assert isinstance(line["duration_ms"], int)
    if reason == "malformed_event":
        assert line["field"] == case.field
    if reason in ("wrong_password", "password_too_long"):
        assert line["hash_format"] == "bcrypt"
    logged = json.dumps(line)
    for item in migrate.dynamodb.scan(TableName=TABLE)["Items"]:
        assert item["email"]["S"] not in logged
        if item.get("hash", {}).get("S"):
            assert item["hash"]["S"] not in logged
    if secret:
        assert secret not in logged


def test_the_refusals_cannot_be_told_apart_by_type_text_or_traceback(monkeypatch):
    answers = set()
    for case in REFUSALS + MALFORMED:
        with mock_aws():
            # A fresh table and container per case; the same environment each time.
            monkeypatch.setenv("HASH_TABLE", TABLE)
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "email",
                                                         "AttributeType": "S"}])
            handler = Migration(load_handler(), dynamodb, None)
            data, _ = case(handler)
            error = refused(handler, data)
            frames = tuple((f.name, f.lineno) for f in traceback.extract_tb(error.__traceback__))
            answers.add((type(error).__name__, str(error), repr(error), frames,
                         error.__cause__ is None, error.__context__ is None))
    assert len(answers) == 1, answers
    (name, text, _, frames, no_cause, no_context), = answers
    assert (name, text, no_cause, no_context) == ("MigrationRefused", "User not migrated",
                                                  True, True)
    source = (REPO / "lambdas" / "user_migration" / "handler.py").read_text().splitlines()
    assert frames[-1][0] == "handler"
    assert source[frames[-1][1] - 1].strip() == "raise MigrationRefused(REFUSED)"


@pytest.mark.parametrize("case", [unknown_user, no_hash, empty_hash, null_hash,
                                  unsupported_hash, password_too_long, user_name_not_an_address],
                         ids=lambda c: c.__name__)
def test_a_sign_in_refused_without_checking_its_hash_spends_one_bcrypt_check(migrate, case):
    data, _ = case(migrate)
    refused(migrate, data)
    assert migrate.recorder.checked == [migration.DUMMY_HASH]
    assert migration.DUMMY_HASH.startswith("$2a$10$")
    assert hash_format(migration.DUMMY_HASH) == "bcrypt"


def test_a_password_passlib_refuses_for_bcrypt_costs_a_check_too(migrate):
    data, _ = nul_in_password(migrate)
    refused(migrate, data)
    # passlib refuses a NUL byte before hashing: the dummy check is the time spent.
    assert migrate.recorder.checked == [make_hash("2a", PASSWORD), migration.DUMMY_HASH]


def test_a_wrong_password_checks_the_users_hash_once(migrate):
    data, _ = wrong_password(migrate)
    refused(migrate, data)
    assert migrate.recorder.checked == [make_hash("2a", PASSWORD)]


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c.__name__)
def test_a_malformed_event_reads_and_checks_nothing(migrate, case):
    data, _ = case(migrate)
    refused(migrate, data)
    assert migrate.gets == [] and migrate.recorder.checked == []


@pytest.mark.parametrize("case", [unknown_user, no_hash, unsupported_hash],
                         ids=lambda c: c.__name__)
def test_forgot_password_refuses_the_same_way_without_a_check(migrate, capsys, case):
    data, reason = case(migrate)
    data = forgot(userName=data["userName"])

    error = refused(migrate, data)

    assert (type(error), str(error)) == (migrate.module.MigrationRefused, "User not migrated")
    assert migrate.recorder.checked == []
    line = only_line(capsys)
    assert (line["reason"], line["trigger_source"]) == (reason, "UserMigration_ForgotPassword")


# -- failures that are no refusal --------------------------------------------------------

def test_a_dynamodb_error_is_a_failure_naming_the_code_only(migrate, monkeypatch, capsys):
    monkeypatch.setenv("HASH_TABLE", "no-such-table")

    error = refused(migrate, event())

    assert type(error) is migrate.module.MigrationFailed
    assert str(error) == "hash table not read: ResourceNotFoundException"
    # Not chained (a client error's text may quote the request): no traceback shows it.
    assert error.__cause__ is None and error.__suppress_context__
    assert "GetItem" not in "".join(traceback.format_exception(error))
    line = only_line(capsys)
    assert (line["level"], line["message"], line["reason"]) == (
        "ERROR", "User migration failed", str(error))
    assert ADDRESS not in json.dumps(line) and PASSWORD not in json.dumps(line)


def test_without_a_table_name_it_fails_saying_so(migrate, monkeypatch):
    monkeypatch.delenv("HASH_TABLE")
    error = refused(migrate, event())
    assert type(error) is migrate.module.MigrationFailed
    assert str(error) == "HASH_TABLE is not set"


# -- what is logged ----------------------------------------------------------------------

def test_the_log_holds_no_password_hash_or_address(migrate, capsys):
    users = {kind: migrate.stage(email=f"user.{kind}@example.org", kind=kind, password=NON_ASCII)
             for kind in KINDS}
    for kind in KINDS:
        migrate(event(userName=f"User.{kind.upper()}@Example.org", password=NON_ASCII))
        refused(migrate, event(userName=f"user.{kind}@example.org", password=PASSWORD))
        migrate(forgot(userName=f"user.{kind}@example.org"))
    refused(migrate, event(userName="Unknown.Person@Example.org", password=NON_ASCII))
    refused(migrate, event(userName="user.2a@example.org", password="ä" * 40))

    out = capsys.readouterr()
    logged = out.out + out.err
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert len(lines) == 3 * len(KINDS) + 2
    assert {line["email_domain"] for line in lines} == {"example.org"}
    for user in users.values():
        assert user.email not in logged.lower() and user.hash not in logged
        assert user.hash.rsplit("$", 1)[-1] not in logged   # nor the digest alone
    for secret in (NON_ASCII, PASSWORD, "ä" * 40, "unknown.person@"):
        assert secret.lower() not in logged.lower()
    assert "@" not in logged
