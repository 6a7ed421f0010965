"""db_migrate: fix-tables' migrations and roles, run from inside the VPC.

The cluster is in private subnets. With `database.connect: lambda`, fix-tables deploys
this function there and invokes it, instead of connecting itself. runbook renders the
migrations and sends them; this function never reads a template. The event and the
answer are described in runbook.lambda_runtime.migrate_event:

  read   the ledger, the pending / edited / unknown migrations, and what each role
         lacks, in a READ ONLY transaction: it writes nothing.
  apply  under the advisory lock: each pending migration in its own transaction with
         its ledger row, then rds_iam and the roles given. Answers the versions applied
         and the role statements run.

Each invocation opens its own connection and closes it: the lock is held by the session,
so a connection kept for the next invocation would keep it, and migrations are too rare
for a login to matter. The lock wait ends at half the time the function has left, and
each migration's statements may take the time left less END_MARGIN_S (statement_timeout;
a migration does not start without a second of that), so that a busy database ends in an
error that says why rather than in "Task timed out".

The same code as a direct run does the work (runbook.lambda_runtime.ledger, .dbroles, .survey).
Logs JSON lines; never a password (none is in the event) or a row value.

Environment: DB_SECRET_ARN (the master credentials), or DB_AUTH=iam with DB_HOST,
DB_PORT, DB_NAME, DB_USER and DB_SSLROOTCERT (verify-full against the RDS CA bundle in the
layer), or DB_DSN (runbook.lambda_runtime.db.from_environment).
"""

from __future__ import annotations

import os
import time

from runbook.lambda_runtime import db, dbroles, ledger, logs, migrate_event, survey

# Without a Lambda context (a direct call), the time an invocation may take.
DEFAULT_BUDGET_S = 60.0
# Kept free at the end of the invocation for rolling back and answering.
END_MARGIN_S = 5.0
CONNECT_TIMEOUT_S = 10


class MigrationRefused(RuntimeError):
    """The ledger does not match the migrations sent; nothing was changed."""


class MigrationFailed(RuntimeError):
    """A migration or role statement failed; the message says which, without row values."""


class Budget:
    """The invocation's time: Lambda's remaining time, read from its context."""

    def __init__(self, context):
        self._remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        self._deadline = time.monotonic() + DEFAULT_BUDGET_S

    def left_s(self) -> float:
        if self._remaining_ms is not None:
            return self._remaining_ms() / 1000
        return max(0.0, self._deadline - time.monotonic())


def handler(event, context):
    started = time.monotonic()
    log = logs.Log(function="db_migrate", request_id=getattr(context, "aws_request_id", None))
    try:
        request = migrate_event.parse(event)
    except migrate_event.MalformedRequest as exc:
        log.error("db_migrate event rejected", reason=str(exc))
        raise
    log = log.bind(action=request.action)
    log.info("db_migrate request", migrations=len(request.migrations), roles=sorted(request.roles))
    budget = Budget(context)
    try:  # a login may take a quarter of the time left (libpq's minimum is 2 s)
        conn = db.connect(db.from_environment(os.environ),
                          timeout_s=max(2, min(CONNECT_TIMEOUT_S, int(budget.left_s() / 4))),
                          application_name="runbook db_migrate")
    except Exception as exc:  # noqa: BLE001 - logged and raised again; it holds no password
        log.error("db_migrate could not connect", reason=db.describe(exc))
        raise
    try:
        if request.action == migrate_event.READ:
            answer = {"action": request.action, **survey.as_json(
                survey.take(conn, request.checksums, request.roles, request.schemas))}
        else:
            answer = apply(conn, request, budget, log).as_json()
    except (MigrationRefused, MigrationFailed) as exc:
        log.error("db_migrate failed", reason=str(exc), duration_ms=logs.elapsed_ms(started))
        raise
    except Exception as exc:  # noqa: BLE001 - logged and raised again, without row values
        reason = db.describe(exc)
        log.error("db_migrate failed", reason=reason, duration_ms=logs.elapsed_ms(started))
        raise MigrationFailed(reason) from None  # not chained: its text may quote a row
    finally:
        conn.close()  # also releases the session's advisory lock
    log.info("db_migrate completed", applied=answer.get("applied"),
             duration_ms=logs.elapsed_ms(started))
    return answer


