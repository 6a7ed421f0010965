"""Step `deploy-user-migration` (phase a5): Cognito's UserMigration trigger, which signs a
legacy user in with the old password against the hash staged in the hash table, and the
Post-Authentication trigger that links the legacy profile to the new user.

The function (lambdas/user_migration) is not in the VPC: it only reads the hash table
(step hash-table), whose name it gets in HASH_TABLE, and returns the staged profile's
custom attributes, whose names (cognito.custom_attributes, without "custom:") it gets
in CUSTOM_ATTRIBUTES. It uses the dependency layer (passlib through libpass, bcrypt,
argon2), which deploy-post-confirmation has normally published already.

The role (one inline policy, runbook.functions.deploy):
- Logs: its own log group's streams;
- ReadHashes: dynamodb:GetItem on the one table (the handler reads one item a sign-in,
  and makes no other call);
- DecryptTableKey: kms:Decrypt on the table's customer-managed key, only through
  DynamoDB (kms:ViaService): DynamoDB decrypts the table key on behalf of the principal
  reading the table (hash_table.decrypt_statement).
Cognito may invoke it from this pool, in this account only (the invoke permission).

Two triggers are set on the pool, in one UpdateUserPool that sends the pool's whole
configuration back (it resets what it omits, Pre-SignUp and Post-Confirmation
included), after the function is active:
- UserMigration: this function;
- PostAuthentication: deploy-post-confirmation's function. After a migration sign-in
  Cognito fires the Pre- and Post-Authentication triggers, not Post-Confirmation, which
  fires only on ConfirmSignUp, AdminConfirmSignUp and ConfirmForgotPassword (Cognito
  developer guide, "Post confirmation Lambda trigger"). So the function that links a
  profile by address on confirmation does it on PostAuthentication_Authentication too,
  under the invoke permission it already has (bound to the pool, not to one trigger).

Cognito calls UserMigration only on a password sign-in (USER_PASSWORD_AUTH or the
admin flow), never for SRP, whose client never sends the password. The app client must
therefore allow ALLOW_USER_PASSWORD_AUTH, which step cognito sets: a client without it is
refused, not changed here (the client is cognito's).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from runbook.aws.api import or_none
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import PlanError
from runbook.functions import package, registry
from runbook.functions.deploy import (FUNCTION_KEY, FunctionSpec, FunctionsMixin,
                                      FunctionState, LayerState, function_spec)
from runbook.steps import hash_table

STEP_NAME = "deploy-user-migration"
ENTRY = registry.USER_MIGRATION
KEY = ENTRY.key
TABLE_VARIABLE = "HASH_TABLE"
ATTRIBUTES_VARIABLE = "CUSTOM_ATTRIBUTES"
# The trigger the Post-Confirmation function is also attached as (see the docstring).
POST_AUTHENTICATION = "PostAuthentication"
# The app client's flow without which Cognito never calls the trigger; step cognito
# sets it (runbook.resources.user_pool.EXPLICIT_AUTH_FLOWS).
PASSWORD_FLOW = "ALLOW_USER_PASSWORD_AUTH"


@dataclass
class MigrationState:
    layer: LayerState
    functions: dict[str, FunctionState] = field(default_factory=dict)
    pool: dict | None = None              # DescribeUserPool's, for the triggers
    client: dict | None = None            # DescribeUserPoolClient's, for its flows


@dataclass(frozen=True)
class MigrationOutputs(Outputs):
    function_name: str
    function_arn: Any
    role_arn: Any
    layer_version_arn: Any
    code_sha256: str
    post_authentication_arn: Any


class DeployUserMigration(FunctionsMixin, Step):
    name = STEP_NAME

    # -- what the step wants ---------------------------------------------------------

    def statements(self) -> tuple[dict, ...]:
        table = self.inputs.hash_table
        return (
            {"Sid": "ReadHashes", "Effect": "Allow", "Action": "dynamodb:GetItem",
             "Resource": table.table_arn},
            hash_table.decrypt_statement(table.key_arn, self.ctx.aws.region),
        )

    def spec(self, account: str) -> FunctionSpec:
        attributes = sorted(self.config.cognito.custom_attributes)
        environment = {TABLE_VARIABLE: self.inputs.hash_table.table_name,
                       ATTRIBUTES_VARIABLE: ",".join(attributes)}
        base = function_spec(ENTRY, self.config, account=account, region=self.ctx.aws.region,
                             pool_arn=self.inputs.cognito.user_pool_arn, environment=environment)
        return dataclasses.replace(base, statements=base.statements + self.statements())

    def triggers(self, fn: FunctionState) -> dict:
        return {ENTRY.trigger: fn,
                POST_AUTHENTICATION: self.inputs.deploy_post_confirmation.function_arn}

    # -- read ------------------------------------------------------------------------

    def read(self) -> MigrationState:
        # The inputs first, so that a missing one is named before anything else is read.
        cognito = self.inputs.cognito
        self.inputs.hash_table
        self.inputs.deploy_post_confirmation
        account = self.account()
        spec = self.spec(account)
        layer = self.read_layer(self.config.lambdas.runtime)
        return self.state(account, layer, package.build_function(KEY), self.find_function(spec),
                          self.read_pool(cognito.user_pool_id), self.read_client(cognito))

    def read_client(self, cognito) -> dict | None:
        """The app client's description; None while the pool or the client is not made."""
        if not (is_known(cognito.user_pool_id) and is_known(cognito.client_id)):
            return None
        idp = self.api.client("cognito-idp")
        described = or_none(lambda: idp.describe_user_pool_client(
            UserPoolId=cognito.user_pool_id, ClientId=cognito.client_id))
        return described["UserPoolClient"] if described else None

    def state(self, account: str, layer: LayerState, artifact: package.Artifact,
              found: dict, pool: dict | None, client: dict | None) -> MigrationState:
        """What was read, claimed and keyed for the plan: pure, so that plans are tested
        from data."""
        fn = FunctionState.of(self.spec(account), account, self.ctx.aws.region, artifact, found)
        return MigrationState(layer, {KEY: fn}, pool, client)

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: MigrationState) -> list[Change]:
        self.check_client(state.client)
        fn = state.functions[KEY]
        return (self.plan_layer(state.layer) + self.plan_function(fn, state.layer)
                + self.plan_triggers(state.pool, self.config.cognito.user_pool,
                                     self.triggers(fn)))

    def check_client(self, client: dict | None) -> None:
        """Refuse an app client whose users cannot sign in with a password: Cognito would
        never call the trigger. (None: step cognito has yet to make it, with the flow.)"""
        if client is None:
            return
        flows = client.get("ExplicitAuthFlows") or []
        if PASSWORD_FLOW in flows:
            return
        raise PlanError(
            self.name, f"cognito-idp:app-client {client.get('ClientName')} "
                       f"({client.get('ClientId')})",
            f"its ExplicitAuthFlows ({', '.join(sorted(flows)) or 'none'}) lack "
            f"{PASSWORD_FLOW}. Cognito calls the UserMigration trigger only when a user signs "
            "in with the password (USER_PASSWORD_AUTH), never with SRP, so no legacy user "
            f"could sign in. Run `runbook run --step cognito --env {self.config.env}`, which "
            "sets it, then this step again.")

    def settle(self, state: MigrationState) -> None:
        self.settle_functions(state.functions)

    # -- outputs -----------------------------------------------------------------------

    def outputs(self, state: MigrationState) -> MigrationOutputs:
        fn = state.functions[KEY]
        return MigrationOutputs(
            function_name=fn.spec.name,
            # Outputs carry no reference: it names a key of this step's state only.
            function_arn=fn.found[FUNCTION_KEY].id if fn.found.get(FUNCTION_KEY) else UNKNOWN,
            role_arn=fn.role_arn if is_known(fn.role_arn) else UNKNOWN,
            layer_version_arn=state.layer.arn or UNKNOWN,
            code_sha256=fn.artifact.sha256,
            post_authentication_arn=self.inputs.deploy_post_confirmation.function_arn)


STEP = DeployUserMigration
