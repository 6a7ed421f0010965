"""Step `stage-legacy-users` (phase a5): the producer. The legacy users' password hashes
go from the Supabase-era PostgreSQL to the MSK topic; the legacy loader (step
deploy-legacy-loader) writes them into the hash table (step hash-table), where Cognito's
UserMigration trigger will find them.

read   the legacy users (runbook.legacy.source, one READ ONLY transaction) from the DSN
       in the environment variable legacy.source_dsn_env names (never in the YAML: it
       holds a password); in a dry run the sandbox's legacy database, unless that
       variable is set. Which are staged and which skipped by reason:
       runbook.legacy.users. Then the table's items for the staged addresses
       (runbook.legacy.table: BatchGetItem, consistent).
plan   a diff: the users whose item is missing or whose hash or profile differs, as one
       change that counts them. The plan holds no hash and no address.
apply  each of them, as LegacyHash.to_value() keyed by the lower-cased address, to the
       topic: an idempotent producer with acks from all replicas, over the cluster's
       public IAM endpoint (runbook.aws.kafka), flushed and counted every
       PROGRESS_EVERY records.
settle waits, with backoff and the elapsed time shown, until the table holds every
       produced user as produced; legacy.stage_timeout_s bounds it.

A converged table plans nothing, so a second run produces nothing. The report counts
planned, produced, stored and skipped by reason; it holds no hash and no address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from runbook.aws.retry import format_duration
from runbook.engine import Change, Outputs, Step
from runbook.errors import PlanError, StepFailed
from runbook.lambda_runtime.legacy_hashes import LegacyHash
from runbook.legacy import source as legacy_source
from runbook.legacy import table as legacy_table
from runbook.legacy import users as legacy_users

STEP_NAME = "stage-legacy-users"
SANDBOX_SOURCE = "the sandbox's legacy database"
PROGRESS_EVERY = 1000          # records flushed (and acknowledged) between progress lines
FLUSH_TIMEOUT_S = 120
# The wait for the loader: BatchGetItem again after 1 s, 2 s, ... at most 15 s apart.
WAIT_BASE_S, WAIT_CAP_S = 1.0, 15.0


@dataclass
class StageState:
    """What was read. `source` says where the users came from (the variable's name, or
    the sandbox), never the DSN; "" when only the outputs were asked for."""

    table: str
    source: str = ""
    users: tuple[LegacyHash, ...] = ()
    skipped: dict = field(default_factory=dict)
    diff: legacy_users.Diff = field(default_factory=lambda: legacy_users.Diff(()))
    produced: int = 0
    stored: int = 0
    produce_s: float = 0.0      # producing and flushing every planned record
    store_s: float = 0.0        # from the last acknowledgement until the table held all


@dataclass(frozen=True)
class StageOutputs(Outputs):
    table: str
    source: str
    users: int              # legacy users with a hash to stage
    planned: int            # of them, missing from the table or different there
    produced: int           # records the topic acknowledged in this run
    stored: int             # produced users the table now holds as produced
    skipped: dict           # reason -> count (runbook.legacy.users.REASONS)
    # How long producing took, and then the wait for the loader to store it all (0 when
    # nothing was staged): an operator's measure of the pipeline, and bench/'s.
    produce_s: float = 0.0
    store_s: float = 0.0


class StageLegacyUsers(Step):
    name = STEP_NAME

    # -- read ----------------------------------------------------------------------------

    def read(self) -> StageState:
        table = self.inputs.hash_table.table_name
        if self.ctx.outputs_only:
            return StageState(table)
        dsn, where = self.source_dsn()
        try:
            rows = legacy_source.read(dsn)
        except legacy_source.BadDsn as exc:
            raise PlanError(STEP_NAME, f"legacy database ({where})", f"the value of {where} "
                            f"{exc}") from None
        except legacy_source.SourceError as exc:
            raise StepFailed(STEP_NAME, f"legacy database ({where})", str(exc)) from None
        classified = self.classify(rows)
        stored = legacy_table.stored(self.api, table, [user.email for user in classified.users])
        state = self.state(rows, list(stored.values()), source=where)
        self.ctx.progress.line(
            f"  {len(rows)} legacy user(s) in {where}: {len(state.users)} with a hash to "
            f"stage, {sum(state.skipped.values())} skipped "
            f"({_counts(state.skipped) or 'none'})", dim=True)
        return state

    def source_dsn(self) -> tuple[str, str]:
        """(the DSN, where it came from): the variable legacy.source_dsn_env names; in a
        dry run without it, the sandbox's legacy database."""
        name = self.config.legacy.source_dsn_env
        dsn = os.environ.get(name, "").strip()
        if dsn:
            if self.ctx.dry_run:
                self.ctx.progress.line(f"  legacy users: read from the database ${name} names "
                                       "(read only), not the sandbox's fixture", fg="yellow")
            return dsn, f"${name}"
        if self.ctx.dry_run and self.ctx.legacy_dsn:
            return self.ctx.legacy_dsn, SANDBOX_SOURCE
        raise PlanError(STEP_NAME, f"environment variable {name}",
                        f"{name} is not set. It holds the legacy PostgreSQL's DSN "
                        "(postgresql://user:password@host:5432/postgres); the environment "
                        "file names the variable (legacy.source_dsn_env), never the DSN, "
                        f"which holds a password. Export {name} and run again")

    def classify(self, rows) -> legacy_users.Classified:
        try:
            return legacy_users.classify(rows)
        except legacy_users.DuplicateEmails as exc:
            raise PlanError(STEP_NAME, "legacy database auth.users", str(exc)) from None

    def state(self, rows, stored: list[LegacyHash], *, source: str = "") -> StageState:
        """What was read, diffed for the plan: pure, so that plans are tested from data."""
        classified = self.classify(rows)
        by_email = {user.email: user for user in stored}
        return StageState(self.config.legacy.hash_table, source, users=classified.users,
                          skipped=classified.skipped,
                          diff=legacy_users.diff(classified.users, by_email))

    # -- plan ----------------------------------------------------------------------------

    def plan(self, state: StageState) -> list[Change]:
        diff = state.diff
        if not diff.stage:
            return []
        counts = {"new": diff.new, "hash_changed": diff.hash_changed,
                  "profile_changed": diff.profile_changed}
        return [Change("create" if diff.new == len(diff.stage) else "update",
                       f"dynamodb:items {state.table}", "stage",
                       diff={"stage": len(diff.stage),
                             **{key: n for key, n in counts.items() if n},
                             "unchanged": diff.unchanged,
                             **({"skipped": dict(state.skipped)} if state.skipped else {})},
                       detail=f"stage {len(diff.stage)} users", run=self._produce)]

    # -- apply ---------------------------------------------------------------------------

    def _produce(self, api, state: StageState) -> None:
        """Every planned user to the topic, flushed every PROGRESS_EVERY records; a record
        the brokers did not acknowledge fails the step, counted, without values."""
        from runbook.aws.kafka import kafka_access

        cluster = self.inputs.msk_cluster
        staged = state.diff.stage
        start = self.ctx.clock()
        producer = kafka_access(self.ctx).producer(cluster.bootstrap_public, acks="all",
                                                   enable_idempotence=True)
        try:
            for offset in range(0, len(staged), PROGRESS_EVERY):
                batch = staged[offset:offset + PROGRESS_EVERY]
                sent = [producer.send(cluster.topic, key=user.email.encode("utf-8"),
                                      value=user.to_value()) for user in batch]
                producer.flush(timeout=FLUSH_TIMEOUT_S)
                failed = [future for future in sent if not future.succeeded()]
                if failed:
                    error = failed[0].exception
                    raise StepFailed(STEP_NAME, f"kafka:topic {cluster.topic}",
                                     f"{len(failed)} of {len(batch)} record(s) were not "
                                     f"acknowledged ({type(error).__name__}); "
                                     f"{state.produced} were before them. Run again: "
                                     "what the table lacks is staged again")
                state.produced += len(batch)
                self.ctx.progress.line(f"  produced {state.produced}/{len(staged)} to "
                                       f"kafka:topic {cluster.topic}", dim=True)
        finally:
            producer.close(timeout=10)
            state.produce_s = self.ctx.clock() - start

    # -- settle --------------------------------------------------------------------------

    def settle(self, state: StageState) -> None:
        """Wait until the table holds every produced user as produced."""
        staged = state.diff.stage if state.produced else ()
        if not staged:
            return
        timeout = self.config.legacy.stage_timeout_s
        what = f"the loader to store {len(staged)} staged user(s) in {state.table}"
        start, attempt = self.ctx.clock(), 0
        while True:
            stored = legacy_table.stored(self.api, state.table, [u.email for u in staged])
            left = legacy_users.missing(staged, stored)
            state.stored = len(staged) - len(left)
            state.store_s = self.ctx.clock() - start
            if not left:
                return
            elapsed = self.ctx.clock() - start
            if elapsed >= timeout:
                raise StepFailed(
                    STEP_NAME, f"dynamodb:table {state.table}",
                    f"{len(left)} of {len(staged)} staged user(s) are not in the table as "
                    f"produced after {format_duration(elapsed)} (legacy.stage_timeout_s: "
                    f"{timeout}). Check the loader's event source mapping and its log "
                    "group; a run again stages only what the table lacks")
            self.ctx.progress.waiting(what, elapsed)
            attempt += 1
            self.ctx.sleep(min(WAIT_CAP_S, WAIT_BASE_S * 2 ** (attempt - 1)))

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, state: StageState) -> StageOutputs:
        return StageOutputs(table=state.table, source=state.source, users=len(state.users),
                            planned=len(state.diff.stage), produced=state.produced,
                            stored=state.stored, skipped=dict(state.skipped),
                            produce_s=round(state.produce_s, 3),
                            store_s=round(state.store_s, 3))


def _counts(counts: dict) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.items())


STEP = StageLegacyUsers
