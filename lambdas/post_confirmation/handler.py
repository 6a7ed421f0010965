"""Cognito Post Confirmation trigger: the user's profile and private profile.

Cognito sends this trigger two events:

  PostConfirmation_ConfirmSignUp          the user confirmed the sign-up: create the
        profile, or update it with the user's attributes (a retry), or link the
        legacy profile with the same e-mail address.
  PostConfirmation_ConfirmForgotPassword  the user reset the password: change nothing
        the user may have edited since. A user with no profile (the sign-up trigger
        failed, or the user predates it) gets one, created from the attributes.

Cognito retries a trigger that fails and gives up after 5 seconds, possibly while the
first delivery is still running: the writes are idempotent, in one transaction, and
serialised per user (runbook.lambda_runtime.profiles). The event is returned unchanged.

Environment: DB_DSN, or DB_AUTH=iam with DB_HOST, DB_PORT, DB_NAME, DB_USER and
DB_SSLROOTCERT (verify-full against the RDS CA bundle in the layer), or DB_SECRET_ARN
(runbook.lambda_runtime.db.from_environment); DB_SCHEMA (default public).
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import db, emails, logs, profiles, trigger
from runbook.lambda_runtime.connection import WarmConnection

SIGN_UP = "PostConfirmation_ConfirmSignUp"
FORGOT_PASSWORD = "PostConfirmation_ConfirmForgotPassword"

# Opened by the first invocation of this container, kept for the next ones.
DATABASE = WarmConnection(os.environ, application_name="post-confirmation")


class ProfileNotSaved(RuntimeError):
    """The profile could not be written; the message says why, without row values."""


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(request_id=trigger.request_id(context))
    try:
        parsed = trigger.parse(event, (SIGN_UP, FORGOT_PASSWORD), required=("sub", "email"))
    except trigger.MalformedEvent as exc:
        log.error("Post-Confirmation event rejected", reason=str(exc))
        raise
    log = log.bind(sub=parsed.require("sub"), trigger_source=parsed.source)
    log.info("User confirmation audit", email_domain=emails.domain(parsed.require("email")),
             email_verified=parsed.get("email_verified") == "true",
             user_status=parsed.get("cognito:user_status"), user_pool_id=event.get("userPoolId"))

    user = profiles.new_user(parsed)
    schema = os.environ.get("DB_SCHEMA") or "public"

    def work(conn) -> profiles.Saved:
        return profiles.write_profile(conn, user, schema=schema, overwrite=parsed.source == SIGN_UP)

    def reconnecting(exc: BaseException) -> None:
        log.info("Database connection lost; reconnecting", reason=db.describe(exc))

    try:
        saved = DATABASE.run(work, on_reconnect=reconnecting)
    except Exception as exc:  # noqa: BLE001 - logged and raised again, without row values
        reason = db.describe(exc)
        log.error("Post-Confirmation processing failed", reason=reason,
                  duration_ms=logs.elapsed_ms(started))
        # Not chained: the original's text may quote a row, e-mail address and all.
        raise ProfileNotSaved(f"profile not saved: {reason}") from None

    log.info("Profile created/updated" if saved.changed else "Profile unchanged",
             profile_id=saved.profile_id, profile=saved.profile,
             private_profile=saved.private_profile)
    log.info("Post-Confirmation processing completed", duration_ms=logs.elapsed_ms(started))
    return event
