"""Whether each IAM-only role of `database.roles` holds what it should and nothing more,
as PostgreSQL itself answers it (the integration test's `database_grants` check).

fix-tables converges the roles with runbook.lambda_runtime.dbroles, which reads the ACL
columns and compares them with what it wants. Asking that same reading whether it worked
would prove nothing, so this module asks the questions the issue names instead:
`has_table_privilege`, `has_column_privilege`, `has_sequence_privilege` and
`has_schema_privilege` (what the role can actually do, through PUBLIC and the roles it
belongs to as well), `information_schema.role_table_grants` and `role_column_grants` (what
was granted to it directly, and WITH GRANT OPTION), `pg_default_acl` (what tables and
sequences created later will give it) and `pg_has_role(role, 'rds_iam', 'MEMBER')`.

What a role should hold follows from the file and the code, not from dbroles:

  write: [app, audit]   USAGE on each schema; INSERT, UPDATE and DELETE on each of its
                        tables and USAGE on each of its sequences; the same as default
                        privileges FOR ROLE the migrations' owner (the login that runs
                        fix-tables); and no SELECT. The statements that need SELECT on
                        their conflict columns (a targeted ON CONFLICT, AWS-FACTS B.8) are
                        the triggers', which declare those columns in their PRIVILEGES.
  trigger: <function>   USAGE on the schemas of its tables and exactly the trigger's
                        column privileges (runbook.lambda_runtime.dbroles.
                        TRIGGER_PRIVILEGES), each on the schema that holds the table
                        (runbook.lambda_runtime.schemas); a privilege declared with no
                        columns (DELETE) is table-level. A role with both gets the column
                        privileges its write grants do not already cover: the SELECTs.
                        And EXECUTE on the trigger's routine (TRIGGER_FUNCTIONS), and
                        on no other of runbook's routines (schemas.FUNCTIONS), whether
                        its own grant or PUBLIC's.

Anything else the role can do on a table, a column or a sequence of any schema but the
system ones (the ledger's `runbook` schema included), CREATE on a schema, any default
privilege, any routine granted to it directly, any grant option and any role
attribute beyond LOGIN (CREATEROLE, say) is a finding. (EXECUTE that PUBLIC holds on
other functions, as PostgreSQL gives it by default, is not: it grants nothing on a
table.) USAGE on a schema it was not given is not: PostgreSQL gives everyone USAGE
on `public`, and USAGE alone touches no table.

The grant views show only grants made by or to a role the checking login belongs to
(the master user on RDS is not a superuser); the has_*_privilege functions have no such
limit and decide. Findings name a role, an object and a privilege, never a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

from runbook.lambda_runtime.dbroles import TRIGGER_FUNCTIONS, TRIGGER_PRIVILEGES
from runbook.lambda_runtime.schemas import FUNCTIONS, Schemas

WRITE = ("INSERT", "UPDATE", "DELETE")
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
COLUMN_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "REFERENCES")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")
# Every schema but PostgreSQL's own: pg_catalog and information_schema are readable by
# everyone, and pg_toast/pg_temp_* hold no table of the app.
USER_SCHEMAS = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"
# Role attributes that give more than logging in; none is declared.
ATTRIBUTES = {"rolsuper": "SUPERUSER", "rolcreaterole": "CREATEROLE", "rolcreatedb": "CREATEDB",
              "rolreplication": "REPLICATION", "rolbypassrls": "BYPASSRLS"}
DEFAULT_KINDS = {"r": "tables", "S": "sequences", "f": "functions", "T": "types",
                 "n": "schemas"}


class Grant(NamedTuple):
    """One privilege on one object. kind: schema | table | column | sequence | function |
    default.

    For `default`, `name` is the object type (tables, sequences, ...) and `owner` the
    role whose future objects it applies to; `schema` is None for all schemas.
    """

    kind: str
    schema: str | None
    name: str | None
    privilege: str
    column: str | None = None
    owner: str | None = None

    def where(self) -> str:
        """The object, as a finding names it."""
        if self.kind == "schema":
            return f"schema {self.schema}"
        if self.kind == "default":
            return (f"future {self.name} of {self.owner} in "
                    + (f"schema {self.schema}" if self.schema else "every schema"))
        if self.kind == "column":
            return f"{self.schema}.{self.name}({self.column})"
        if self.kind == "sequence":
            return f"sequence {self.schema}.{self.name}"
        if self.kind == "function":  # a function or a procedure
            return f"routine {self.schema}.{self.name}"
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, order=True)
class Finding:
    """One way a role differs from its declaration: `missing` or `extra`."""

    role: str
    problem: str
    privilege: str
    object: str

    def __str__(self) -> str:
        if self.problem == "missing":
            return f"{self.role} lacks {self.privilege} on {self.object}"
        return f"{self.role} holds {self.privilege} on {self.object}, which is not declared"


@dataclass
class Held:
    """What PostgreSQL says one role can do in the connected database.

    `columns` holds column privileges only where the role lacks the same privilege on
    the whole table (has_column_privilege is true for every column then).
    """

    role: str
    exists: bool = False
    login: bool = False
    rds_iam: bool | None = None        # None: there is no rds_iam role
    attributes: tuple[str, ...] = ()   # of ATTRIBUTES, those it has
    tables: set[Grant] = field(default_factory=set)
    columns: set[Grant] = field(default_factory=set)
    sequences: set[Grant] = field(default_factory=set)
    functions: set[Grant] = field(default_factory=set)   # runbook's functions only
    schemas: set[Grant] = field(default_factory=set)
    defaults: set[Grant] = field(default_factory=set)
    granted: set[Grant] = field(default_factory=set)     # the grant views' rows
    grantable: set[Grant] = field(default_factory=set)   # of those, WITH GRANT OPTION


@dataclass
class Snapshot:
    """The roles as read, and the relations of the database (schema -> names)."""

    owner: str
    roles: dict[str, Held]
    tables: dict[str, list[str]]
    sequences: dict[str, list[str]]


# -- reading (I/O, read-only) -------------------------------------------------------------

def read(conn, names, *, owner: str | None = None) -> Snapshot:
    """Ask PostgreSQL about each role in `names`. `owner`: the login that runs the
    migrations and so creates the tables later (default: the current user, which is
    that login wherever runbook logs in as the master user)."""
    if owner is None:
        owner = conn.execute("SELECT current_user").fetchone()[0]
    tables: dict[str, list[str]] = {}
    sequences: dict[str, list[str]] = {}
    # pg_class, not information_schema.tables: that view hides the tables the checking
    # login has no privilege on, which would then pass unchecked.
    for schema, name, kind in conn.execute(f"""
            SELECT n.nspname, c.relname, c.relkind
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'S') AND {USER_SCHEMAS} ORDER BY 1, 2""").fetchall():
        (sequences if kind == "S" else tables).setdefault(schema, []).append(name)
    return Snapshot(owner, {name: read_role(conn, name) for name in names}, tables, sequences)


# What the role can do, object by object: each query yields (schema, name, privilege)
# and, for columns, the column. %(role)s and the privilege lists are parameters.
RELATIONS = "c.relkind IN ('r', 'p', 'v', 'm', 'f')"
CAN = {
    "table": f"""
        SELECT n.nspname, c.relname, p.privilege
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
               unnest(%(table)s::text[]) p(privilege)
         WHERE {RELATIONS} AND {USER_SCHEMAS}
           AND has_table_privilege(%(role)s, c.oid, p.privilege)""",
    "column": f"""
        SELECT n.nspname, c.relname, p.privilege, a.attname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped,
               unnest(%(column)s::text[]) p(privilege)
         WHERE {RELATIONS} AND {USER_SCHEMAS}
           AND NOT has_table_privilege(%(role)s, c.oid, p.privilege)
           AND has_column_privilege(%(role)s, c.oid, a.attnum, p.privilege)""",
    "sequence": f"""
        SELECT n.nspname, c.relname, p.privilege
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
               unnest(%(sequence)s::text[]) p(privilege)
         WHERE c.relkind = 'S' AND {USER_SCHEMAS}
           AND has_sequence_privilege(%(role)s, c.oid, p.privilege)""",
    "schema": f"""
        SELECT n.nspname, NULL, p.privilege
          FROM pg_namespace n, unnest(ARRAY['USAGE', 'CREATE']) p(privilege)
         WHERE {USER_SCHEMAS} AND has_schema_privilege(%(role)s, n.oid, p.privilege)""",
    "function": f"""
        SELECT DISTINCT n.nspname, f.proname, 'EXECUTE'
          FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
         WHERE {USER_SCHEMAS} AND f.proname = ANY(%(functions)s)
           AND has_function_privilege(%(role)s, f.oid, 'EXECUTE')""",
}
# Default privileges that name the role, whoever's future objects they are for.
DEFAULTS = """
    SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype::text, a.privilege_type
      FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace,
           aclexplode(d.defaclacl) a
     WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)"""


def read_role(conn, role: str) -> Held:
    row = conn.execute(f"SELECT rolcanlogin, {', '.join(ATTRIBUTES)} FROM pg_roles "
                       "WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        return Held(role)
    held = Held(role, exists=True, login=row[0],
                attributes=tuple(a for a, has in zip(ATTRIBUTES.values(), row[1:]) if has))
    if conn.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam')"
                    ).fetchone()[0]:
        held.rds_iam = conn.execute("SELECT pg_has_role(%s, 'rds_iam', 'MEMBER')",
                                    (role,)).fetchone()[0]
    args = {"role": role, "table": list(TABLE_PRIVILEGES), "column": list(COLUMN_PRIVILEGES),
            "sequence": list(SEQUENCE_PRIVILEGES), "functions": list(FUNCTIONS)}
    can = {kind: {Grant(kind, *row) for row in conn.execute(query, args).fetchall()}
           for kind, query in CAN.items()}
    held.tables, held.columns = can["table"], can["column"]
    held.sequences, held.schemas = can["sequence"], can["schema"]
    held.functions = can["function"]
    held.defaults = {Grant("default", schema, DEFAULT_KINDS.get(kind, kind), privilege,
                           owner=owner)
                     for owner, schema, kind, privilege in conn.execute(DEFAULTS, args).fetchall()}
    _read_grant_views(conn, held)
    return held


def _read_grant_views(conn, held: Held) -> None:
    """The role's direct grants as the information schema lists them. role_column_grants
    repeats a table-level grant for every column: those rows are the table's."""
    tables = conn.execute("""
        SELECT table_schema, table_name, privilege_type, is_grantable = 'YES'
          FROM information_schema.role_table_grants WHERE grantee = %s""",
                          (held.role,)).fetchall()
    whole = {(schema, table, privilege) for schema, table, privilege, _ in tables}
    for schema, table, privilege, grantable in tables:
        grant = Grant("table", schema, table, privilege)
        held.granted.add(grant)
        if grantable:
            held.grantable.add(grant)
    for schema, table, column, privilege, grantable in conn.execute("""
            SELECT table_schema, table_name, column_name, privilege_type, is_grantable = 'YES'
              FROM information_schema.role_column_grants WHERE grantee = %s""",
                                                                     (held.role,)).fetchall():
        if (schema, table, privilege) in whole:
            continue
        grant = Grant("column", schema, table, privilege, column)
        held.granted.add(grant)
        if grantable:
            held.grantable.add(grant)
    for schema, function, privilege, grantable in conn.execute("""
            SELECT DISTINCT routine_schema, routine_name, privilege_type, is_grantable = 'YES'
              FROM information_schema.role_routine_grants WHERE grantee = %s""",
                                                               (held.role,)).fetchall():
        grant = Grant("function", schema, function, privilege)
        held.granted.add(grant)
        if grantable:
            held.grantable.add(grant)


