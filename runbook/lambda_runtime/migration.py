"""The UserMigration trigger's work: the event read once, the staged user's item, the
password checked against the legacy hash, and the answer Cognito creates the user from.

Cognito calls the trigger when a user it does not know signs in with a password
(UserMigration_Authentication) or asks for a reset code (UserMigration_ForgotPassword).
The user is looked up in the hash table (the item legacy_hashes.LegacyHash defines,
keyed by the lower-cased address) and, on a sign-in, the password is verified with
passlib (the maintained libpass) against the staged hash: bcrypt $2a$/$2b$/$2y$, and
argon2i/argon2id v=19 (legacy_hashes.HASH_FORMATS).

Every reason not to migrate a user is a `Refusal` with a category (UNKNOWN_USER,
WRONG_PASSWORD, ...), which the handler logs and answers with one exception whose text
is always the same: the function's error reaches the client (as UserNotFoundException,
AWS-FACTS C), and a different error for an unknown user than for a wrong password could
tell anyone which addresses have an account. Time would tell it too: a wrong password costs a bcrypt
check, and an unknown address only a GetItem. So on a sign-in, every refusal that
checked no hash (an unknown user, an item without a usable hash, a password too long
for bcrypt) spends one check against DUMMY_HASH, a cost-10 bcrypt hash like GoTrue's.

A password longer than 72 bytes (UTF-8) is refused against a bcrypt hash: bcrypt reads
only the first 72, so cutting it would let in any password that starts with the right
72 bytes, and bcrypt 5 refuses a longer one outright (AWS-FACTS C). Such a user can
reset the password (ForgotPassword).

Nothing here puts a password, a hash or an address into a message or a repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from passlib.context import CryptContext

from runbook.lambda_runtime import emails
from runbook.lambda_runtime.legacy_hashes import EMAIL, HASH, PROFILE, LegacyHash, hash_format

AUTHENTICATION = "UserMigration_Authentication"
FORGOT_PASSWORD = "UserMigration_ForgotPassword"
SOURCES = (AUTHENTICATION, FORGOT_PASSWORD)

# The refusals' categories, for the log line (never for the answer).
UNKNOWN_USER = "unknown_user"
WRONG_PASSWORD = "wrong_password"
NO_HASH = "no_hash"
UNSUPPORTED_HASH = "unsupported_hash_format"   # a hash in no format HASH_FORMATS allows
MALFORMED_ITEM = "malformed_item"              # a profile JSON cannot hold (a set, bytes)
PASSWORD_TOO_LONG = "password_too_long"
MALFORMED_EVENT = "malformed_event"

BCRYPT_MAX_BYTES = 72

# Only what HASH_FORMATS lets through reaches it (staged_user checks first).
CONTEXT = CryptContext(schemes=["bcrypt", "argon2"])
# A cost-10 bcrypt hash of a password nobody knows, and what is checked against it.
DUMMY_HASH = "$2a$10$8IjIBdmfJy1Cb74F8b7OIOxBtEaMkkvw6jG67V6rjy4YfUp9dJE3a"
_DUMMY_PASSWORD = "not the password"

# The user's new attributes from the staged profile (legacy.users.profile), besides the
# custom ones the environment names.
STANDARD_ATTRIBUTES = (("name", "display_name"), ("locale", "language"))


class Refusal(Exception):
    """Why a user is not migrated: a category for the log, and `fields` it may add
    (the hash's format, the malformed field's name). The handler raises its own
    exception, with one text, for every Refusal."""

    def __init__(self, category: str, **fields: str):
        self.category = category
        self.fields = fields
        super().__init__(category)


class MalformedEvent(Refusal, ValueError):
    """The event is not a UserMigration event this function can read. The text names the
    field and the problem, never the value."""

    def __init__(self, field: str, problem: str, *, source: str | None = None):
        # The trigger source only once it is known to be one of SOURCES.
        known = {"trigger_source": source} if source else {}
        super().__init__(MALFORMED_EVENT, field=field, **known)
        self.args = (f"malformed UserMigration event: {field} {problem}",)


@dataclass(frozen=True)
class MigrationRequest:
    source: str                                     # AUTHENTICATION or FORGOT_PASSWORD
    username: str = field(repr=False)               # userName, trimmed and lower-cased
    password: str | None = field(repr=False)        # None for FORGOT_PASSWORD

    @property
    def email_domain(self) -> str | None:
        """What may be logged of the user name: its domain, when it is an address."""
        return emails.domain(self.username) if emails.well_formed(self.username) else None


def parse(event) -> MigrationRequest:
    """The trigger source, user name and password of a UserMigration event, or
    MalformedEvent naming the field."""
    if not isinstance(event, dict):
        raise MalformedEvent("the event", "is not an object")
    source = event.get("triggerSource")
    if not isinstance(source, str) or source not in SOURCES:
        raise MalformedEvent("triggerSource", f"is not {' or '.join(SOURCES)}")
    username = event.get("userName")
    if not isinstance(username, str) or not username.strip():
        raise MalformedEvent("userName", "is missing, empty or not a string", source=source)
    request = event.get("request")
    if not isinstance(request, dict):
        raise MalformedEvent("request", "is missing or not an object", source=source)
    password = None
    if source == AUTHENTICATION:
        password = request.get("password")
        if not isinstance(password, str) or not password:
            raise MalformedEvent("request.password", "is missing, empty or not a string",
                                 source=source)
    return MigrationRequest(source, username.strip().lower(), password)


def staged_user(item: Mapping | None) -> LegacyHash:
    """The user a GetItem's item holds (None: no item). Refusal UNKNOWN_USER, NO_HASH
    (no hash, or an empty one), UNSUPPORTED_HASH or MALFORMED_ITEM; a missing profile is
    an empty one."""
    if item is None:
        raise Refusal(UNKNOWN_USER)
    hashed = item.get(HASH)
    hashed = hashed.get("S") if isinstance(hashed, Mapping) else None
    if not hashed:
        raise Refusal(NO_HASH)
    if hash_format(hashed) is None:
        raise Refusal(UNSUPPORTED_HASH)
    profile = item.get(PROFILE)
    if not isinstance(profile, Mapping) or "M" not in profile:
        profile = {"M": {}}
    try:
        return LegacyHash.from_item({EMAIL: item[EMAIL], HASH: {"S": hashed}, PROFILE: profile})
    except (KeyError, TypeError, ValueError):
        raise Refusal(MALFORMED_ITEM) from None


def authenticate(password: str, item: Mapping | None) -> LegacyHash:
    """The user `item` holds, when `password` is theirs; else Refusal. Every refusal
    costs about one cost-10 bcrypt check, whether a hash was checked or not."""
    try:
        user = staged_user(item)
        kind = hash_format(user.hash)
        if kind == "bcrypt" and len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_BYTES:
            raise Refusal(PASSWORD_TOO_LONG, hash_format=kind)
    except Refusal:
        spend()
        raise
    if not verify(password, user.hash):
        raise Refusal(WRONG_PASSWORD, hash_format=kind)
    return user


def verify(password: str, hashed: str) -> bool:
    """Whether `password` matches `hashed`, a hash in a HASH_FORMATS format. A password
    passlib refuses for that hash (a NUL byte for bcrypt, over 72 bytes) matches
    nothing, and costs the check it would have made."""
    try:
        return CONTEXT.verify(password, hashed)
    except ValueError:
        spend()
        return False


def spend() -> None:
    """One cost-10 bcrypt check whose answer is thrown away: a refusal's time."""
    CONTEXT.verify(_DUMMY_PASSWORD, DUMMY_HASH)


