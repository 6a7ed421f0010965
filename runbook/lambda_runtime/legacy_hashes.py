"""The legacy loader's work: legacy users' password hashes from MSK into the hash table.

The producer (step stage-legacy-users) sends one record per legacy user to the topic,
keyed by the lower-cased e-mail address, whose value is the JSON object `LegacyHash`
defines: `{"email", "hash", "profile"}`. This module is that shape's one definition:
the producer builds the value with `LegacyHash.to_value`, the loader reads it with
`LegacyHash.from_value` and writes `to_item`, and whoever reads the table (the
producer's diff, the UserMigration trigger) reads `from_item`.

Lambda's MSK event source mapping invokes the loader with up to BatchSize records,
grouped by "<topic>-<partition>", each with a base64 key and value. Each record is
read on its own: one that is not base64, not JSON, or not a user with a well-formed
address, a hash in a format the migration can verify and a profile object is refused
by its name, `<topic>-<partition>@<offset>`, and never written. Nothing of its value
is logged: the value holds a password hash and an address.

What reaches the table, and in what order:
- The item is exactly {email, hash, profile}, the e-mail lower-cased (the table's
  partition key). Nothing in it depends on the delivery (no offset, no "stored at"),
  so a replayed record writes the item that is there, and a replayed batch leaves the
  table exactly as it was.
- BatchWriteItem refuses a request that names one key twice (ValidationException) and
  takes at most 25 requests. An e-mail is written once per event: its last record in
  offset order wins. The records of an event are then written in chunks of at most
  25 distinct e-mails, and what DynamoDB leaves in `UnprocessedItems` is sent again
  after an exponential backoff, `MAX_ATTEMPTS` times at most, with the sleep injected.
- No version field (a source `updated_at`) and no conditional write. BatchWriteItem
  takes no condition, and ordering does not need one here: the producer keys records
  by e-mail, so one user's records are in one partition, in the order they were
  produced; Lambda reads a partition in order and retries a failed batch before the
  ones after it; and within an event the last offset wins. Re-reading the topic from
  an older offset re-reads the later records too, so the table ends as the last record
  left it. An older hash could win only with a second writer of the table, or a
  producer that keyed a user into two partitions; should either come, the item needs
  the source's `updated_at` and a conditional PutItem (AWS-FACTS C). The producer's
  own diff (hash and profile against the table) re-stages whatever differs.

What the loader answers (runbook.lambda_runtime's handler, lambdas/legacy_loader):
- An MSK event source mapping (on-demand pollers) has no partial batch response: a
  function error makes Lambda retry the whole batch, by default until the records
  expire from the topic, and a success commits the batch's offsets. So the handler
  raises when any well-formed record could not be stored (DynamoDB refused a call, or
  items stayed unprocessed after the bound): the batch comes again, and the items
  already written are written again unchanged.
- A malformed record is not an error: retrying could never store it, and would hold
  its partition until the record expired. It is refused, logged by name, counted, and
  the batch goes on.
- Whatever it returns, Lambda ignores on this mapping; it returns counts, and the names
  of the refused records, for an operator's `runbook invoke`. (With the provisioned
  pollers' ReportBatchItemFailures on, a response without `batchItemFailures` reads as
  a complete success, which is what a return means here.)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from typing import Callable, Iterable, Mapping

from runbook.lambda_runtime import emails

EVENT_SOURCE = "aws:kafka"
# The item's attributes; the table's partition key is EMAIL.
EMAIL, HASH, PROFILE = "email", "hash", "profile"

# BatchWriteItem: at most 25 put or delete requests, no key twice (AWS-FACTS C).
BATCH_LIMIT = 25
# UnprocessedItems are sent again after 0.05 s, 0.1 s, ... at most 2 s apart; after
# MAX_ATTEMPTS calls (about 5 s of sleep in all) the batch fails and Lambda retries it.
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0

# A value larger than this is refused. A user's hash and profile are well under it, and
# it keeps every item far below DynamoDB's 400 KB and a 25-item request below 16 MB: an
# item DynamoDB refuses fails its whole BatchWriteItem, and that batch would be retried
# until it expired.
MAX_VALUE_BYTES = 64 * 1024
# DynamoDB nests documents 32 levels deep at most; a profile is a flat object.
MAX_PROFILE_DEPTH = 16
# DynamoDB numbers: 38 significant digits, magnitude 1E-130 to 9.9E125.
_MAX_DIGITS, _MIN_EXP, _MAX_EXP = 38, -130, 125
# Decimal's default context rounds to 28 digits: normalising in it turned
# 1.00000000000000000000000000000000000001 into 1, a number the producer never sent.
# A value is at most MAX_VALUE_BYTES long, so this precision never rounds.
_EXACT = Context(prec=MAX_VALUE_BYTES + 1)

# The hash formats the UserMigration trigger can verify (AWS-FACTS C, "Hash formats"):
# bcrypt $2a$/$2b$/$2y$ (GoTrue's own), argon2i/argon2id version 19 without keyid or
# data (GoTrue's imports). $fbscrypt and others have no verifier: refused here, not
# staged for a log-in that could never succeed.
HASH_FORMATS = {
    "bcrypt": re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}"),
    "argon2": re.compile(r"\$argon2(?:i|id)\$v=19\$m=[0-9]{1,10},t=[0-9]{1,10},p=[0-9]{1,3}"
                         r"\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}"),
}

# A lone surrogate ("\ud800" in JSON) is no UTF-8: DynamoDB would refuse the request.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedEvent(ValueError):
    """The invocation is not an MSK event (no `records` object of lists): no record can
    be named, so the whole batch fails."""


class MalformedRecord(ValueError):
    """One record cannot become an item. The text names the record and the field, never
    a value."""

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"record {name}: {problem}")


class NotStored(RuntimeError):
    """DynamoDB did not store every item; the message counts them, without values."""


@dataclass(frozen=True)
class LegacyHash:
    """One legacy user as staged: the address (lower-case), the password hash, and the
    profile the migration gives the new Cognito user."""

    # Out of its repr: a user in a traceback or a debugger shows no address, no hash.
    email: str = field(repr=False)
    hash: str = field(repr=False)
    profile: Mapping = field(repr=False)

    @classmethod
    def from_value(cls, value: bytes) -> "LegacyHash":
        """The user in a record's decoded value; ValueError naming what is wrong,
        without the value."""
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(f"value is longer than {MAX_VALUE_BYTES} bytes")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("value is not UTF-8") from None
        try:
            data = json.loads(text, parse_float=Decimal, parse_int=Decimal,
                              parse_constant=_no_constant)
        except ValueError as exc:
            # The decoder's message names a position, never the text.
            raise ValueError(f"value is not JSON ({getattr(exc, 'msg', 'invalid')} at "
                             f"{getattr(exc, 'pos', '?')})") from None
        if not isinstance(data, dict):
            raise ValueError("value is not a JSON object")
        email = data.get(EMAIL)
        if email is None:
            raise ValueError(f"{EMAIL} is missing")
        if not isinstance(email, str):
            raise ValueError(f"{EMAIL} is a {_kind(email)}, not a string")
        email = email.strip().lower()
        if not emails.well_formed(email):
            raise ValueError(f"{EMAIL} is not an e-mail address")
        hashed = data.get(HASH)
        if not isinstance(hashed, str):
            raise ValueError(f"{HASH} is missing" if hashed is None
                             else f"{HASH} is a {_kind(hashed)}, not a string")
        if hash_format(hashed) is None:
            raise ValueError(f"{HASH} is in no format the migration verifies "
                             f"({', '.join(HASH_FORMATS)})")
        profile = data.get(PROFILE)
        if not isinstance(profile, dict):
            raise ValueError(f"{PROFILE} is missing" if profile is None
                             else f"{PROFILE} is a {_kind(profile)}, not an object")
        _check_document(profile, PROFILE, 1)
        return cls(email, hashed, profile)

    def to_value(self) -> bytes:
        """The record's value as the producer sends it: JSON, keys sorted. Compare two
        users by it, not with ==: a profile read back (from_value, from_item) holds
        numbers as Decimal, and Decimal("0.1") != 0.1."""
        return json.dumps({EMAIL: self.email, HASH: self.hash, PROFILE: self.profile},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=_json_number).encode("utf-8")

    def to_item(self) -> dict:
        """The item in DynamoDB's wire format (the profile a map)."""
        return {EMAIL: {"S": self.email}, HASH: {"S": self.hash},
                PROFILE: _attribute(self.profile)}

    @classmethod
    def from_item(cls, item: Mapping) -> "LegacyHash":
        """The user an item (wire format, as GetItem or BatchGetItem answer) holds."""
        return cls(item[EMAIL]["S"], item[HASH]["S"], _value(item[PROFILE]))