# -- comparing (pure) -----------------------------------------------------------------------

def expected(spec, snapshot: Snapshot, *, schemas: Schemas) -> set[Grant]:
    """What role `spec` should hold, given the relations that exist now. `schemas`: where
    the triggers' tables are (database.schema, users_schema, audit_schema)."""
    want: set[Grant] = set()
    for name in spec.write:
        want.add(Grant("schema", name, None, "USAGE"))
        for table in snapshot.tables.get(name, []):
            want.update(Grant("table", name, table, p) for p in WRITE)
        for sequence in snapshot.sequences.get(name, []):
            want.add(Grant("sequence", name, sequence, "USAGE"))
        want.update(Grant("default", name, "tables", p, owner=snapshot.owner) for p in WRITE)
        want.add(Grant("default", name, "sequences", "USAGE", owner=snapshot.owner))
    if spec.trigger in TRIGGER_PRIVILEGES:
        want |= trigger_grants(spec.trigger, schemas)
    whole = {(g.schema, g.name, g.privilege) for g in want if g.kind == "table"}
    return {g for g in want
            if not (g.kind == "column" and (g.schema, g.name, g.privilege) in whole)}


def trigger_grants(trigger: str, schemas: Schemas) -> set[Grant]:
    """The privileges a trigger's statements need, as its PRIVILEGES declare them, and
    EXECUTE on the routine they are (TRIGGER_FUNCTIONS), with USAGE on the schemas of
    their tables and routine."""
    want: set[Grant] = set()
    for table, declared in TRIGGER_PRIVILEGES[trigger].items():
        schema = schemas.of(table)
        want.add(Grant("schema", schema, None, "USAGE"))
        for privilege, columns in declared.items():
            if not columns:  # DELETE has no column form
                want.add(Grant("table", schema, table, privilege))
            want.update(Grant("column", schema, table, privilege, c) for c in columns)
    for function in TRIGGER_FUNCTIONS[trigger]:
        schema = schemas.of(function)
        want.add(Grant("schema", schema, None, "USAGE"))
        want.add(Grant("function", schema, function, "EXECUTE"))
    return want


