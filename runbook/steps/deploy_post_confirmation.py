"""Step `deploy-post-confirmation`: the Post-Confirmation function in the private
subnets, its role, its layer, the Cognito invoke permission and the trigger on the pool.

How the function logs in to the database follows the environment file:

  a role declared with `trigger: post-confirmation` in database.roles
        DB_AUTH=iam as that role (IAM-only, least privilege: fix-tables granted it the
        upsert's columns and nothing else); the execution role may `rds-db:connect` as
        that one database user and may not read the DB secret. With step db-proxy in the
        file, through the RDS Proxy: DB_HOST is its endpoint, the token is signed for
        it, and the connect is allowed through its prx- id only (function_spec).
  otherwise
        DB_SECRET_ARN: the master credentials, read from the one secret the execution
        role may read. This is what the old scripts did; a trigger role is better.

With phase a4 in the file (Config.publishes_registrations), the function also publishes
each sign-up to the environment's event bus: EVENT_BUS_NAME names it, and one statement
allows events:PutEvents on that bus alone. Both are known from the file, so this step
need not follow event-bus: until event-bus has made the bus, a sign-up's event waits
in the registration outbox (lambdas/post_confirmation), and the relay of step
deploy-process-user-signup stores it.

The trigger is attached last, after the function is active and Cognito may invoke it,
with the pool's whole configuration sent back (UpdateUserPool resets what it omits).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.functions import package, registry
from runbook.functions.deploy import (FUNCTION_KEY, FunctionSpec, FunctionsMixin,
                                      FunctionState, LayerState, function_spec)
from runbook.resources.event_bus import bus_arn

STEP_NAME = "deploy-post-confirmation"
ENTRY = registry.POST_CONFIRMATION
KEY = ENTRY.key
# The statement that lets the function publish user.registered on the bus (phase a4).
PUBLISH_SID = "PublishRegistrations"


@dataclass
class DeployState:
    layer: LayerState
    functions: dict[str, FunctionState] = field(default_factory=dict)
    pool: dict | None = None              # DescribeUserPool's, for the trigger


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

    def proxy(self):
        """db-proxy's outputs when the function logs in through the RDS Proxy, else None."""
        return self.inputs.db_proxy if registry.through_proxy(self.config) else None

    def spec(self, account: str) -> FunctionSpec:
        environment, statements = dict(self.config.database.schemas.environment), ()
        if self.config.publishes_registrations():
            bus = naming.event_bus_name(self.config)
            environment["EVENT_BUS_NAME"] = bus
            statements = ({"Sid": PUBLISH_SID, "Effect": "Allow", "Action": ["events:PutEvents"],
                           "Resource": bus_arn(self.ctx.aws.region, account, bus)},)
        spec = function_spec(
            ENTRY, self.config, account=account, region=self.ctx.aws.region,
            network=self.inputs.vpc_integrate, database=self.inputs.database,
            secrets=self.inputs.store_secrets, pool_arn=self.inputs.cognito.user_pool_arn,
            proxy=self.proxy(),
            environment=environment)
        return dataclasses.replace(spec, statements=spec.statements + statements)

    def read(self) -> DeployState:
        # The inputs first, in this order, so that a missing one is named before anything
        # else is read; fix-tables' too: the tables the trigger writes exist.
        for need in ("vpc_integrate", "database", "store_secrets", "fix_tables", "cognito"):
            getattr(self.inputs, need)
        self.proxy()
        account = self.account()
        spec = self.spec(account)
        layer = self.read_layer(self.config.lambdas.runtime)
        return self.state(account, layer, package.build_function(KEY), self.find_function(spec),
                          self.read_pool(self.inputs.cognito.user_pool_id))

    def state(self, account: str, layer: LayerState, artifact: package.Artifact,
              found: dict, pool: dict | None) -> DeployState:
        """What was read, claimed and keyed for the plan: pure, so that plans are tested
        from data."""
        fn = FunctionState.of(self.spec(account), account, self.ctx.aws.region, artifact, found)
        return DeployState(layer, {KEY: fn}, pool)

    def plan(self, state: DeployState) -> list[Change]:
        fn = state.functions[KEY]
        return (self.plan_layer(state.layer) + self.plan_function(fn, state.layer)
                + self.plan_trigger(state.pool, self.config.cognito.user_pool, ENTRY.trigger,
                                    fn))

    def settle(self, state: DeployState) -> None:
        self.settle_functions(state.functions)

    def outputs(self, state: DeployState) -> DeployOutputs:
        fn = state.functions[KEY]
        return DeployOutputs(
            function_name=fn.spec.name,
            # Outputs carry no reference: it names a key of this step's state only.
            function_arn=fn.found[FUNCTION_KEY].id if fn.found.get(FUNCTION_KEY) else UNKNOWN,
            role_arn=fn.role_arn if is_known(fn.role_arn) else UNKNOWN,
            layer_version_arn=state.layer.arn or UNKNOWN,
            code_sha256=fn.artifact.sha256,
            db_auth="iam" if fn.spec.environment.get("DB_AUTH") == "iam" else "secret")


STEP = DeployPostConfirmation
