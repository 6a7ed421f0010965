"""Cognito Pre Sign-up trigger: checks the e-mail address and decides auto-confirmation.

A sign-up is refused by raising: Cognito shows the user "PreSignUp failed with error
<message>.", so the messages are written for the user. A user is confirmed (and the
address verified) without a code only for a domain in AUTO_CONFIRM_DOMAINS; for every
other domain the response says false, whatever the incoming event said.

Environment:
    ALLOWED_EMAIL_DOMAINS  comma-separated domains that may sign up; empty or unset: any
    AUTO_CONFIRM_DOMAINS   comma-separated domains confirmed without a code; empty: none
"""

from __future__ import annotations

import os

from runbook.lambda_runtime import emails, logs, trigger

SOURCES = ("PreSignUp_SignUp", "PreSignUp_AdminCreateUser", "PreSignUp_ExternalProvider")


class SignUpRejected(ValueError):
    """The sign-up is refused; the message is shown to the user."""


def handler(event, context):
    log = logs.Log(request_id=trigger.request_id(context))
    try:
        parsed = trigger.parse(event, SOURCES)
        log = log.bind(trigger_source=parsed.source)
        domain, auto_confirm = check(parsed, os.environ)
    except ValueError as exc:  # SignUpRejected, MalformedEvent
        log.error("Sign-up rejected", reason=str(exc))
        raise

    response = event.get("response")
    if not isinstance(response, dict):
        response = event["response"] = {}
    response["autoConfirmUser"] = auto_confirm
    response["autoVerifyEmail"] = auto_confirm
    response["autoVerifyPhone"] = False  # no phone number is ever verified without a code
    log.info("Sign-up accepted", email_domain=domain, auto_confirm=auto_confirm)
    return event


def check(parsed: trigger.TriggerEvent, environ) -> tuple[str, bool]:
    """The address's domain and whether to auto-confirm; SignUpRejected when refused."""
    address = parsed.get("email")
    if address is None:
        raise SignUpRejected("An e-mail address is required to sign up")
    if not emails.well_formed(address):
        raise SignUpRejected("The e-mail address is not valid")
    domain = emails.domain(address)
    allowed = emails.domains(environ.get("ALLOWED_EMAIL_DOMAINS"))
    if allowed and domain not in allowed:
        raise SignUpRejected(f"Sign-ups with an e-mail address at {domain} are not allowed")
    return domain, domain in emails.domains(environ.get("AUTO_CONFIRM_DOMAINS"))
