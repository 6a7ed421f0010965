"""The catalogue of steps: names, what each needs, and where its code lives.

This module is plain data so that validating an environment file (and `runbook --help`)
never imports boto3. A step's module is imported only when the step runs.

`requires` names the steps whose outputs a step consumes, and is the one place that says
so: a step reads them as `self.inputs.<step>` and may read no other. The environment file
must list them earlier; at run time they are read live if they did not run in the same
invocation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class StepInfo:
    name: str
    module: str | None          # None: named by the design, not built in this version
    requires: tuple[str, ...] = ()
    idempotent: bool = True
    # Steps consumed only under some settings: (step, whether the config needs it).
    requires_if: tuple[tuple[str, Callable[[Any], bool]], ...] = ()
    # What the step converges or observes beside other steps (LAYER, SIGN_UP_PATH): when
    # a live run overlaps steps (runbook.engine.schedule), two that share one do not
    # overlap; the one listed first goes first, as in a serial run.
    shares: tuple[str, ...] = ()

    def needs(self, config) -> tuple[str, ...]:
        """`requires`, plus the steps this environment file's settings make it consume."""
        return self.requires + tuple(step for step, when in self.requires_if if when(config))

    def load(self):
        """The Step class (step_class)."""
        return step_class(self.name)


def _connects_through_lambda(config) -> bool:
    """fix-tables with database.connect: lambda runs db_migrate in vpc-integrate's
    subnets, with its Lambda security group (runbook.functions.registry says when)."""
    from runbook.functions.registry import DB_MIGRATE

    return DB_MIGRATE.deployed(config)


def _through_proxy(config) -> bool:
    """The functions log in through the RDS Proxy when the file has step db-proxy
    (runbook.functions.registry.through_proxy): their deploy steps read its endpoint."""
    from runbook.functions.registry import through_proxy

    return through_proxy(config)


# The dependency layer (runbook.functions.deploy): one name, published by whichever step
# first finds its content changed; two at once would publish two versions.
LAYER = "the dependency layer"
# What a sign-up goes through: the pool and its triggers, and the registration's path to
# `users` (bus, queue, consumer). A test observes all of it and cleans up after its user,
# so it must not overlap a step that changes it: integration-test reads whether a4's
# consumer is deployed, and an event queued before the consumer exists is stored after
# the test deleted its rows.
SIGN_UP_PATH = "the sign-up path"

CATALOGUE: dict[str, StepInfo] = {
    info.name: info
    for info in (
        StepInfo("network", "runbook.steps.network"),
        StepInfo("database", "runbook.steps.database", requires=("network",)),
        StepInfo("store-secrets", "runbook.steps.store_secrets", requires=("database",)),
        StepInfo("cognito", "runbook.steps.cognito", shares=(SIGN_UP_PATH,)),
        StepInfo("vpc-integrate", "runbook.steps.vpc_integrate", requires=("network", "database")),
        StepInfo("db-proxy", "runbook.steps.db_proxy",
                 requires=("network", "database", "vpc-integrate")),
        StepInfo("fix-tables", "runbook.steps.fix_tables", requires=("database", "store-secrets"),
                 requires_if=(("vpc-integrate", _connects_through_lambda),), shares=(LAYER,)),
        StepInfo("deploy-post-confirmation", "runbook.steps.deploy_post_confirmation",
                 requires=("vpc-integrate", "fix-tables", "cognito", "database",
                           "store-secrets"),
                 requires_if=(("db-proxy", _through_proxy),), shares=(LAYER, SIGN_UP_PATH)),
        StepInfo("event-bus", "runbook.steps.event_bus", shares=(SIGN_UP_PATH,)),
        StepInfo("deploy-process-user-signup", "runbook.steps.deploy_process_user_signup",
                 requires=("vpc-integrate", "fix-tables", "event-bus", "database",
                           "store-secrets"),
                 requires_if=(("db-proxy", _through_proxy),), shares=(LAYER, SIGN_UP_PATH)),
        StepInfo("integration-test", "runbook.steps.integration_test",
                 requires=("deploy-post-confirmation", "cognito", "database", "store-secrets"),
                 idempotent=False, shares=(SIGN_UP_PATH,)),
        StepInfo("registration-test", "runbook.steps.registration_test",
                 requires=("deploy-process-user-signup", "event-bus", "deploy-post-confirmation",
                           "cognito", "database", "store-secrets"),
                 idempotent=False, shares=(SIGN_UP_PATH,)),
        # Phase a5: the legacy users' password hashes, and the UserMigration trigger.
        StepInfo("hash-table", "runbook.steps.hash_table"),
        StepInfo("msk-cluster", "runbook.steps.msk_cluster", requires=("network",)),
        StepInfo("deploy-legacy-loader", "runbook.steps.deploy_legacy_loader",
                 requires=("msk-cluster", "hash-table")),
        StepInfo("stage-legacy-users", "runbook.steps.stage_legacy_users",
                 requires=("hash-table", "msk-cluster", "deploy-legacy-loader")),
        StepInfo("deploy-user-migration", "runbook.steps.deploy_user_migration",
                 requires=("cognito", "hash-table", "deploy-post-confirmation"),
                 shares=(LAYER, SIGN_UP_PATH)),
        StepInfo("migration-test", "runbook.steps.migration_test",
                 requires=("deploy-user-migration", "deploy-legacy-loader", "msk-cluster",
                           "hash-table", "deploy-post-confirmation", "cognito", "database",
                           "store-secrets"),
                 idempotent=False, shares=(SIGN_UP_PATH,)),
    )
}


def step_class(name: str):
    """Import and return the Step class for `name` (a key of CATALOGUE)."""
    info = CATALOGUE[name]
    if info.module is None:
        from runbook.errors import BadInput

        raise BadInput(
            f"step {name!r} is part of the design but not built in this version of "
            "runbook, so it cannot run yet. Run the phases before it, or use "
            "`--step` with a built step."
        )
    return importlib.import_module(info.module).STEP


def new_runner(config, aws, progress, **options):
    """A Runner (runbook.engine) over this catalogue. Unless `invoker` is given, steps
    invoke functions on Lambda, or in a dry run locally against the sandbox."""
    from runbook.engine import Runner
    from runbook.functions.invoke import for_steps

    if options.get("invoker") is None:
        options["invoker"] = for_steps(aws, dry_run=options.get("dry_run", False),
                                       database_dsn=options.get("database_dsn"),
                                       database_tls=options.get("database_tls"))
    return Runner(config, aws, progress, catalogue=CATALOGUE, **options)