@dataclass(frozen=True)
class Received:
    """A well-formed record, and where it was in the topic."""

    name: str            # <topic>-<partition>@<offset>
    offset: int
    user: LegacyHash


@dataclass(frozen=True)
class Written:
    items: int           # distinct e-mails written
    calls: int           # BatchWriteItem calls, retries included
    retries: int         # calls that sent UnprocessedItems again


def hash_format(hashed: str) -> str | None:
    """The name of the format `hashed` is in (HASH_FORMATS), or None."""
    return next((name for name, pattern in HASH_FORMATS.items() if pattern.fullmatch(hashed)),
                None)


def records(event) -> list[tuple[str, object]]:
    """(name, record) for every record of an MSK event: partitions in the event's order,
    each partition's records in offset order. A record whose place cannot be read is
    named by its position ("<topic>-<partition>#<index>"). MalformedEvent when `event`
    is not an MSK event."""
    if not isinstance(event, dict) or not isinstance(event.get("records"), dict):
        raise MalformedEvent("the event has no records object: not an MSK event")
    if event.get("eventSource", EVENT_SOURCE) != EVENT_SOURCE:
        raise MalformedEvent(f"eventSource is not {EVENT_SOURCE}")
    named: list[tuple[str, object]] = []
    for partition, batch in event["records"].items():
        if not isinstance(batch, list):
            raise MalformedEvent(f"records[{partition!r}] is not a list")
        # Lambda gives a partition's records in offset order; sorting makes it so.
        order = sorted(range(len(batch)), key=lambda i: (_offset(batch[i]) is not None,
                                                         _offset(batch[i]) or 0, i))
        named += [(_name(partition, i, batch[i]), batch[i]) for i in order]
    return named


