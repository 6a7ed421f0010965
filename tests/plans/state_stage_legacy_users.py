"""Step stage-legacy-users' plan cases: {"rows": [<runbook.legacy.source.Row>, ...]
(auth.users joined with public.profiles, as read), "stored": [{"email", "hash",
"profile"}, ...] (the items the table holds for those addresses)}."""

from __future__ import annotations

from runbook.lambda_runtime.legacy_hashes import LegacyHash
from runbook.legacy.source import Row


def state(step, data: dict):
    rows = [Row(**row) for row in data.get("rows", [])]
    stored = [LegacyHash(**item) for item in data.get("stored", [])]
    return step.state(rows, stored, source="$LEGACY_DATABASE_URL")
