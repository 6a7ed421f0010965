"""Structured log lines for the Lambda handlers: one JSON object per line on stdout.

Lambda sends each line a function prints to CloudWatch Logs, and Logs Insights reads
a JSON line as fields (`filter sub = "..."`). A `Log` carries the fields of one
invocation (sub, trigger source, request id) into every line it writes.

Callers pass no password, token or whole e-mail address; as a last guard, every line
goes through `redact_emails` before it is written, so an address that reached a
message (in a PostgreSQL error, say) is withheld even then.
"""

from __future__ import annotations

import json
import sys
import time

from runbook.lambda_runtime.db import redact_emails

_LINE_BREAKS = {code: f"\\u{code:04x}" for code in (0x85, 0x2028, 0x2029)}
# One encoder for every line: json.dumps with options builds a new JSONEncoder per call,
# a third of a short line's cost.
_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode
_LEVELS = ("level", "message")


def elapsed_ms(started: float) -> int:
    """Milliseconds since `started`, a time.monotonic() reading: a line's duration_ms."""
    return round((time.monotonic() - started) * 1000)


class Log:
    """The lines of one invocation. The bound fields are encoded once, by `bind`, and
    each line encodes only its message and its own fields: a line is the JSON object
    {"level", "message", bound fields..., line fields...}, as json.dumps writes it. A line
    field with a bound field's name (or "level", "message") replaces that field's value
    in its place, as a dict update would."""

    def __init__(self, **fields):
        self.fields = fields
        # ', "sub": "...", "trigger_source": "..."', or "" with no fields; None when a
        # bound field is named "level" or "message", which every line then merges.
        self._encoded = None if not fields.keys().isdisjoint(_LEVELS) else \
            f", {_ENCODE(fields)[1:-1]}" if fields else ""

    def bind(self, **fields) -> "Log":
        """A Log that adds `fields` to every line."""
        return Log(**{**self.fields, **fields})

    def info(self, message: str, **fields) -> None:
        self._write("INFO", message, fields)

    def warning(self, message: str, **fields) -> None:
        self._write("WARNING", message, fields)

    def error(self, message: str, **fields) -> None:
        self._write("ERROR", message, fields)

    def line(self, level: str, message: str, fields: dict) -> str:
        """The JSON object of one line, before the guards of `_write`."""
        if self._encoded is None or fields and (not fields.keys().isdisjoint(self.fields)
                                                or not fields.keys().isdisjoint(_LEVELS)):
            return _ENCODE({"level": level, "message": message, **self.fields, **fields})
        own = f", {_ENCODE(fields)[1:]}" if fields else "}"
        return f'{{"level": {_ENCODE(level)}, "message": {_ENCODE(message)}{self._encoded}{own}'

    def _write(self, level: str, message: str, fields: dict) -> None:
        line = self.line(level, message, fields)
        # ensure_ascii=False keeps names readable but leaves two kinds of character raw
        # that break the line: a lone surrogate (an event may carry "\ud800") cannot be
        # encoded for a UTF-8 stdout (UnicodeEncodeError, raised from the handler), and
        # U+0085, U+2028 and U+2029 end a line for str.splitlines, so a reader such as the
        # local invoker saw two halves of a JSON object. Both are written as JSON escapes.
        # (An ASCII line, nearly every one, holds neither.)
        if not line.isascii():
            line = line.translate(_LINE_BREAKS).encode("utf-8", "backslashreplace").decode(
                "utf-8")
        # One write per line: the lines of concurrent threads do not interleave.
        sys.stdout.write(redact_emails(line) + "\n")
        sys.stdout.flush()
