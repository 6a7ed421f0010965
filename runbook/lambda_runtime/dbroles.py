"""Database roles that log in by IAM only, converged to what the environment file says.

Each role in `database.roles` exists with LOGIN and no password and is a member of
`rds_iam` (created as a NOLOGIN role where it is missing, which is the case outside
RDS). Its privileges in the current database are exactly the declared ones:

  write: [app, audit]           USAGE on each schema; INSERT, UPDATE, DELETE on its
                                tables and USAGE on its sequences, but no SELECT; the
                                same as default privileges FOR ROLE the migrations'
                                owner (the login converging), for the tables it creates
                                there later
  trigger: post-confirmation    the column privileges of the trigger's upsert and its
                                outbox row (runbook.lambda_runtime.profiles.PRIVILEGES,
                                registration.PRIVILEGES)
  trigger: process-user-signup  the column privileges of the SQS consumer's insert and
                                audit row, and of reading and deleting outbox rows
                                (runbook.lambda_runtime.signups.PRIVILEGES)

and a trigger's role EXECUTE on the routine (function or procedure) its writes are
(TRIGGER_FUNCTIONS, templates/sql/0007, 0008), which runs with the caller's privileges: the
column privileges above still decide what it may do. The migration takes EXECUTE from
PUBLIC.

A trigger's privileges are on the schema that holds each table and function
(runbook.lambda_runtime.schemas). A role may have both: `write` for whole schemas, and
`trigger` for the SELECT on the columns its statements read (a targeted ON CONFLICT needs
it), which a write-only grant does not give.

Whatever else the role holds in a non-system schema is revoked, whoever granted it, so
removing a schema from the file revokes its grants. Privileges the role inherits from
other roles or from PUBLIC are not its own, and are left alone. Reading makes no change;
`statements` gives the SQL that closes the gap, and is empty once the role has converged.

runbook connecting directly and the db_migrate function inside the VPC both converge
roles with this module (`read_gap`, `ensure_rds_iam`, `converge`). A role spec is any
object with `write` (schema names) and `trigger` (None or a key of TRIGGER_PRIVILEGES).

TLS is not a role setting: `ALTER ROLE … SET rds.force_ssl = 1` is accepted by plain
PostgreSQL as a placeholder and does nothing, and on Aurora rds.force_ssl is a cluster
parameter. Step `database` enforces TLS with the cluster's parameter group instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from runbook.lambda_runtime import profiles, registration, signups
from runbook.lambda_runtime.ledger import quote_ident
from runbook.lambda_runtime.schemas import Schemas

WRITE = ("INSERT", "UPDATE", "DELETE")
SYSTEM_SCHEMAS = "n.nspname NOT IN ('information_schema', 'runbook') AND n.nspname NOT LIKE 'pg\\_%%'"


class Priv(NamedTuple):
    """One privilege. kind: schema | table | sequence | column | function (a function or
    a procedure: a routine) | default.

    For `default`, `name` is the object type (tables, sequences) the default applies to
    in `schema`, for objects runbook's login creates.
    """

    kind: str
    schema: str
    name: str | None
    privilege: str
    column: str | None = None

    def label(self) -> str:
        where = {"schema": f"schema {self.schema}",
                 "default": f"future {self.name} in {self.schema}",
                 "column": f"{self.schema}.{self.name}({self.column})",
                 "function": f"routine {self.schema}.{self.name}"}.get(
            self.kind, f"{self.schema}.{self.name}")
        return f"{self.privilege} on {where}"


@dataclass
class RoleState:
    name: str
    exists: bool = False
    login: bool = False
    rds_iam_member: bool = False
    privileges: set[Priv] = field(default_factory=set)
    grantors: dict[Priv, set[str]] = field(default_factory=dict)
    me: str = ""                  # the login converging it (current_user)


@dataclass
class Desired:
    name: str
    schemas_to_create: list[str]
    privileges: set[Priv]


def create_role(name: str, *, login: bool) -> str:
    """CREATE ROLE that tolerates a concurrent run creating it first (roles are
    server-wide, so the advisory lock, which is per database, does not cover them)."""
    return (f"DO $$ BEGIN CREATE ROLE {quote_ident(name)} {'LOGIN' if login else 'NOLOGIN'}; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$")


def read_rds_iam(conn) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam')"
                        ).fetchone()[0]


def read_role(conn, name: str) -> RoleState:
    row = conn.execute(
        """SELECT r.rolcanlogin,
                  EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                           WHERE m.member = r.oid AND g.rolname = 'rds_iam')
             FROM pg_roles r WHERE r.rolname = %s""", (name,)).fetchone()
    me = conn.execute("SELECT current_user").fetchone()[0]
    if row is None:
        return RoleState(name, me=me)
    state = RoleState(name, True, *row, me=me)
    state.grantors = _read_privileges(conn, name)
    state.privileges = set(state.grantors)
    return state


def _read_privileges(conn, role: str) -> dict[Priv, set[str]]:
    """Each privilege `role` holds directly, with who granted it."""
    grantee = "a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)"
    rows = conn.execute(f"""
        SELECT 'schema', n.nspname, NULL, a.privilege_type, NULL, pg_get_userbyid(a.grantor)
          FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE {grantee} AND {SYSTEM_SCHEMAS}
        UNION ALL
        SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, n.nspname,
               c.relname, a.privilege_type, NULL, pg_get_userbyid(a.grantor)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
         WHERE {grantee} AND {SYSTEM_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        UNION ALL
        SELECT 'column', n.nspname, c.relname, a.privilege_type, att.attname,
               pg_get_userbyid(a.grantor)
          FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(att.attacl) a
         WHERE {grantee} AND {SYSTEM_SCHEMAS} AND att.attnum > 0 AND NOT att.attisdropped
        UNION ALL
        SELECT 'function', n.nspname, p.proname, a.privilege_type, NULL,
               pg_get_userbyid(a.grantor)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
         WHERE {grantee} AND {SYSTEM_SCHEMAS}
        UNION ALL
        SELECT 'default', n.nspname,
               CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                    WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' ELSE 'schemas' END,
               a.privilege_type, NULL, pg_get_userbyid(a.grantor)
          FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace,
               aclexplode(d.defaclacl) a
         WHERE {grantee} AND d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    """, {"role": role}).fetchall()
    held: dict[Priv, set[str]] = {}
    for *priv, grantor in rows:
        held.setdefault(Priv(*priv), set()).add(grantor)
    return held


# The functions that log in as a role of their own (runbook.functions.registry's
# trigger_roles), and the column privileges their statements need.
TRIGGER_PRIVILEGES = {
    "post-confirmation": {**profiles.PRIVILEGES, **registration.PRIVILEGES},
    "process-user-signup": signups.PRIVILEGES,
}
# ... and the routines they call (templates/sql/0007 and 0008), which need EXECUTE.
TRIGGER_FUNCTIONS = {
    "post-confirmation": (profiles.FUNCTION,),
    "process-user-signup": (signups.FUNCTION,),
}


def desired(conn, name: str, spec, schemas: Schemas) -> Desired:
    """What role `name` should hold, given the objects that exist now.

    `conn` may be None (the database does not exist yet): schemas are then all to be
    created and hold no tables. A trigger's column privilege on a table the role may
    write whole is left out: the table's privilege covers it.
    """
    privileges: set[Priv] = set()
    existing = _existing_schemas(conn)
    for schema in spec.write:
        privileges.add(Priv("schema", schema, None, "USAGE"))
        for kind, table in _relations(conn, schema):
            if kind == "sequence":
                privileges.add(Priv("sequence", schema, table, "USAGE"))
            else:
                privileges.update(Priv("table", schema, table, p) for p in WRITE)
        privileges.update(Priv("default", schema, "tables", p) for p in WRITE)
        privileges.add(Priv("default", schema, "sequences", "USAGE"))
    if spec.trigger in TRIGGER_PRIVILEGES:
        for table, grants in TRIGGER_PRIVILEGES[spec.trigger].items():
            schema = schemas.of(table)
            privileges.add(Priv("schema", schema, None, "USAGE"))
            for privilege, columns in grants.items():
                if not columns:  # the whole table (DELETE has no column form)
                    privileges.add(Priv("table", schema, table, privilege))
                privileges.update(Priv("column", schema, table, privilege, c) for c in columns)
        for function in TRIGGER_FUNCTIONS[spec.trigger]:
            schema = schemas.of(function)
            privileges.add(Priv("schema", schema, None, "USAGE"))
            privileges.add(Priv("function", schema, function, "EXECUTE"))
    whole = {(p.schema, p.name, p.privilege) for p in privileges if p.kind == "table"}
    privileges = {p for p in privileges
                  if not (p.kind == "column" and (p.schema, p.name, p.privilege) in whole)}
    return Desired(name, [s for s in spec.write if s not in existing], privileges)


def _existing_schemas(conn) -> set[str]:
    if conn is None:
        return set()
    return {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}


def _relations(conn, schema: str) -> list[tuple[str, str]]:
    if conn is None:
        return []
    return conn.execute(
        """SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, c.relname
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'S') ORDER BY 2""",
        (schema,)).fetchall()


# -- the gap, as SQL ------------------------------------------------------------------

def statements(current: RoleState, want: Desired) -> list[str]:
    """The SQL that takes `current` to `want`; [] when they match."""
    role = quote_ident(want.name)
    out: list[str] = []
    if not current.exists:
        out.append(create_role(want.name, login=True))
    elif not current.login:
        out.append(f"ALTER ROLE {role} LOGIN")
    if not current.rds_iam_member:
        out.append(f"GRANT rds_iam TO {role}")
    out += [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(s)}" for s in want.schemas_to_create]
    revoke, grant = _gap(current, want)
    # Revokes first: revoking a table-level privilege also takes away the same privilege
    # on each column, which the grants then give back where they are wanted.
    out += _render(revoke, role, grant=False, current=current)
    out += _render(grant, role, grant=True, current=current)
    return out


def _gap(current: RoleState, want: Desired) -> tuple[set[Priv], set[Priv]]:
    revoke = current.privileges - want.privileges
    wiped = {(p.schema, p.name, p.privilege) for p in revoke if p.kind == "table"}
    kept = {p for p in current.privileges
            if not (p.kind == "column" and (p.schema, p.name, p.privilege) in wiped)}
    return revoke, want.privileges - kept


def summary(current: RoleState, want: Desired) -> dict:
    """The report's view of the gap: labels, never SQL."""
    diff: dict = {}
    attributes = [label for missing, label in (
        (not current.exists, "create with LOGIN, no password"),
        (current.exists and not current.login, "LOGIN"),
        (not current.rds_iam_member,
         "member of rds_iam (IAM tokens only: on RDS a password stops working)")) if missing]
    if attributes:
        diff["attributes"] = attributes
    if want.schemas_to_create:
        diff["create_schemas"] = want.schemas_to_create
    revoke, grant = _gap(current, want)
    for key, privs in (("grant", grant), ("revoke", revoke)):
        if privs:
            diff[key] = sorted(p.label() for p in privs)
    return diff


