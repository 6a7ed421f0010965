"""fix-tables: bring the database schema up to date and converge the IAM-only roles.

read   connect (DB secret, IAM token, or in a dry run the sandbox's PostgreSQL), then,
       in a read-only transaction: render every migration, compare the checksums with
       those recorded, and read each declared role's attributes and privileges.
plan   one change per pending migration, one for `rds_iam` where it is missing, and one
       per role whose attributes or privileges differ.
apply  under the migration advisory lock: each migration in its own transaction with
       its record, then each role's GRANT/REVOKE statements in one transaction.

A converged database gives an empty plan, so a second run executes no DDL at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook import dbroles, migrations, retry
from runbook.engine import UNKNOWN, Change, Step, is_known
from runbook.errors import BadInput, StepFailed
from runbook.shared import db as dbconnect

LOCK_WAIT_S = 600
NOT_IN_VPC = ("The cluster is in private subnets, reachable only from inside the VPC: run "
              "runbook from a host in the VPC (database.connect: direct), or set "
              "database.connect: lambda to run the migrations through a function in the VPC.")


@dataclass
class TablesState:
    migrations: list[migrations.Migration]
    pending: list[migrations.Migration]
    applied: set[int] = field(default_factory=set)
    rds_iam: bool = True
    roles: dict[str, tuple[dbroles.RoleState, dbroles.Desired]] = field(default_factory=dict)
    target: dbconnect.Target | None = None
    locked: bool = False


class FixTables(Step):
    name = "fix-tables"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.db = self.config.database
        self.conn = None

    # -- read ------------------------------------------------------------------------

    def read(self) -> TablesState:
        if self.db.connect == "lambda":
            raise BadInput("database.connect: lambda runs the migrations through a function "
                           "inside the VPC, which this version of runbook does not build yet. "
                           "Use database.connect: direct from a host inside the VPC.")
        found = migrations.load(self._params())
        database = self.ctx.upstream("database")
        secrets = self.ctx.upstream("store-secrets")
        target = self._target(database, secrets)
        state = TablesState(found, list(found), target=target)
        if target is None:  # the cluster does not exist yet: everything is to do
            state.rds_iam = True  # Aurora PostgreSQL comes with rds_iam
            state.roles = {name: (dbroles.RoleState(name),
                                  dbroles.desired(None, name, spec, self.db.schema))
                           for name, spec in self.db.roles.items()}
            return state
        self.conn = self._connect(target)
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            recorded = migrations.read_applied(self.conn)
            state.pending = migrations.check(found, recorded)
            state.applied = set(recorded)
            state.rds_iam = dbroles.read_rds_iam(self.conn)
            state.roles = self._read_roles()
        return state

    def _params(self) -> dict:
        return {"schema": self.db.schema,
                "roles": {name: {"write": list(spec.write), "trigger": spec.trigger}
                          for name, spec in self.db.roles.items()}}

    def _target(self, database: dict, secrets: dict) -> dbconnect.Target | None:
        secret_arn = secrets.get("db_secret_arn")
        if self.ctx.dry_run and self.ctx.database_dsn:
            if is_known(secret_arn):
                self._secret_target(secret_arn)  # the same checks as a live run
            return dbconnect.from_dsn(self.ctx.database_dsn, "the sandbox's PostgreSQL")
        if not is_known(database.get("endpoint")) or not is_known(secret_arn):
            return None
        if self.db.auth == "iam":
            return dbconnect.from_iam(database["endpoint"], int(database["port"]),
                                      database["database"], database["master_username"],
                                      region=self.config.region, rds_client=self.client("rds"),
                                      sslmode=self.db.sslmode)
        return self._secret_target(secret_arn)

    def _secret_target(self, secret_arn: str) -> dbconnect.Target:
        value = self.client("secretsmanager").get_secret_value(SecretId=secret_arn)
        try:
            return dbconnect.from_secret(value["SecretString"], f"secret {self.config.secrets.db}",
                                         sslmode=self.db.sslmode)
        except dbconnect.ConnectError as exc:
            raise BadInput(f"{exc}. Run `runbook run --step store-secrets` to rewrite it.") from None

    def _connect(self, target: dbconnect.Target):
        try:
            return dbconnect.connect(target, timeout_s=self.db.connect_timeout_s,
                                     application_name="runbook fix-tables")
        except dbconnect.ConnectError as exc:
            if exc.kind == "unreachable":
                raise BadInput(f"{exc}. {NOT_IN_VPC}") from None
            if exc.kind == "config":
                raise BadInput(f"{exc}. Check database.name and the DB secret's dbname and "
                               "username.") from None
            hint = ""
            if exc.kind == "auth" and self.db.auth == "iam":
                hint = (f" With database.auth: iam, {target.user} must be granted rds_iam and "
                        "your credentials need rds-db:connect on it.")
            elif exc.kind == "auth":
                hint = (" The cluster may still be applying the master password that "
                        "store-secrets set; wait a minute and re-run. If it persists, run "
                        "`runbook run --step store-secrets`.")
            raise StepFailed(self.name, f"database {target.dbname}", f"{exc}.{hint}") from None

    def _read_roles(self) -> dict:
        return {name: (dbroles.read_role(self.conn, name),
                       dbroles.desired(self.conn, name, spec, self.db.schema))
                for name, spec in self.db.roles.items()}

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: TablesState) -> list[Change]:
        changes = [Change("create", f"postgres:migration {m.filename}", "migration",
                          {"version": m.version}, {"sha256": m.checksum[:12]}, detail=m.sql)
                   for m in state.pending]
        if self.db.roles and not state.rds_iam:
            changes.append(Change("create", "postgres:role rds_iam", "rds_iam", {},
                                  {"login": False, "why": "missing outside RDS"},
                                  detail="CREATE ROLE rds_iam NOLOGIN;"))
        for name, (current, want) in state.roles.items():
            sql = dbroles.statements(current, want)
            if sql:
                changes.append(Change("update" if current.exists else "create",
                                      f"postgres:role {name}", "role", {"name": name},
                                      dbroles.summary(current, want),
                                      detail=";\n".join(sql) + ";"))
        return changes

    # -- apply -----------------------------------------------------------------------

    def apply_migration(self, state: TablesState, version: int) -> bool:
        self._lock(state)
        migration = next(m for m in state.migrations if m.version == version)
        applied = migrations.apply(self.conn, migration)
        state.applied.add(version)
        if not applied:
            self.ctx.progress.line(f"  {migration.filename} was applied by a concurrent run",
                                   dim=True)
        return applied

    def apply_rds_iam(self, state: TablesState) -> bool:
        self._lock(state)
        with self.conn.transaction():
            if dbroles.read_rds_iam(self.conn):
                return False
            self.conn.execute(dbroles.create_role("rds_iam", login=False))
        return True

    def apply_role(self, state: TablesState, name: str) -> bool:
        self._lock(state)
        with self.conn.transaction():
            # Re-read under the lock: the migrations just applied created tables, and a
            # concurrent run may have converged the role already.
            current = dbroles.read_role(self.conn, name)
            want = dbroles.desired(self.conn, name, self.db.roles[name], self.db.schema)
            sql = dbroles.statements(current, want)
            for statement in sql:
                self.conn.execute(statement)
            after = dbroles.read_role(self.conn, name)
            want = dbroles.desired(self.conn, name, self.db.roles[name], self.db.schema)
            if dbroles.statements(after, want):  # rolls the transaction back
                raise StepFailed(self.name, f"postgres:role {name}",
                                 "its privileges still differ after applying the changes: "
                                 f"{dbroles.summary(after, want)}; nothing was changed")
        return bool(sql)

    def _lock(self, state: TablesState) -> None:
        if state.locked:
            return
        if self.conn is None:  # only a plan can get here without a database
            raise StepFailed(self.name, "database", "no database to apply to")
        try:
            retry.wait_until(lambda: migrations.try_lock(self.conn), bool,
                             what="the migration lock held by another fix-tables run",
                             timeout_s=LOCK_WAIT_S, interval_s=0.5, sleep=self.ctx.sleep,
                             clock=self.ctx.clock, on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout:
            raise StepFailed(self.name, "the migration lock",
                             f"held by {migrations.lock_holder(self.conn)} for over "
                             f"{LOCK_WAIT_S // 60} minutes; nothing was changed. Check "
                             "that run, then re-run.") from None
        state.locked = True
        if state.pending and not migrations.table_exists(self.conn):
            migrations.ensure_table(self.conn)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # also releases the session's advisory lock
            self.conn = None

    # -- outputs ---------------------------------------------------------------------

    def outputs(self, state: TablesState) -> dict:
        done = all(m.version in state.applied for m in state.migrations)
        return {
            "schema_version": max(state.applied) if done and state.applied else UNKNOWN,
            "schema": self.db.schema,
            "roles": sorted(self.db.roles),
        }


STEP = FixTables
