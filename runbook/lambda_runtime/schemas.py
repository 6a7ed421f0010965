"""Where the app's tables live: three schemas, so that a role may write whole schemas
without touching the profiles.

  app     profiles, private_profiles    the Supabase-era schema (database.schema,
                                        default public), written by Post-Confirmation
  users   users, registration_outbox    the event path's tables (database.users_schema,
                                        default app), written by process-user-signup
  audit   registrations                 one row per user the event path stored
                                        (database.audit_schema, default audit)

Migration 0006 moves `users` and `registration_outbox` out of the app schema, where
0003 and 0005 made them, and creates `registrations`. The functions learn the names from
their environment (DB_SCHEMA, DB_USERS_SCHEMA, DB_AUDIT_SCHEMA), and fix-tables grants
each role its privileges on the tables where they are (runbook.lambda_runtime.dbroles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# table -> which of the three schemas holds it
TABLES = {
    "profiles": "app",
    "private_profiles": "app",
    "users": "users",
    "registration_outbox": "users",
    "registrations": "audit",
}
# function -> which schema holds it: the triggers' writes (templates/sql/0007, 0008), each
# beside the tables it writes first
FUNCTIONS = {
    "write_profile": "app",
    "store_signups": "users",
}
ENVIRONMENT = {"app": "DB_SCHEMA", "users": "DB_USERS_SCHEMA", "audit": "DB_AUDIT_SCHEMA"}


@dataclass(frozen=True)
class Schemas:
    app: str = "public"
    users: str = "app"
    audit: str = "audit"

    def of(self, name: str) -> str:
        """The schema that holds `name`, a table (one of TABLES) or a function (FUNCTIONS)."""
        return getattr(self, TABLES.get(name) or FUNCTIONS[name])

    @property
    def environment(self) -> dict[str, str]:
        """The functions' environment variables that name the schemas."""
        return {variable: getattr(self, key) for key, variable in ENVIRONMENT.items()}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "Schemas":
        """The schemas a function's environment names; the defaults where it names none."""
        default = cls()
        return cls(**{key: environ.get(variable) or getattr(default, key)
                      for key, variable in ENVIRONMENT.items()})

    def as_dict(self) -> dict[str, str]:
        return {"app": self.app, "users": self.users, "audit": self.audit}
