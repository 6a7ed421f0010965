"""Step `deploy-post-confirmation`: the Post-Confirmation function in the private
subnets, its role, its layer, the Cognito invoke permission and the trigger on the pool.

How the function logs in to the database follows the environment file:

  a role declared with `trigger: post-confirmation` in database.roles
        DB_AUTH=iam as that role (IAM-only, least privilege: fix-tables granted it the
        upsert's columns and nothing else); the execution role may `rds-db:connect` as
        that one database user and may not read the DB secret.
  otherwise
        DB_SECRET_ARN: the master credentials, read from the one secret the execution
        role may read. This is what the old scripts did; a trigger role is better.

The trigger is attached last, after the function is active and Cognito may invoke it,
with the pool's whole configuration sent back (UpdateUserPool resets what it omits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step
from runbook.functions.deploy import (FunctionSpec, FunctionsMixin, FunctionState, Invoker,
                               LayerState, database_login)

STEP_NAME = "deploy-post-confirmation"
KEY = "post_confirmation"
TRIGGER = "PostConfirmation"


@dataclass
class DeployState:
    layer: LayerState
    functions: dict[str, FunctionState] = field(default_factory=dict)
    pool_id: str = UNKNOWN
    pool: dict | None = None


@dataclass(frozen=True)
class DeployOutputs(Outputs):
    function_name: str
    function_arn: str
    role_arn: str
    layer_version_arn: str
    code_sha256: str
    db_auth: str                          # iam | secret


class DeployPostConfirmation(FunctionsMixin, Step):
    name = STEP_NAME

    def read(self) -> DeployState:
        network = self.inputs.vpc_integrate
        database = self.inputs.database
        secrets = self.inputs.store_secrets
        self.inputs.fix_tables  # the tables the trigger writes exist
        cognito = self.inputs.cognito
        spec = self.spec(network, database, secrets, cognito)
        state = DeployState(self.read_layer(self.config.lambdas.runtime),
                            pool_id=cognito.user_pool_id)
        self.functions = state.functions
        state.functions[KEY] = self.read_function(spec)
        state.pool = self.read_pool(state.pool_id)
        return state

    def trigger_role(self) -> str | None:
        return next((name for name, role in self.config.database.roles.items()
                     if role.trigger == "post-confirmation"), None)

    def spec(self, network: dict, database: dict, secrets: dict, cognito: dict) -> FunctionSpec:
        config, region, account = self.config, self.ctx.aws.region, self.account()
        environment, statement = database_login(database, secrets, iam_user=self.trigger_role(),
                                                account=account, region=region)
        environment["DB_SCHEMA"] = config.database.schema
        name = config.function_name(KEY)
        settings = config.lambdas.post_confirmation
        return FunctionSpec(
            key=KEY, name=name, runtime=config.lambdas.runtime, memory_mb=settings.memory_mb,
            timeout_s=settings.timeout_s, environment=environment, statements=(statement,),
            subnet_ids=tuple(network.subnet_ids),
            security_group_ids=(network.lambda_security_group_id,), layer=True,
            invoker=Invoker("cognito-idp.amazonaws.com", cognito.user_pool_arn, account,
                            "runbook-cognito-post-confirmation"),
            log_retention_days=config.lambdas.log_retention_days,
            tags=naming.tags(config, STEP_NAME, name))

    def plan(self, state: DeployState) -> list[Change]:
        fn = state.functions[KEY]
        return (self.plan_layer(state.layer) + self.plan_function(fn, state.layer)
                + self.plan_trigger(state.pool, self.config.cognito.user_pool, TRIGGER, fn))

    def settle(self, state: DeployState) -> None:
        self.settle_functions(state.functions)

    def outputs(self, state: DeployState) -> DeployOutputs:
        fn = state.functions[KEY]
        return DeployOutputs(
            function_name=fn.spec.name,
            function_arn=fn.function["FunctionArn"] if fn.function else UNKNOWN,
            role_arn=fn.role_arn,
            layer_version_arn=state.layer.arn or UNKNOWN,
            code_sha256=fn.artifact.sha256,
            db_auth="iam" if self.trigger_role() else "secret")


STEP = DeployPostConfirmation