def findings(snapshot: Snapshot, roles: Mapping, *, schemas: Schemas) -> list[Finding]:
    """Each declared role's differences from its declaration, sorted; [] when all hold
    exactly what they should."""
    out: set[Finding] = set()
    for name, spec in roles.items():
        out.update(_role_findings(snapshot.roles[name],
                                  expected(spec, snapshot, schemas=schemas)))
    return sorted(out)


def _role_findings(held: Held, want: set[Grant]) -> set[Finding]:
    role = held.role
    if not held.exists:
        return {Finding(role, "missing", "LOGIN", f"role {role} (it does not exist)")}
    out: set[Finding] = set()
    if not held.login:
        out.add(Finding(role, "missing", "LOGIN", f"role {role}"))
    out.update(Finding(role, "extra", attribute, f"role {role}") for attribute in held.attributes)
    if not held.rds_iam:
        gone = " (there is no rds_iam role)" if held.rds_iam is None else ""
        out.add(Finding(role, "missing", "MEMBER", f"role rds_iam{gone}"))

    def finding(problem: str, grant: Grant) -> Finding:
        return Finding(role, problem, grant.privilege, grant.where())

    whole = {(g.schema, g.name, g.privilege) for g in held.tables}
    can = held.tables | held.columns | held.sequences | held.functions | held.schemas \
        | held.defaults
    for grant in want:
        covered = grant.kind == "column" and (grant.schema, grant.name, grant.privilege) in whole
        if grant not in can and not covered:
            out.add(finding("missing", grant))
    # USAGE on a schema touches nothing by itself, and PUBLIC holds it on `public`.
    unwanted = {g for g in can | held.granted
                if g not in want and not (g.kind == "schema" and g.privilege == "USAGE")}
    out.update(finding("extra", g) for g in unwanted)
    out.update(finding("extra", g._replace(privilege=f"{g.privilege} WITH GRANT OPTION"))
               for g in held.grantable)
    return out


