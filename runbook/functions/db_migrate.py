"""The db_migrate function as fix-tables deploys it and talks to it
(`database.connect: lambda`).

The cluster is in private subnets. fix-tables puts db_migrate (lambdas/db_migrate) in the
subnets and with the Lambda security group that vpc-integrate made, which the cluster's
security group admits on 5432, and sends it the rendered migrations
(runbook.lambda_runtime.migrate_event). It logs in as runbook would directly: with the DB
secret, or with `database.auth: iam` as `master_username` with an RDS auth token. Its
execution role may do that and nothing else besides its log group and the ENI actions;
nothing but runbook invokes it, so it has no resource policy.
"""

from __future__ import annotations

from runbook.errors import StepFailed
from runbook.functions import registry
from runbook.functions.deploy import FunctionSpec, function_spec

ENTRY = registry.DB_MIGRATE
KEY = ENTRY.key
STEP_NAME = ENTRY.step


def spec(config, network, database, secrets, *, account: str, region: str) -> FunctionSpec:
    return function_spec(ENTRY, config, account=account, region=region, network=network,
                         database=database, secrets=secrets)


def call(ctx, function_name: str, event: dict) -> dict:
    """Invoke db_migrate (StepContext.invoke) and return its answer.

    A failure inside the function (a FunctionError, a timeout) is a StepFailed that names
    the function and gives the error type and message, which name no row value.
    """
    invocation = ctx.invoke(function_name, event)
    if not invocation.ok:
        raise StepFailed(STEP_NAME, f"lambda:function {function_name}",
                         f"{invocation.error_type}: {invocation.error_message}")
    if not isinstance(invocation.result, dict):
        raise unexpected(function_name, f"it answered {type(invocation.result).__name__}")
    return invocation.result


def unexpected(function_name: str, why: str) -> StepFailed:
    """The function answered in a shape this runbook does not know: another version."""
    return StepFailed(STEP_NAME, f"lambda:function {function_name}",
                      f"{why}, which is not how this runbook's db_migrate answers")
