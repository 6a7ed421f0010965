"""The Post-Confirmation trigger's writes: a profile and a private profile per Cognito user.

Cognito retries a trigger that fails or takes longer than 5 seconds, and may deliver
the same confirmation to several containers at once, so the writes are idempotent
(keyed on the Cognito `sub`), made in one transaction, and serialised per user. A
profile with the same e-mail address is linked instead of duplicated, keeping its role
and values.

`PRIVILEGES` lists exactly the column privileges these statements need. fix-tables
grants them to the role the trigger connects as, and nothing more. Keep the two in
step: tests run these statements as that role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from runbook.lambda_runtime import round_trip

# The languages the app is translated into: the list the Supabase-era CHECK constraint
# allowed. fix-tables dropped that constraint (it named the legacy roles too), so the
# column takes any text now and the trigger keeps unknown locales out.
LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"

# Cognito gives up on a trigger after 5 seconds, and the connection and the Lambda
# runtime take some of them. A statement that waits longer than this (for a lock held
# by a stuck session, say) is cancelled, so the handler fails with a PostgreSQL error
# that says why instead of being cut off by Cognito with "timed out".
STATEMENT_TIMEOUT_MS = 3000
LOCK_TIMEOUT_MS = 2000

# The writes are one statement, the procedure write_profile that the migrations create
# (templates/sql/0007_trigger_functions.sql.j2, replaced by 0008), sent with the
# timeouts in one round trip (runbook.lambda_runtime.round_trip). In order, in the caller's transaction:
#
# - Two deliveries for one user (a retry, or Cognito and a concurrent retry) would both
#   insert; INSERT ... ON CONFLICT (cognito_user_id) then still raises a unique violation
#   on the e-mail index for the one that loses the race. Transaction-level advisory
#   locks, on the user and then on the lower-cased address, always in this order, make
#   the second wait for the first and then find its row.
# - The link by address: the profile that owns this e-mail address (compared without
#   case, an exact match first) becomes this Cognito user's, unless the user has a
#   profile already: a legacy profile with no Cognito user yet, or one whose Cognito
#   user was deleted and signed up again. Cognito confirmed the address, so its owner is
#   this user. Role and values stay.
# - overwrite: INSERT ... ON CONFLICT (cognito_user_id) DO UPDATE of the e-mail address
#   and, where the user gives one, the display name; then the private profile's values
#   where the user gives them. The role is always 'owner' for a new profile, the one a
#   self-service sign-up gets; Cognito's custom:role attribute is not read at all, as a
#   user may set it on sign-up and would make themselves admin. An existing profile
#   keeps its role.
# - not overwrite (a password reset): create only what is missing. The profile's
#   INSERT has ON CONFLICT DO NOTHING with no target, which also covers a writer that
#   does not take the advisory locks; a profile that then still cannot be found is
#   SQLSTATE PROFILE_CONFLICT.
FUNCTION = "write_profile"
WRITE_PROFILE = "CALL {schema}.write_profile(%s, %s, %s, %s, %s, %s, %s, %s)"
PROFILE_CONFLICT = "RB409"

PROFILE_ID = "SELECT id FROM {schema}.profiles WHERE cognito_user_id = %(sub)s"

# table -> privilege -> columns. SELECT covers the columns the statements read: WHERE
# clauses, the ON CONFLICT targets, the existing values in DO UPDATE, and RETURNING.
# write_profile runs with its caller's privileges (SECURITY INVOKER): these decide what
# it may do, and the role needs only EXECUTE on it besides (runbook.lambda_runtime.dbroles).
PRIVILEGES: dict[str, dict[str, tuple[str, ...]]] = {
    "profiles": {
        "SELECT": ("id", "email", "cognito_user_id", "display_name"),
        "INSERT": ("email", "cognito_user_id", "display_name", "language", "role"),
        "UPDATE": ("email", "cognito_user_id", "display_name"),
    },
    "private_profiles": {
        "SELECT": ("user_id", "first_name", "last_name", "phone"),
        "INSERT": ("user_id", "first_name", "last_name", "phone"),
        "UPDATE": ("first_name", "last_name", "phone"),
    },
}


class ProfileConflict(Exception):
    """The user's profile could be neither found nor created."""


