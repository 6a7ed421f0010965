"""Cognito UserMigration trigger: a legacy (Supabase) user signs in with the old password.

Cognito calls it when a user it does not know signs in with USER_PASSWORD_AUTH or
ADMIN_USER_PASSWORD_AUTH (never with SRP, which does not send the password), and when
such a user asks for a reset code:

  UserMigration_Authentication   the staged item (GetItem on the lower-cased address,
        consistent) and the password checked against its hash with passlib. The answer
        creates the user CONFIRMED, the address verified, with the profile's attributes,
        and no welcome message; Cognito then completes the sign-in.
  UserMigration_ForgotPassword   the same attributes and no status: Cognito creates
        the user RESET_REQUIRED and sends the code to the verified address.

Every refusal (unknown user, wrong password, an item with no usable hash, a password
too long for bcrypt, a malformed event) raises MigrationRefused with one text, and a
sign-in's refusal costs a bcrypt check whatever the reason
(runbook.lambda_runtime.migration): neither the answer nor its time tells an unknown
address from a wrong password. The log line names the reason. A hash table that cannot
be read is no refusal: MigrationFailed names the error code.

One log line per invocation, with the trigger source, the address's domain, the hash's
format and the duration. The event holds the password: it is never logged, nor is the
hash or the address.

Environment:
    HASH_TABLE         the hash table's name
    CUSTOM_ATTRIBUTES  comma-separated custom attributes (without `custom:`) to take from
                       the staged profile, e.g. `role`; empty or unset: none
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import logs, migration, trigger
from runbook.lambda_runtime.legacy_hashes import EMAIL, hash_format

TABLE_VARIABLE = "HASH_TABLE"
CUSTOM_ATTRIBUTES_VARIABLE = "CUSTOM_ATTRIBUTES"
# What Cognito hears for every refusal (it answers the client "UserNotFoundException:
# Exception migrating user ...").
REFUSED = "User not migrated"

# Made in the init, as Lambda advises for SDK clients, not in the first sign-in's 5 s.
# Should it fail, the first invocation makes it again, and fails with the reason.
try:
    CLIENT = migration.dynamodb_client()
except Exception:  # noqa: BLE001 - see above
    CLIENT = None
# bcrypt's and argon2's backends too; without them no user can be migrated, so a
# failure here fails the init, with the reason in its log.
migration.load_backends()


class MigrationRefused(Exception):
    """The user is not migrated. The text is the same whatever the reason."""


class MigrationFailed(RuntimeError):
    """The hash table could not be read; the text names the error, without values."""


def client():
    global CLIENT
    if CLIENT is None:
        CLIENT = migration.dynamodb_client()
    return CLIENT


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(request_id=trigger.request_id(context))
    try:
        request = migration.parse(event)
        log = log.bind(trigger_source=request.source, email_domain=request.email_domain)
        user = migrate(request)
    except migration.Refusal as refusal:
        log.warning("User migration refused", reason=refusal.category, **refusal.fields,
                    duration_ms=logs.elapsed_ms(started))
    except MigrationFailed as exc:
        log.error("User migration failed", reason=str(exc), duration_ms=logs.elapsed_ms(started))
        raise
    else:
        attributes = migration.user_attributes(
            user, migration.custom_attribute_names(os.environ.get(CUSTOM_ATTRIBUTES_VARIABLE)))
        log.info("User migrated", hash_format=hash_format(user.hash),
                 attributes=sorted(attributes), duration_ms=logs.elapsed_ms(started))
        return migration.response(event, request.source, attributes)
    # One raise for every refusal, outside the except clause: the same type, text and
    # traceback, and no chained exception, whatever the reason was.
    raise MigrationRefused(REFUSED)


def migrate(request: migration.MigrationRequest):
    """The staged user, checked for a sign-in; Refusal or MigrationFailed otherwise. A
    user name that is no address is an unknown user, not looked up."""
    item = read(request.username) if request.email_domain else None
    if request.password is None:
        return migration.staged_user(item)
    return migration.authenticate(request.password, item)


def read(email: str) -> dict | None:
    """The hash table's item for `email` (a consistent read), or None."""
    table = os.environ.get(TABLE_VARIABLE)
    if not table:
        raise MigrationFailed(f"{TABLE_VARIABLE} is not set")
    try:
        answer = client().get_item(TableName=table, Key={EMAIL: {"S": email}},
                                   ConsistentRead=True)
    except Exception as exc:  # noqa: BLE001 - raised again, without values
        # Not chained: a client error's text may quote the request, address and all.
        raise MigrationFailed(f"hash table not read: {describe(exc)}") from None
    return answer.get("Item")


def describe(exc: BaseException) -> str:
    """What failed, without a value: a ClientError's code (ResourceNotFoundException),
    else the exception's type (ReadTimeoutError)."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code or type(exc).__name__
