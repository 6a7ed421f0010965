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

TIMEOUTS = """
SELECT set_config('statement_timeout', %(statement_timeout)s, true),
       set_config('lock_timeout', %(lock_timeout)s, true)
"""

# Two deliveries for one user (a retry, or Cognito and a concurrent retry) would both
# insert; INSERT ... ON CONFLICT (cognito_user_id) then still raises a unique violation
# on the e-mail index for the one that loses the race. A transaction-level advisory lock,
# on the user and on the address, makes the second wait for the first and then find its
# row. Lock the user first, then the address, always in this order.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"

# Link the profile that owns this e-mail address (compared without case, an exact match
# first) to this Cognito user, unless the user has a profile already: a legacy profile
# with no Cognito user yet, or one whose Cognito user was deleted and signed up again.
# Cognito confirmed the address, so its owner is this user. Role and values stay.
LINK_BY_EMAIL = """
UPDATE {schema}.profiles SET cognito_user_id = %(sub)s
 WHERE id = (SELECT id FROM {schema}.profiles
              WHERE lower(email) = lower(%(email)s)
                AND cognito_user_id IS DISTINCT FROM %(sub)s
              ORDER BY email = %(email)s DESC, id
              LIMIT 1)
   AND NOT EXISTS (SELECT 1 FROM {schema}.profiles WHERE cognito_user_id = %(sub)s)
"""

PROFILE_ID = "SELECT id FROM {schema}.profiles WHERE cognito_user_id = %(sub)s"
PRIVATE_PROFILE_EXISTS = "SELECT 1 FROM {schema}.private_profiles WHERE user_id = %(profile_id)s"

# The role is always 'owner', the one a self-service sign-up gets; Cognito's
# custom:role attribute is not read at all, as a user may set it on sign-up and would
# make themselves admin. An existing profile keeps its role.
UPSERT_PROFILE = """
INSERT INTO {schema}.profiles AS p (email, cognito_user_id, display_name, language, role)
VALUES (%(email)s, %(sub)s, %(display_name)s, %(language)s, 'owner')
ON CONFLICT (cognito_user_id) DO UPDATE
   SET email = EXCLUDED.email,
       display_name = COALESCE(EXCLUDED.display_name, p.display_name)
RETURNING id
"""

UPSERT_PRIVATE_PROFILE = """
INSERT INTO {schema}.private_profiles AS pp (user_id, first_name, last_name, phone)
VALUES (%(profile_id)s, %(first_name)s, %(last_name)s, %(phone)s)
ON CONFLICT (user_id) DO UPDATE
   SET first_name = COALESCE(EXCLUDED.first_name, pp.first_name),
       last_name = COALESCE(EXCLUDED.last_name, pp.last_name),
       phone = COALESCE(EXCLUDED.phone, pp.phone)
"""

# For a confirmation that must not change what exists (a password reset): create only
# what is missing. ON CONFLICT DO NOTHING, with no target, also covers a writer that
# does not take the advisory locks.
INSERT_MISSING_PROFILE = """
INSERT INTO {schema}.profiles (email, cognito_user_id, display_name, language, role)
VALUES (%(email)s, %(sub)s, %(display_name)s, %(language)s, 'owner')
ON CONFLICT DO NOTHING
RETURNING id
"""

INSERT_MISSING_PRIVATE_PROFILE = """
INSERT INTO {schema}.private_profiles (user_id, first_name, last_name, phone)
VALUES (%(profile_id)s, %(first_name)s, %(last_name)s, %(phone)s)
ON CONFLICT (user_id) DO NOTHING
"""

# table -> privilege -> columns. SELECT covers the columns the statements read: WHERE
# clauses, the ON CONFLICT targets, the existing values in DO UPDATE, and RETURNING.
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
    'owner' (UPSERT_PROFILE) and an existing profile keeps its role.
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
    """Write the user's profile and private profile in one transaction, on `conn`
    (an autocommit connection).

    overwrite=True (a sign-up): the user's values replace the stored ones, except where
    the user has none. overwrite=False: create what is missing and change nothing else.

    `also(conn)`, when given, runs last in the same transaction: what must be committed
    with the profile or not at all (the registration outbox's row, phase a4).

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
    from psycopg import sql

    found = conn.execute(sql.SQL(PROFILE_ID).format(schema=sql.Identifier(schema)),
                         {"sub": user.sub}).fetchone()
    if found is not None:
        return Saved(str(found[0]), "unchanged", "unchanged")
    return write_profile(conn, user, schema=schema, overwrite=False,
                         statement_timeout_ms=statement_timeout_ms,
                         lock_timeout_ms=lock_timeout_ms)


def _write(conn, user: NewUser, schema: str, overwrite: bool, statement_timeout_ms: int,
           lock_timeout_ms: int, also: Callable[[object], None] | None) -> Saved:
    from psycopg import sql

    def run(text: str, params: dict):
        return conn.execute(sql.SQL(text).format(schema=sql.Identifier(schema)), params)

    values = {"sub": user.sub, "email": user.email, "display_name": user.display_name,
              "language": user.language, "first_name": user.first_name,
              "last_name": user.last_name, "phone": user.phone}
    with conn.transaction():
        run(TIMEOUTS, {"statement_timeout": f"{statement_timeout_ms}ms",
                       "lock_timeout": f"{lock_timeout_ms}ms"})
        run(LOCK, {"key": f"runbook.profiles.sub:{user.sub}"})
        run(LOCK, {"key": f"runbook.profiles.email:{user.email.lower()}"})
        linked = run(LINK_BY_EMAIL, values).rowcount == 1
        existing = run(PROFILE_ID, values).fetchone()
        if overwrite:
            profile_id = run(UPSERT_PROFILE, values).fetchone()[0]
        else:
            inserted = None if existing else run(INSERT_MISSING_PROFILE, values).fetchone()
            found = inserted or existing or run(PROFILE_ID, values).fetchone()
            if found is None:  # the address belongs to another user's profile
                raise ProfileConflict("the e-mail address belongs to another user's profile")
            profile_id = found[0]
        values["profile_id"] = profile_id
        had_private = run(PRIVATE_PROFILE_EXISTS, values).fetchone() is not None
        if overwrite:
            run(UPSERT_PRIVATE_PROFILE, values)
        elif not had_private:
            run(INSERT_MISSING_PRIVATE_PROFILE, values)
        if also is not None:
            also(conn)

    if linked:
        profile = "linked"
    elif existing is None:
        profile = "created"
    else:
        profile = "updated" if overwrite else "unchanged"
    private = "updated" if had_private and overwrite else "unchanged" if had_private else "created"
    return Saved(str(profile_id), profile, private)
