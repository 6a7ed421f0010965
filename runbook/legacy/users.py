"""Which legacy users are staged, which are skipped and why, and which differ from what
the hash table holds: pure functions of what was read, so that the plan is a diff
tested from data.

A user is staged as runbook.lambda_runtime.legacy_hashes.LegacyHash: the address
lower-cased (the table's key, and the record's), the hash, and the profile the
migration gives the new Cognito user: {display_name, role, language}, each left out
when the legacy database has none.

A user is skipped, and counted by reason, when the migration could never log them in
with the hash:
  no_email                 no address: nothing to key the item by, or to sign in with
  malformed_email          an address the loader refuses (emails.well_formed)
  no_password_hash         no hash: the user only signed in with OAuth
  email_not_confirmed      the address was never confirmed; Cognito would mark it verified
  unsupported_hash_format  a hash no verifier the migration has can check ($fbscrypt)
Two rows whose addresses are equal once lower-cased are refused, not guessed between:
the table holds one item per address.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from runbook.lambda_runtime import emails
from runbook.lambda_runtime.legacy_hashes import LegacyHash, hash_format
from runbook.legacy.source import Row

REASONS = ("no_email", "malformed_email", "no_password_hash", "email_not_confirmed",
           "unsupported_hash_format")


class DuplicateEmails(ValueError):
    """Two or more rows share an address once lower-cased. The message masks them."""

    def __init__(self, duplicates: list[str]):
        self.duplicates = duplicates
        shown = ", ".join(emails.mask(address) for address in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        super().__init__(
            f"{len(duplicates)} address(es) belong to more than one auth.users row once "
            f"lower-cased ({shown}{more}); the table keys users by lower-cased address, "
            "so runbook will not choose between them. Merge or delete the extra rows in "
            "the legacy database, then run again")


@dataclass(frozen=True)
class Classified:
    users: tuple[LegacyHash, ...]                       # to be in the table
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> count


def profile(row: Row) -> dict:
    """The profile staged with a user: what the legacy database has of it."""
    values = {"display_name": row.display_name, "role": row.role, "language": row.language}
    return {key: value for key, value in values.items() if value is not None}


def reason(row: Row) -> str | None:
    """Why `row` is not staged (one of REASONS), or None when it is."""
    if not row.email or not row.email.strip():
        return "no_email"
    if not emails.well_formed(row.email.strip().lower()):
        return "malformed_email"
    if not row.encrypted_password:
        return "no_password_hash"
    if not row.confirmed:
        return "email_not_confirmed"
    if hash_format(row.encrypted_password) is None:
        return "unsupported_hash_format"
    return None


def classify(rows: Iterable[Row]) -> Classified:
    """The users to stage and the skipped ones by reason; DuplicateEmails when two rows
    share an address once lower-cased (any two rows with an address, skipped or not:
    Cognito would have one user for both)."""
    rows = list(rows)
    counts = Counter(row.email.strip().lower() for row in rows
                     if row.email and row.email.strip())
    duplicates = sorted(address for address, n in counts.items() if n > 1)
    if duplicates:
        raise DuplicateEmails(duplicates)
    users, skipped = [], Counter()
    for row in rows:
        why = reason(row)
        if why is not None:
            skipped[why] += 1
        else:
            users.append(LegacyHash(row.email.strip().lower(), row.encrypted_password,
                                    profile(row)))
    return Classified(tuple(users), {r: skipped[r] for r in REASONS if skipped[r]})


@dataclass(frozen=True)
class Diff:
    """The users whose item is missing or differs, and why, in source order."""

    stage: tuple[LegacyHash, ...]
    new: int = 0
    hash_changed: int = 0
    profile_changed: int = 0
    unchanged: int = 0


def diff(users: Iterable[LegacyHash], stored: Mapping[str, LegacyHash]) -> Diff:
    """`users` against the items the table holds (by address). Compared by the record's
    value (LegacyHash.to_value): a profile read back holds numbers as Decimal."""
    stage, new, hashed, profiled, same = [], 0, 0, 0, 0
    for user in users:
        item = stored.get(user.email)
        if item is not None and item.to_value() == user.to_value():
            same += 1
            continue
        stage.append(user)
        if item is None:
            new += 1
        elif item.hash != user.hash:
            hashed += 1
        else:
            profiled += 1
    return Diff(tuple(stage), new, hashed, profiled, same)


def missing(staged: Iterable[LegacyHash], stored: Mapping[str, LegacyHash]) -> list[str]:
    """The addresses of `staged` whose item is not (yet) what was produced."""
    return [user.email for user in staged
            if (item := stored.get(user.email)) is None or item.to_value() != user.to_value()]