def verify(conn, roles: Mapping, *, schemas: Schemas,
           owner: str | None = None) -> list[Finding]:
    """Read, then compare: [] when every role in `roles` (database.roles) holds exactly
    what it should."""
    return findings(read(conn, roles, owner=owner), roles, schemas=schemas)


# -- the report's detail line ------------------------------------------------------------------

def summary(snapshot: Snapshot, roles: Mapping, *, schemas: Schemas) -> str:
    """What each role may do, in a line, once `findings` found nothing: `lambda_writer:
    INSERT/UPDATE/DELETE on app, audit (3 tables, 1 sequence), no SELECT, as declared;
    matbakh_post_confirmation: 25 column privileges of post-confirmation, SELECT on 8
    columns only, as declared`. Schema names and counts only."""
    parts = []
    for name, spec in roles.items():
        said = []
        if spec.write:
            tables = sum(len(snapshot.tables.get(s, [])) for s in spec.write)
            sequences = sum(len(snapshot.sequences.get(s, [])) for s in spec.write)
            said.append(f"{'/'.join(WRITE)} on {', '.join(spec.write)} "
                        f"({_count(tables, 'table')}, {_count(sequences, 'sequence')})")
        # The trigger's privileges that the write grants do not already give.
        declared = {g for g in expected(spec, snapshot, schemas=schemas)
                    if g.kind == "column" or (g.kind == "table" and not (
                        g.schema in spec.write and g.privilege in WRITE))} \
            if spec.trigger else set()
        if declared:
            columns = sum(g.kind == "column" for g in declared)
            whole = sorted(f"{g.privilege} on {g.name}" for g in declared if g.kind == "table")
            said.append(f"{_count(columns, 'column privilege')}"
                        + (f" and {', '.join(whole)}" if whole else "")
                        + f" of {spec.trigger}")
        reads = sum(g.privilege == "SELECT" for g in declared)
        said.append(f"SELECT on {_count(reads, 'column')} only" if reads else "no SELECT")
        parts.append(f"{name}: {', '.join(said)}, as declared")
    return "; ".join(parts) or "no database role is declared"


def describe(found: list[Finding], *, limit: int = 5) -> str:
    """The findings in a line, for a failed check: the first `limit`, and how many more."""
    shown = "; ".join(str(f) for f in found[:limit])
    more = len(found) - limit
    verb = "differs" if len(found) == 1 else "differ"
    return (f"{_count(len(found), 'grant')} {verb} from database.roles: {shown}"
            + (f"; and {more} more" if more > 0 else ""))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
