"""fix-tables: bring the database schema up to date and converge the IAM-only roles.

Two ways into the database, by `database.connect`:

  direct  runbook connects itself: with the DB secret or an IAM token, or in a dry run
          to the sandbox's PostgreSQL.
  lambda  only the VPC reaches the cluster: the step deploys the db_migrate function
          there (runbook.functions.db_migrate) and has it do the same work.

read   render every migration, then survey the database in a read-only transaction
       (runbook.lambda_runtime.survey): the ledger against the checksums, rds_iam, and what
       each declared role lacks. With connect: lambda, db_migrate's read action takes
       the survey, once the function is deployed as desired; until then, as for a
       cluster that does not exist yet, everything counts as to do. Step database
       does not wait for a new cluster: the first connection (or db_migrate call)
       waits until it and its instances are available.
plan   with connect: lambda, the function's role, log group, layer and function first;
       then one change per pending migration, one for `rds_iam` where it is missing,
       and one per role whose attributes or privileges differ.
apply  direct: under the migration advisory lock, each migration in its own transaction
       with its ledger row, then each role's GRANT/REVOKE statements in one transaction.
       lambda: the first database change invokes db_migrate's apply action, which does
       the same inside the function; each change then reports what it did.

A converged database gives an empty plan, so a second run executes no DDL at all and,
with connect: lambda, invokes only the read action, which writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import retry
from runbook.database import migrations
from runbook.database.access import DatabaseAccess
from runbook.engine import UNKNOWN, Change, Outputs, Step
from runbook.errors import StepFailed
from runbook.functions import db_migrate as migrate_function
from runbook.functions import package
from runbook.functions.deploy import FunctionsMixin, FunctionState, LayerState
from runbook.lambda_runtime import db as dbconnect
from runbook.lambda_runtime import dbroles, ledger, migrate_event, survey
from runbook.steps.database import wait_available

LOCK_WAIT_S = 600
KEY = migrate_function.KEY


@dataclass
class TablesState:
    migrations: list[migrations.Migration]
    pending: list[migrations.Migration]
    applied: set[int] = field(default_factory=set)
    rds_iam: bool = True
    roles: dict[str, dbroles.Gap] = field(default_factory=dict)
    target: dbconnect.Target | None = None
    locked: bool = False
    # database.connect: lambda
    layer: LayerState | None = None
    functions: dict[str, FunctionState] = field(default_factory=dict)
    surveyed: bool = True          # False: nothing could be read; the plan assumes all
    outcome: migrate_event.Outcome | None = None   # the apply action's answer

    @property
    def through_function(self) -> bool:
        return self.layer is not None


@dataclass(frozen=True)
class TablesOutputs(Outputs):
    schema_version: int
    schema: str
    roles: tuple
    # With database.connect: lambda, the function that ran the migrations and what it
    # applied in this run; None otherwise (and left out of the report).
    migrate_function: str | None = None
    applied_versions: tuple | None = None

    def as_report(self) -> dict:
        return {key: value for key, value in super().as_report().items()
                if value is not None or key not in ("migrate_function", "applied_versions")}


class FixTables(DatabaseAccess, FunctionsMixin, Step):
    name = "fix-tables"

    def __init__(self, ctx, inputs=None):
        super().__init__(ctx, inputs)
        self.db = self.config.database
        self.conn = None

    # -- read ------------------------------------------------------------------------

    def read(self) -> TablesState:
        found = migrations.load(self._params())
        database = self.inputs.database
        secrets = self.inputs.store_secrets
        if self.db.connect == "lambda":
            return self._read_through_function(found, database, secrets)
        target = self.database_target(database, secrets)
        if target is None:  # the cluster does not exist yet
            return self.state(found, None)
        self._database_available()
        self.conn = self.connect_database(target)
        checksums = {m.version: m.checksum for m in found}
        return self.state(found, survey.take(self.conn, checksums, self.db.roles,
                                             self.db.schemas), target=target)

    def _read_through_function(self, found, database, secrets) -> TablesState:
        self.inputs.vpc_integrate  # named first when missing, before anything is read
        account = self.account()
        spec = self.db_migrate_spec(account)
        layer = self.read_layer(self.config.lambdas.runtime)
        fn = self.db_migrate_state(account, package.build_function(KEY),
                                 self.find_function(spec))
        surveyed = None
        if not (self.plan_layer(layer) or self.plan_function(fn, layer)):
            # Deployed as desired: what it reads can be trusted. Until then, what an older
            # or absent function would say cannot, so the plan assumes everything and the
            # apply action skips what turns out to be done.
            answer = self._call(spec.name, migrate_event.READ, found, self.db.roles)
            try:
                surveyed = survey.from_json(answer)
            except ValueError as exc:
                raise migrate_function.unexpected(spec.name, str(exc)) from None
        return self.state(found, surveyed, layer=layer, fn=fn)

    def db_migrate_spec(self, account: str):
        """db_migrate's spec (database.connect: lambda)."""
        return migrate_function.spec(self.config, self.inputs.vpc_integrate,
                                     self.inputs.database, self.inputs.store_secrets,
                                     account=account, region=self.ctx.aws.region)

    def db_migrate_state(self, account: str, artifact, found: dict) -> FunctionState:
        """What was read of db_migrate, claimed: pure."""
        return FunctionState.of(self.db_migrate_spec(account), account, self.ctx.aws.region,
                                artifact, found)

    def state(self, found: list[migrations.Migration], surveyed: survey.Survey | None, *,
              target: dbconnect.Target | None = None, layer: LayerState | None = None,
              fn: FunctionState | None = None) -> TablesState:
        """What was read, for the plan: pure, so that plans are tested from data.
        `surveyed` None: nothing could be read (no cluster yet, or db_migrate not yet
        deployed as desired), so everything counts as to do."""
        if surveyed is None:
            state = self._everything_to_do(found, surveyed=layer is None)
        else:
            state = TablesState(found, [], target=target)
            self._take(state, surveyed)
        state.layer = layer
        state.functions = {KEY: fn} if fn is not None else {}
        return state

    def _everything_to_do(self, found, **kwargs) -> TablesState:
        """The state of a database that cannot be read: every migration and role to do,
        and rds_iam present, as Aurora PostgreSQL has it."""
        roles = {name: dbroles.gap(dbroles.RoleState(name),
                                   dbroles.desired(None, name, spec, self.db.schemas))
                 for name, spec in self.db.roles.items()}
        return TablesState(found, list(found), rds_iam=True, roles=roles, **kwargs)

    def _take(self, state: TablesState, surveyed: survey.Survey) -> None:
        state.pending = migrations.check(state.migrations, surveyed.applied)
        state.applied = set(surveyed.applied)
        state.rds_iam = surveyed.rds_iam
        state.roles = surveyed.roles

    def _params(self) -> dict:
        return {"schema": self.db.schema, "users_schema": self.db.users_schema,
                "audit_schema": self.db.audit_schema,
                "roles": {name: {"write": list(spec.write), "trigger": spec.trigger}
                          for name, spec in self.db.roles.items()}}

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: TablesState) -> list[Change]:
        changes: list[Change] = []
        if state.through_function:
            changes += (self.plan_layer(state.layer)
                        + self.plan_function(state.functions[KEY], state.layer))
        # Without a survey (the function is not deployed yet), each change is a guess.
        guess = {} if state.surveyed else {"if": "not done yet (db_migrate reads it once deployed)"}
        changes += [Change("create", f"postgres:migration {m.filename}", "migration",
                           {"version": m.version}, {"sha256": m.checksum[:12], **guess},
                           detail=m.sql, run=self.migrate)
                    for m in state.pending]
        if self.db.roles and not state.rds_iam:
            changes.append(Change("create", "postgres:role rds_iam", "rds_iam", {},
                                  {"login": False, "why": "missing outside RDS"},
                                  detail=dbroles.RDS_IAM + ";", run=self.create_rds_iam))
        for name, gap in state.roles.items():
            if gap.statements:
                changes.append(Change("update" if gap.exists else "create",
                                      f"postgres:role {name}", "role", {"name": name},
                                      {**gap.summary, **guess},
                                      detail=";\n".join(gap.statements) + ";",
                                      run=self.converge_role))
        return changes

    # -- apply: what each change runs (Change.run) -----------------------------------------
    # Through db_migrate, the function applied everything in one invocation (_outcome);
    # each change then only says whether its part was done by this run.

    def migrate(self, api, state: TablesState, version: int) -> bool:
        if state.through_function:
            return version in self._outcome(state).applied
        self._lock(state)
        migration = next(m for m in state.migrations if m.version == version)
        applied = migrations.apply(self.conn, migration)
        state.applied.add(version)
        if not applied:
            self.ctx.progress.line(f"  {migration.filename} was applied by a concurrent run",
                                   dim=True)
        return applied

    def create_rds_iam(self, api, state: TablesState) -> bool:
        if state.through_function:
            return self._outcome(state).rds_iam_created
        self._lock(state)
        return dbroles.ensure_rds_iam(self.conn)

    def converge_role(self, api, state: TablesState, name: str) -> bool:
        if state.through_function:
            return bool(self._outcome(state).roles.get(name))
        self._lock(state)
        try:
            return bool(dbroles.converge(self.conn, name, self.db.roles[name], self.db.schemas))
        except dbroles.NotConverged as exc:
            raise StepFailed(self.name, f"postgres:role {name}",
                             "its privileges still differ after applying the changes: "
                             f"{exc.remaining}; nothing was changed") from None

    def _lock(self, state: TablesState) -> None:
        if state.locked:
            return
        if self.conn is None:  # only a plan can get here without a database
            raise StepFailed(self.name, "database", "no database to apply to")
        try:
            retry.wait_until(lambda: ledger.try_lock(self.conn), bool,
                             what="the migration lock held by another fix-tables run",
                             timeout_s=LOCK_WAIT_S, interval_s=0.5, sleep=self.ctx.sleep,
                             clock=self.ctx.clock, on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout:
            raise StepFailed(self.name, "the migration lock",
                             f"held by {ledger.lock_holder(self.conn)} for over "
                             f"{LOCK_WAIT_S // 60} minutes; nothing was changed. Check "
                             "that run, then re-run.") from None
        state.locked = True
        if state.pending and not ledger.table_exists(self.conn):
            ledger.ensure_table(self.conn)

    # -- through db_migrate (database.connect: lambda) ----------------------------------

    def _outcome(self, state: TablesState) -> migrate_event.Outcome:
        """The apply action's answer. The first database change invokes it, once the
        function is active; it sends the roles the plan converges."""
        if state.outcome is None:
            self.settle_functions(state.functions)
            roles = {name: self.db.roles[name] for name, gap in state.roles.items()
                     if gap.statements}
            name = state.functions[KEY].spec.name
            answer = self._call(name, migrate_event.APPLY, state.migrations, roles)
            try:
                state.outcome = migrate_event.Outcome.from_json(answer)
            except ValueError as exc:
                raise migrate_function.unexpected(name, str(exc)) from None
            state.applied = set(state.outcome.recorded)
            applied = ", ".join(f"{v:04d}" for v in state.outcome.applied) or "no migration"
            self.ctx.progress.line(f"  db_migrate applied {applied}", dim=True)
        return state.outcome

    def _call(self, function_name: str, action: str, found: list[migrations.Migration],
              roles: dict) -> dict:
        self._database_available()
        event = migrate_event.build(action, found, roles, self.db.schemas)
        return migrate_function.call(self.ctx, function_name, event)

    def _database_available(self) -> None:
        """Step database made the cluster and moved on: wait until it and its instances
        are available before the first connection (in a run; a plan does not wait)."""
        if not self.ctx.plan_only:
            wait_available(self.ctx, self.inputs.database)

    def settle(self, state: TablesState) -> None:
        self.settle_functions(state.functions)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # also releases the session's advisory lock
            self.conn = None

    # -- outputs ---------------------------------------------------------------------

    def outputs(self, state: TablesState) -> TablesOutputs:
        done = all(m.version in state.applied for m in state.migrations)
        through = state.through_function
        return TablesOutputs(
            schema_version=max(state.applied) if done and state.applied else UNKNOWN,
            schema=self.db.schema,
            roles=tuple(sorted(self.db.roles)),
            migrate_function=state.functions[KEY].spec.name if through else None,
            applied_versions=(tuple(state.outcome.applied) if state.outcome else ())
            if through else None)


STEP = FixTables