@dataclass(frozen=True)
class Gap:
    """What one declared role lacks, as the plan shows it: labels and the SQL."""

    name: str
    exists: bool
    summary: dict
    statements: tuple[str, ...]


def gap(current: RoleState, want: Desired) -> Gap:
    return Gap(want.name, current.exists, summary(current, want),
               tuple(statements(current, want)))


def read_gap(conn, name: str, spec, schemas: Schemas) -> Gap:
    """The gap of role `name` in the database `conn` is connected to (reads only)."""
    return gap(read_role(conn, name), desired(conn, name, spec, schemas))


# -- converging (under the migration lock) ----------------------------------------------

class NotConverged(Exception):
    """The role still differs after its statements ran; the transaction rolled back."""

    def __init__(self, name: str, remaining: dict):
        self.name, self.remaining = name, remaining
        super().__init__(f"role {name}: its privileges still differ after applying the "
                         f"changes: {remaining}; nothing was changed")


RDS_IAM = create_role("rds_iam", login=False)


def ensure_rds_iam(conn) -> bool:
    """Create `rds_iam` (NOLOGIN) where it is missing, as outside RDS; True if created."""
    with conn.transaction():
        if read_rds_iam(conn):
            return False
        conn.execute(RDS_IAM)
    return True


def converge(conn, name: str, spec, schemas: Schemas) -> list[str]:
    """Close role `name`'s gap in one transaction; the statements run ([] if none).

    The gap is read again here, not taken from a plan: migrations applied since created
    tables, and a concurrent run may have converged the role already. It is read once
    more before the commit, and NotConverged rolls everything back if a gap remains.
    """
    with conn.transaction():
        run = statements(read_role(conn, name), desired(conn, name, spec, schemas))
        for statement in run:
            conn.execute(statement)
        after = read_role(conn, name)
        want = desired(conn, name, spec, schemas)
        if statements(after, want):
            raise NotConverged(name, summary(after, want))
    return run


