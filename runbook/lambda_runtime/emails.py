"""E-mail addresses as the sign-up triggers check them: the shape, and the domain.

The shape check is deliberately plain (one @, a dotted domain of DNS labels, no spaces
or quoting): Cognito sends the confirmation code to the address, which is the real
check. It only turns away what can never receive that mail.
"""

from __future__ import annotations

import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Any address inside a longer text (a handler's result, an error message, a log line).
# The look-behind starts a match only where a run of address characters starts. Without
# it, a long run with no @ in it (a 40,000-character attribute) was rescanned from each of
# its positions: quadratic, 9 s for one log line.
IN_TEXT = re.compile(r"(?<![\w.+-])(?P<local>[\w.+-]+)@(?P<domain>(?:[\w-]+\.)+[\w-]+)")
_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    rf"@(?P<domain>(?:{_LABEL}\.)+{_LABEL})")


def well_formed(address: str) -> bool:
    """Whether `address` looks like local@example.com (at most 254 characters)."""
    match = _ADDRESS.fullmatch(address)
    return bool(match) and len(address) <= 254 and len(match["local"]) <= 64


def domain(address: str) -> str:
    """The lower-cased domain of an address: what the handlers may log of it."""
    return address.rpartition("@")[2].strip().lower()


def domains(setting: str | None) -> frozenset[str]:
    """The domains in a comma-separated setting ('example.com, @Example.org'), lower-cased."""
    return frozenset(part.strip().lstrip("@").lower() for part in (setting or "").split(",")
                     if part.strip().lstrip("@"))


def mask(text: str) -> str:
    """`text` with every e-mail address masked to its first character and its domain
    (lena.maier@example.com -> l***@example.com): enough to tell users apart in output
    an operator reads, never the whole address."""
    return IN_TEXT.sub(lambda m: f"{m['local'][0]}***@{m['domain'].lower()}", text)
