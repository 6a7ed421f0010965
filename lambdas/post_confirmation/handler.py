"""Cognito Post Confirmation trigger: the user's profile and private profile.

Cognito sends this trigger two events:

  PostConfirmation_ConfirmSignUp          the user confirmed the sign-up: create the
        profile, or update it with the user's attributes (a retry), or link the
        legacy profile with the same e-mail address.
  PostConfirmation_ConfirmForgotPassword  the user reset the password: change nothing
        the user may have edited since. A user with no profile (the sign-up trigger
        failed, or the user predates it) gets one, created from the attributes.

It is also the pool's Post Authentication trigger once phase a5's
deploy-user-migration has run:

  PostAuthentication_Authentication       a user signed in: make sure they have a
        profile. After a legacy user's first sign-in, Cognito's UserMigration trigger
        has created the user and no Post-Confirmation fires (Cognito fires that one on
        ConfirmSignUp, AdminConfirmSignUp and ConfirmForgotPassword only), so this is
        where the legacy profile with the same address is linked to the new sub, once.
        A user with a profile (every later sign-in) costs one indexed read.

Cognito retries a trigger that fails and gives up after 5 seconds, possibly while the
first delivery is still running: the writes are idempotent, in one transaction, and
serialised per user (runbook.lambda_runtime.profiles). The event is returned unchanged.

Phase a4 (EVENT_BUS_NAME set): a sign-up also publishes a `user.registered` event to
that bus, for process-user-signup to store the user in `users`
(runbook.lambda_runtime.registration). The event's detail is written to the
registration outbox in the profile's transaction, then published within what is left
of Cognito's 5 seconds. A failed publish (the bus not made yet, say, when phase a3 runs
before a4) is a warning and does not fail the trigger: failing would save nothing, as
Cognito documents no redelivery of a failed Post-Confirmation beyond its own (at most
three) attempts within the one confirmation call, and the confirmation is not undone
(inference, see the README). The outbox row is the registration's record, and the
consumer's relay stores it.

Environment: EVENT_BUS_NAME (phase a4); DB_DSN, or DB_AUTH=iam with DB_HOST, DB_PORT,
DB_NAME, DB_USER and DB_SSLROOTCERT (verify-full against the RDS CA bundle in the
layer), or DB_SECRET_ARN (runbook.lambda_runtime.db.from_environment); DB_SCHEMA (the
profiles) and DB_USERS_SCHEMA (the outbox) (runbook.lambda_runtime.schemas).
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import db, emails, logs, profiles, registration, trigger
from runbook.lambda_runtime.connection import WarmConnection
from runbook.lambda_runtime.schemas import Schemas

SIGN_UP = "PostConfirmation_ConfirmSignUp"
FORGOT_PASSWORD = "PostConfirmation_ConfirmForgotPassword"
SIGN_IN = "PostAuthentication_Authentication"

# Opened by the first invocation of this container, kept for the next ones.
DATABASE = WarmConnection(os.environ, application_name="post-confirmation")

if os.environ.get("EVENT_BUS_NAME"):
    # Made in the init, as Lambda advises for SDK clients, and not in the trigger's
    # seconds. Should it fail, the first publish tries again, and its failure is the
    # warning that leaves the registration to the relay.
    try:
        registration.events_client()
    except Exception:  # noqa: BLE001 - see above
        pass


class ProfileNotSaved(RuntimeError):
    """The profile could not be written; the message says why, without row values."""


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(request_id=trigger.request_id(context))
    try:
        parsed = trigger.parse(event, (SIGN_UP, FORGOT_PASSWORD, SIGN_IN),
                               required=("sub", "email"))
    except trigger.MalformedEvent as exc:
        log.error("Post-Confirmation event rejected", reason=str(exc))
        raise
    log = log.bind(sub=parsed.require("sub"), trigger_source=parsed.source)
    if parsed.source == SIGN_IN:
        return signed_in(event, parsed, log, started)
    log.info("User confirmation audit", email_domain=emails.domain(parsed.require("email")),
             email_verified=parsed.get("email_verified") == "true",
             user_status=parsed.get("cognito:user_status"), user_pool_id=event.get("userPoolId"))

    user = profiles.new_user(parsed)
    schemas = Schemas.from_environment(os.environ)
    bus = os.environ.get("EVENT_BUS_NAME")
    event_detail = registration.detail(user, email_verified=parsed.get("email_verified") == "true") \
        if bus and registration.should_publish(parsed.source) else None

    def to_outbox(conn) -> None:
        registration.add_to_outbox(conn, event_detail, schema=schemas.users)

    def work(conn) -> profiles.Saved:
        return profiles.write_profile(conn, user, schema=schemas.app, overwrite=parsed.source == SIGN_UP,
                                      also=to_outbox if event_detail else None)

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
    if event_detail:
        publish(log, bus, event_detail, registration.deadline(context, started))
    log.info("Post-Confirmation processing completed", duration_ms=logs.elapsed_ms(started))
    return event


def signed_in(event, parsed, log: logs.Log, started: float):
    """Post-Authentication: the user's profile, linked or created when missing
    (profiles.link_on_sign_in). A failure fails the sign-in, which the user retries:
    a profile that is not linked would leave the app without the user's role."""
    user = profiles.new_user(parsed)
    schema = Schemas.from_environment(os.environ).app
    try:
        saved = DATABASE.run(lambda conn: profiles.link_on_sign_in(conn, user, schema=schema),
                             on_reconnect=lambda exc: log.info(
                                 "Database connection lost; reconnecting",
                                 reason=db.describe(exc)))
    except Exception as exc:  # noqa: BLE001 - logged and raised again, without row values
        reason = db.describe(exc)
        log.error("Post-Authentication processing failed", reason=reason,
                  duration_ms=logs.elapsed_ms(started))
        raise ProfileNotSaved(f"profile not saved: {reason}") from None
    if saved.changed:
        log.info("Profile linked on sign-in" if saved.profile == "linked"
                 else "Profile created on sign-in", profile_id=saved.profile_id,
                 profile=saved.profile, private_profile=saved.private_profile,
                 email_domain=emails.domain(parsed.require("email")))
    log.info("Post-Authentication processing completed", profile_id=saved.profile_id,
             profile=saved.profile, duration_ms=logs.elapsed_ms(started))
    return event


def publish(log: logs.Log, bus: str, event_detail: dict, deadline: float) -> None:
    """Publish the committed registration; a failure is logged, and left to the relay."""
    try:
        event_id = registration.publish(registration.events_client(), bus, event_detail,
                                        deadline=deadline)
    except Exception as exc:  # noqa: BLE001 - the outbox row stays for the relay
        reason = str(exc) if isinstance(exc, registration.PublishFailed) else type(exc).__name__
        # A warning, not an error: nothing is lost, and the relay stores it within
        # minutes. Its count says how often the relay has had to.
        log.warning("Registration not published; the outbox keeps it for the relay",
                    reason=reason, event_bus=bus)
        return
    log.info("Registration published", event_id=event_id, event_bus=bus)
