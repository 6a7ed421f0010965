"""The Post-Confirmation trigger's writes: a profile and a private profile per Cognito user.

Cognito retries a trigger that fails or takes longer than 5 seconds, so the writes are
idempotent (keyed on the Cognito `sub`) and made in one transaction. A profile with the
same e-mail address is linked instead of duplicated, keeping its role and values.

`PRIVILEGES` lists exactly the column privileges these statements need. fix-tables
grants them to the role the trigger connects as, and nothing more. Keep the two in
step: tests run these statements as that role.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class NewUser:
    sub: str
    email: str
    display_name: str | None = None
    language: str = "de"
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


def upsert_profile(conn, user: NewUser, *, schema: str = "public") -> str:
    """Create or update the user's profile and private profile; return the profile id."""
    from psycopg import sql

    def statement(text: str):
        return sql.SQL(text).format(schema=sql.Identifier(schema))

    values = {"sub": user.sub, "email": user.email, "display_name": user.display_name,
              "language": user.language, "first_name": user.first_name,
              "last_name": user.last_name, "phone": user.phone}
    with conn.transaction():
        conn.execute(statement(LINK_BY_EMAIL), values)
        profile_id = conn.execute(statement(UPSERT_PROFILE), values).fetchone()[0]
        conn.execute(statement(UPSERT_PRIVATE_PROFILE), {**values, "profile_id": profile_id})
    return str(profile_id)