def parse(name: str, record) -> Received:
    """The user in one record, or MalformedRecord naming the record and the problem."""
    if not isinstance(record, dict):
        raise MalformedRecord(name, "is not an object")
    offset = record.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise MalformedRecord(name, "has no offset")
    value = record.get("value")
    if not isinstance(value, str):
        raise MalformedRecord(name, "value is missing or not a string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRecord(name, "value is not base64") from None
    try:
        return Received(name, offset, LegacyHash.from_value(decoded))
    except ValueError as exc:
        raise MalformedRecord(name, str(exc)) from None


def latest(received: Iterable[Received]) -> tuple[list[LegacyHash], int]:
    """The user to write per e-mail (its last record, in the order `records` gives) and
    how many records that supersedes."""
    last: dict[str, LegacyHash] = {}
    count = 0
    for item in received:
        last.pop(item.user.email, None)   # re-inserted: the dict keeps the later place
        last[item.user.email] = item.user
        count += 1
    return list(last.values()), count - len(last)


def chunks(users: list[LegacyHash], size: int = BATCH_LIMIT) -> list[list[LegacyHash]]:
    """`users` in chunks of at most `size`; each chunk's e-mails are distinct, else
    ValueError (BatchWriteItem would refuse the request)."""
    if len({u.email for u in users}) != len(users):
        raise ValueError("an e-mail is given twice: write `latest(...)`")
    return [users[i:i + size] for i in range(0, len(users), size)]


def backoff(attempt: int) -> float:
    """The wait before sending UnprocessedItems for the `attempt`-th time (1, 2, ...)."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))


def write(client, table: str, users: list[LegacyHash], *,
          sleep: Callable[[float], None]) -> Written:
    """Put `users` (distinct e-mails) into `table` with BatchWriteItem, 25 at most per
    call, sending UnprocessedItems again after `backoff`. NotStored when items are
    still unprocessed after MAX_ATTEMPTS calls for one chunk; a ClientError from
    DynamoDB is raised as it is (the caller says what failed without values)."""
    calls = retries = 0
    for chunk in chunks(users):
        requests = [{"PutRequest": {"Item": user.to_item()}} for user in chunk]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                sleep(backoff(attempt - 1))
                retries += 1
            calls += 1
            answer = client.batch_write_item(RequestItems={table: requests})
            requests = (answer.get("UnprocessedItems") or {}).get(table) or []
            if not requests:
                break
        else:
            raise NotStored(f"{len(requests)} of {len(chunk)} item(s) still unprocessed "
                            f"after {MAX_ATTEMPTS} BatchWriteItem calls")
    return Written(len(users), calls, retries)


def dynamodb_client():
    """A DynamoDB client for `write`: short timeouts; botocore's standard retries (for
    throttling and 5xx) below `write`'s own retry of UnprocessedItems."""
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodb", config=Config(
        connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}))