@dataclass(frozen=True)
class NewUser:
    sub: str
    email: str
    display_name: str | None = None
    language: str = DEFAULT_LANGUAGE
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Saved:
    """What a write did. `profile`: created, linked (an existing profile with the
    address now belongs to the user), updated or unchanged; `private_profile`: created,
    updated or unchanged."""

    profile_id: str
    profile: str
    private_profile: str

    @property
    def changed(self) -> bool:
        return (self.profile, self.private_profile) != ("unchanged", "unchanged")


def new_user(parsed) -> NewUser:
    """The profile values from Cognito's standard attributes (`parsed`, a
    trigger.TriggerEvent).

    custom:role is not read: a user can set it when signing up. Every new profile is an
    'owner' (WRITE_PROFILE) and an existing profile keeps its role.
    """
    given, family = parsed.get("given_name"), parsed.get("family_name")
    full_name = " ".join(part for part in (given, family) if part) or None
    return NewUser(sub=parsed.require("sub"), email=parsed.require("email"),
                   display_name=parsed.get("name") or full_name,
                   language=language(parsed.get("locale")),
                   first_name=given, last_name=family, phone=parsed.get("phone_number"))


def language(locale: str | None) -> str:
    """The profile language for a Cognito `locale` ('en', 'en-US', 'de_AT'), else the default."""
    primary = (locale or "").strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


def upsert_profile(conn, user: NewUser, *, schema: str = "public") -> str:
    """Create or update the user's profile and private profile; return the profile id."""
    return write_profile(conn, user, schema=schema, overwrite=True).profile_id


def write_profile(conn, user: NewUser, *, schema: str = "public", overwrite: bool = True,
                  statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
                  lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                  also: Callable[[object], None] | None = None) -> Saved:
    """Write the user's profile and private profile in one transaction and one round
    trip, on `conn` (an autocommit connection).

    overwrite=True (a sign-up): the user's values replace the stored ones, except where
    the user has none. overwrite=False: create what is missing and change nothing else.

    `also(conn)`, when given, runs last in the same transaction: what must be committed
    with the profile or not at all (the registration outbox's row, phase a4). What it
    sends joins the write's round trip (runbook.lambda_runtime.round_trip); should it
    read an answer, that costs one more.

    A unique violation (from a writer that does not take the advisory locks) rolls the
    transaction back and it runs once more, when it finds the other writer's row.
    """
    from psycopg import errors

    args = (conn, user, schema, overwrite, statement_timeout_ms, lock_timeout_ms, also)
    try:
        return _write(*args)
    except errors.UniqueViolation:
        return _write(*args)


def link_on_sign_in(conn, user: NewUser, *, schema: str = "public",
                    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
                    lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> Saved:
    """A signed-in user's profile, made sure of (Post-Authentication). A user who has a
    profile, as nearly every one does after the first sign-in, costs one indexed read
    and no lock. Otherwise the profile with the user's address is linked (a legacy
    user's, after Cognito's UserMigration trigger created the user: no Post-Confirmation
    fires then), or a profile is created, as for a password reset: write_profile with
    overwrite=False, which changes nothing that exists."""
    found = conn.execute(round_trip.statement(PROFILE_ID, schema=schema),
                         {"sub": user.sub}).fetchone()
    if found is not None:
        return Saved(str(found[0]), "unchanged", "unchanged")
    return write_profile(conn, user, schema=schema, overwrite=False,
                         statement_timeout_ms=statement_timeout_ms,
                         lock_timeout_ms=lock_timeout_ms)


def _write(conn, user: NewUser, schema: str, overwrite: bool, statement_timeout_ms: int,
           lock_timeout_ms: int, also: Callable[[object], None] | None) -> Saved:
    from psycopg import DatabaseError

    try:
        row = round_trip.run(conn, WRITE_PROFILE,
                             (user.sub, user.email, user.display_name, user.language,
                              user.first_name, user.last_name, user.phone, overwrite),
                             identifiers={"schema": schema},
                             statement_timeout_ms=statement_timeout_ms,
                             lock_timeout_ms=lock_timeout_ms, also=also).fetchone()
    except DatabaseError as exc:
        if exc.sqlstate == PROFILE_CONFLICT:
            raise ProfileConflict("the e-mail address belongs to another user's "
                                  "profile") from None
        raise
    return Saved(*row)