def _render(privs: set[Priv], role: str, *, grant: bool,
            current: RoleState | None = None) -> list[str]:
    """GRANT or REVOKE statements for `privs`, grouped per object.

    A REVOKE removes only the executing role's own grants (PostgreSQL accepts GRANTED BY
    for the current user only), so a privilege another role granted is revoked as that
    role: SET ROLE to it, REVOKE, RESET ROLE. That needs membership of the grantor; without
    it the statement fails and says so, rather than leaving the privilege in place.
    """
    verb, prep = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    groups: dict[tuple, list[str]] = {}
    for p in privs:
        grantors = [""] if grant or current is None or p.kind == "default" else sorted(
            g if g != current.me else "" for g in current.grantors.get(p, {""}))
        for grantor in grantors:
            if p.kind == "column":
                key = (p.kind, p.schema, p.name, grantor, p.privilege)
                groups.setdefault(key, []).append(p.column)
            else:
                groups.setdefault((p.kind, p.schema, p.name, grantor), []).append(p.privilege)
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(part) for part in k)):
        items = sorted(set(groups[key]))
        kind, schema, grantor = key[0], quote_ident(key[1]), key[3]
        as_grantor = bool(grantor) and kind != "default"
        if as_grantor:
            out.append(f"SET ROLE {quote_ident(grantor)}")
        if kind == "schema":
            out.append(f"{verb} {', '.join(items)} ON SCHEMA {schema} {prep} {role}")
        elif kind == "default":
            # FOR ROLE: the defaults apply to the tables the migrations' owner (the login
            # converging, which runs the migrations) creates later, and to no one else's.
            owner = f"FOR ROLE {quote_ident(current.me)} " if current and current.me else ""
            out.append(f"ALTER DEFAULT PRIVILEGES {owner}IN SCHEMA {schema} {verb} "
                       f"{', '.join(items)} ON {key[2].upper()} {prep} {role}")
        elif kind == "column":
            columns = ", ".join(quote_ident(c) for c in items)
            out.append(f"{verb} {key[4]} ({columns}) ON TABLE {schema}.{quote_ident(key[2])} "
                       f"{prep} {role}")
        else:
            # ROUTINE: a function or a procedure (write_profile is one).
            keyword = {"sequence": "SEQUENCE", "function": "ROUTINE"}.get(kind, "TABLE")
            out.append(f"{verb} {', '.join(items)} ON {keyword} {schema}.{quote_ident(key[2])} "
                       f"{prep} {role}")
        if as_grantor:
            out.append("RESET ROLE")
    return out