# -- helpers -----------------------------------------------------------------------------

def _name(partition: str, index: int, record) -> str:
    offset = _offset(record)
    return f"{partition}@{offset}" if offset is not None else f"{partition}#{index}"


def _offset(record):
    offset = record.get("offset") if isinstance(record, dict) else None
    return offset if isinstance(offset, int) and not isinstance(offset, bool) else None


def _no_constant(name: str):
    raise ValueError(f"{name} is no JSON number DynamoDB can store")


def _kind(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, Decimal) else type(value).__name__)


def _check_document(value, path: str, depth: int) -> None:
    """ValueError, naming the path, for what DynamoDB would refuse in a document."""
    if depth > MAX_PROFILE_DEPTH:
        raise ValueError(f"{path} is nested deeper than {MAX_PROFILE_DEPTH} levels")
    if isinstance(value, dict):
        for key, inner in value.items():
            if not key or _LONE_SURROGATE.search(key):
                raise ValueError(f"{path} has a key DynamoDB cannot store")
            _check_document(inner, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _check_document(inner, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            raise ValueError(f"{path} contains a lone surrogate")
    elif isinstance(value, Decimal):
        _, digits, exponent = value.normalize(_EXACT).as_tuple()
        if value.is_zero():
            return
        magnitude = len(digits) + exponent - 1
        if len(digits) > _MAX_DIGITS or not _MIN_EXP <= magnitude <= _MAX_EXP:
            raise ValueError(f"{path} is a number DynamoDB cannot store")


def _attribute(value) -> dict:
    """A JSON value (numbers as Decimal) as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (int, Decimal)):
        return {"N": _number_text(value)}
    if isinstance(value, float):         # a profile the producer read (jsonb), not parsed
        return {"N": _number_text(Decimal(repr(value)))}
    if isinstance(value, list):
        return {"L": [_attribute(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {k: _attribute(v) for k, v in value.items()}}
    raise TypeError(f"a {type(value).__name__} is no JSON value")


def _value(attribute: Mapping):
    """The JSON value (numbers as Decimal) a DynamoDB attribute value holds."""
    (kind, inner), = attribute.items()
    if kind == "NULL":
        return None
    if kind in ("BOOL", "S"):
        return inner
    if kind == "N":
        return Decimal(inner)
    if kind == "L":
        return [_value(v) for v in inner]
    if kind == "M":
        return {k: _value(v) for k, v in inner.items()}
    raise ValueError(f"a {kind} attribute is no JSON value")


def _number_text(value) -> str:
    # One spelling per number ("1", not "1.0" or "1E+0"), so an item written again is
    # the same item; DynamoDB compares numbers by value anyway.
    if isinstance(value, int):
        return str(value)
    try:
        normal = value.normalize(_EXACT)
    except InvalidOperation:
        raise ValueError("not a finite number") from None
    if normal.is_zero():
        return "0"
    _, digits, exponent = normal.as_tuple()
    if 0 <= exponent and len(digits) + exponent <= _MAX_DIGITS:
        return format(normal, "f")       # 100, not 1E+2
    return str(normal)                   # 0.5, 1E+100


def _json_number(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"a {type(value).__name__} is no JSON value")
