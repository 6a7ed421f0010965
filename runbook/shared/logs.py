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

from runbook.shared.db import redact_emails


class Log:
    def __init__(self, **fields):
        self.fields = fields

    def bind(self, **fields) -> "Log":
        """A Log that adds `fields` to every line."""
        return Log(**{**self.fields, **fields})

    def info(self, message: str, **fields) -> None:
        self._write("INFO", message, fields)

    def error(self, message: str, **fields) -> None:
        self._write("ERROR", message, fields)

    def _write(self, level: str, message: str, fields: dict) -> None:
        line = json.dumps({"level": level, "message": message, **self.fields, **fields},
                          default=str, ensure_ascii=False)
        # One write per line: the lines of concurrent threads do not interleave.
        sys.stdout.write(redact_emails(line) + "\n")
        sys.stdout.flush()
