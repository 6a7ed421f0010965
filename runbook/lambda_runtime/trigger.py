"""Reading a Cognito trigger event: its source and user attributes, checked once.

Cognito sends every user attribute as a string, in `request.userAttributes`. A handler
parses the event before it does anything else, so that a malformed one (a test event
typed by hand, a trigger attached to the wrong function) is refused with
`MalformedEvent`, naming the field, before anything is written.

An attribute must also be text PostgreSQL can store: no NUL (text columns refuse it) and
no lone surrogate (UTF-8 cannot encode it; JSON admits one as "\\ud800"). Refusing them at
Pre-SignUp keeps a user from being confirmed whose profile Post-Confirmation could never
write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Collection, Mapping


_NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")


class MalformedEvent(ValueError):
    """The event lacks a field the handler needs, or a field has the wrong type."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"malformed Cognito event: {field} {problem}")


@dataclass(frozen=True)
class TriggerEvent:
    source: str                    # triggerSource, e.g. PostConfirmation_ConfirmSignUp
    attributes: Mapping[str, str]  # request.userAttributes

    def get(self, name: str) -> str | None:
        """An attribute's value with surrounding spaces removed; None when absent or blank."""
        value = self.attributes.get(name, "").strip()
        return value or None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise MalformedEvent(f"request.userAttributes.{name}",
                                 "is missing" if name not in self.attributes else "is empty")
        return value


def parse(event, sources: Collection[str], *, required: Collection[str] = ()) -> TriggerEvent:
    """The event's trigger source (one of `sources`) and user attributes.

    Raises MalformedEvent when the source is another one, when `request.userAttributes`
    is not an object of strings PostgreSQL can store, or when an attribute in `required`
    is missing or blank.
    """
    if not isinstance(event, dict):
        raise MalformedEvent("the event", f"is a {type(event).__name__}, not an object")
    source = event.get("triggerSource")
    if not isinstance(source, str) or source not in sources:
        shown = repr(source)[:80] if source is not None else "missing"
        raise MalformedEvent("triggerSource", f"is {shown}; this function handles "
                                              f"{', '.join(sorted(sources))}")
    request = event.get("request")
    if not isinstance(request, dict):
        raise MalformedEvent("request", "is missing or not an object")
    attributes = request.get("userAttributes")
    if not isinstance(attributes, dict):
        raise MalformedEvent("request.userAttributes", "is missing or not an object")
    try:
        # Nearly every event is good: one scan of all the values says so. Only a value
        # that is not a string, or a character that cannot be stored, needs the loop
        # below, which names the attribute.
        suspect = _NOT_STORABLE.search("".join(attributes.values())) is not None
    except TypeError:  # a value that is not a string
        suspect = True
    for name, value in attributes.items() if suspect else ():
        if not isinstance(value, str):
            raise MalformedEvent(f"request.userAttributes.{name}",
                                 f"is a {type(value).__name__}, not a string")
        bad = _NOT_STORABLE.search(value)
        if bad:
            what = "a NUL character" if bad[0] == "\x00" else \
                f"a lone surrogate (U+{ord(bad[0]):04X})"
            raise MalformedEvent(f"request.userAttributes.{name}",
                                 f"contains {what}, which PostgreSQL text cannot hold")
    parsed = TriggerEvent(source, dict(attributes))
    for name in required:
        parsed.require(name)
    return parsed


def request_id(context) -> str | None:
    """The Lambda request id of an invocation (None for a context without one)."""
    return getattr(context, "aws_request_id", None)