def load_backends() -> None:
    """Load (and self-test) the bcrypt and argon2 backends now: passlib does it on the
    first check otherwise, inside the first sign-in's 5 seconds."""
    for scheme in CONTEXT.schemes():
        CONTEXT.handler(scheme).get_backend()


def custom_attribute_names(setting: str | None) -> tuple[str, ...]:
    """The names in a comma-separated setting ("role, plan"), without a `custom:`
    prefix, in order, each once."""
    names = (part.strip().removeprefix("custom:").strip() for part in (setting or "").split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def user_attributes(user: LegacyHash, custom_attributes: Iterable[str]) -> dict[str, str]:
    """The new Cognito user's attributes, all strings: the address, verified (the legacy
    database confirmed it: legacy.users stages no other), `name` and `locale` from the
    profile, and `custom:<name>` for each of `custom_attributes` the profile holds as
    text. A profile value that is not a non-blank string is left out."""
    attributes = {"email": user.email.lower(), "email_verified": "true"}
    wanted = [*STANDARD_ATTRIBUTES, *((f"custom:{name}", name) for name in custom_attributes)]
    for attribute, key in wanted:
        value = user.profile.get(key)
        if isinstance(value, str) and value.strip():
            attributes[attribute] = value
    return attributes


def response(event: dict, source: str, attributes: dict[str, str]) -> dict:
    """`event` with the response Cognito creates the user from: the attributes, no
    welcome message, and, on a sign-in, the user CONFIRMED. A reset (FORGOT_PASSWORD)
    sets no status: Cognito makes the user RESET_REQUIRED and sends the code to the
    verified address."""
    answer = event.get("response")
    if not isinstance(answer, dict):
        answer = event["response"] = {}
    answer["userAttributes"] = attributes
    answer["messageAction"] = "SUPPRESS"
    answer["desiredDeliveryMediums"] = ["EMAIL"]
    if source == AUTHENTICATION:
        answer["finalUserStatus"] = "CONFIRMED"
    else:
        answer.pop("finalUserStatus", None)
    return event


def dynamodb_client():
    """A DynamoDB client for the trigger's one GetItem, with timeouts inside Cognito's 5 s:
    two attempts of at most 1 s to connect and 1 s to read leave time for the check."""
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodb", config=Config(
        connect_timeout=1, read_timeout=1, retries={"mode": "standard", "max_attempts": 2}))
