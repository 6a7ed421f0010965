"""Versioned SQL migrations on runbook's side: render them, check them against the
ledger, and explain what is wrong in the operator's terms.

A migration is a jinja2 template `templates/sql/NNNN_name.sql.j2`, rendered with values
from the environment file (the schema, the role names). Its checksum is the sha256 of
the rendered SQL, so the database records exactly what ran. An applied migration whose
rendering has changed is an error, never a silent re-run: migrations are append-only.

Rendering stays here, where the templates are. What happens in the database (the
ledger, the advisory lock, one migration and its ledger row in one transaction) is in
runbook.lambda_runtime.ledger, which the db_migrate function runs too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from runbook.errors import BadInput
from runbook.lambda_runtime import ledger
from runbook.lambda_runtime.ledger import Applied, quote_ident

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "sql"
FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql\.j2$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str = field(repr=False)
    checksum: str = ""

    @property
    def filename(self) -> str:
        return self.path.name


class MigrationEdited(BadInput):
    def __init__(self, migration: Migration, applied: Applied):
        super().__init__(
            f"{_shown(migration.path)} was changed after it was applied on "
            f"{applied.applied_at:%Y-%m-%d %H:%M} UTC (recorded sha256 {applied.checksum[:12]}, "
            f"now {migration.checksum[:12]}). It was not re-run, and nothing was changed. "
            "Applied migrations are append-only: restore the file (and the environment-file "
            "values it renders, such as database.schema) and put the change in a new migration."
        )


def load(params: dict, directory: Path | None = None) -> list[Migration]:
    """Every migration in `directory` (templates/sql), rendered with `params`, in order."""
    import jinja2

    directory = directory or TEMPLATES
    if not directory.is_dir():
        raise BadInput(f"migrations directory {directory} does not exist; runbook is "
                       "installed without its templates/ folder")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(directory),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["ident"] = quote_ident
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql.j2")):
        match = FILENAME.match(path.name)
        if not match:
            raise BadInput(f"{_shown(path)}: a migration is named NNNN_name.sql.j2 "
                           "(four digits, then lower-case letters, digits and _)")
        version = int(match.group(1))
        if version in migrations:
            raise BadInput(f"{_shown(path)} and {migrations[version].filename} share version "
                           f"{version:04d}; give one of them the next free number")
        try:
            sql = env.get_template(path.name).render(**params)
        except jinja2.TemplateSyntaxError as exc:
            raise BadInput(f"{_shown(path)}:{exc.lineno}: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise BadInput(f"{_shown(path)}: {exc.message}; the template may use only "
                           f"{', '.join(sorted(params))}") from None
        migrations[version] = Migration(version, match.group(2), path, sql, ledger.checksum(sql))
    return [migrations[v] for v in sorted(migrations)]


def check(migrations: list[Migration], applied: dict[int, Applied]) -> list[Migration]:
    """The pending migrations. Raises when an applied one was edited or is missing."""
    by_version = {m.version: m for m in migrations}
    try:
        return [by_version[v] for v in ledger.pending(
            {m.version: m.checksum for m in migrations}, applied)]
    except ledger.Unknown as exc:
        record = exc.recorded
        raise BadInput(f"the database records migration {record.version:04d}_{record.name}, "
                       f"which is not in {_shown(TEMPLATES)}: this runbook is older than the "
                       "database. Update runbook before running fix-tables.") from None
    except ledger.Edited as exc:
        raise MigrationEdited(by_version[exc.recorded.version], exc.recorded) from None


def apply(conn, migration: Migration) -> bool:
    """Apply `migration` with its ledger row (ledger.apply); hold the lock first."""
    try:
        return ledger.apply(conn, migration.version, migration.name, migration.sql,
                            migration.checksum)
    except ledger.Edited as exc:
        raise MigrationEdited(migration, exc.recorded) from None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        pass
    try:
        return str(path.relative_to(TEMPLATES.parent.parent))
    except ValueError:
        return str(path)