def apply(conn, request: migrate_event.Request, budget: Budget,
          log: logs.Log) -> migrate_event.Outcome:
    """The apply action (see the module docstring); the caller closes `conn`."""
    wait_s = budget.left_s() / 2
    if not ledger.lock(conn, wait_s):
        raise MigrationRefused(f"the migration lock is held by {ledger.lock_holder(conn)}; "
                               f"waited {wait_s:.0f} s (half the function's time left). "
                               "Nothing was changed: check that run, then run fix-tables again.")
    try:
        recorded = ledger.read_applied(conn)  # again, under the lock
        try:
            pending = ledger.pending(request.checksums, recorded)
        except (ledger.Edited, ledger.Unknown) as exc:
            raise MigrationRefused(f"{exc}. Nothing was changed.") from None
        if pending and not ledger.table_exists(conn):
            ledger.ensure_table(conn)
        applied: list[int] = []
        for migration in request.migrations:
            if migration.version in pending:
                _limit(conn, budget, f"migration {_label(migration)}", applied)
                if _apply(conn, migration, log, applied):
                    applied.append(migration.version)
        created = bool(request.roles) and dbroles.ensure_rds_iam(conn)
        roles = {}
        for name, spec in request.roles.items():
            _limit(conn, budget, f"role {name}", applied)
            roles[name] = _converge(conn, name, spec, request.schemas)
    finally:
        if not (conn.broken or conn.closed):
            ledger.unlock(conn)
    return migrate_event.Outcome(tuple(applied), tuple(sorted(set(recorded) | set(applied))),
                                 created, {name: tuple(sql) for name, sql in roles.items()})


def _limit(conn, budget: Budget, what: str, applied: list[int]) -> None:
    """Give the next piece of work the time left, less END_MARGIN_S, as its statements'
    timeout (a cancelled statement rolls its transaction back), or stop before it."""
    left_ms = int((budget.left_s() - END_MARGIN_S) * 1000)
    if left_ms < 1000:
        raise MigrationFailed(f"the function's time ran out before {what} ({_versions(applied)} "
                              "applied first); run fix-tables again to do the rest, or raise "
                              "lambdas.db_migrate.timeout_s")
    conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{left_ms}ms",))


def _label(migration: migrate_event.Item) -> str:
    return f"{migration.version:04d}_{migration.name}"


def _versions(applied: list[int]) -> str:
    return ", ".join(f"{v:04d}" for v in applied) or "no migration"


def _apply(conn, migration: migrate_event.Item, log: logs.Log, before: list[int]) -> bool:
    """Apply one migration with its ledger row; `before`: what this invocation applied."""
    started = time.monotonic()
    label = _label(migration)
    try:
        done = ledger.apply(conn, migration.version, migration.name, migration.sql,
                            migration.checksum)
    except ledger.Edited as exc:
        raise MigrationRefused(f"{exc}. It was not re-run.") from None
    except Exception as exc:  # noqa: BLE001 - named, described without row values
        raise MigrationFailed(f"migration {label} failed and was rolled back: {db.describe(exc)} "
                              f"({_versions(before)} applied before it)") from None
    log.info("Migration applied" if done else "Migration already applied",
             version=migration.version, name=migration.name, duration_ms=logs.elapsed_ms(started))
    return done


def _converge(conn, name: str, spec, schemas) -> list[str]:
    try:
        return dbroles.converge(conn, name, spec, schemas)
    except dbroles.NotConverged as exc:
        raise MigrationFailed(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - named, described without row values
        raise MigrationFailed(f"role {name} was not converged (rolled back): "
                              f"{db.describe(exc)}") from None
