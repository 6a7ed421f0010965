"""Step `cognito`: the user pool (e-mail is the username), its custom attributes, the
Pre-SignUp function and trigger, and the web app client.

The pool and the client are runbook.resources.user_pool's: found by `cognito.pool_id`,
else by name, adopted and tagged rather than duplicated, and changed without resetting
what a change omits (that module says how, and which pools are refused).

The Pre-SignUp function (lambdas/pre_signup) is deployed by this step through
`runbook.functions`: its execution role (logs on its own log group, nothing else: it
reads no database and no secret), its log group, the function (outside the VPC, with
the allowed and auto-confirmed domains in its environment) and the permission that lets
`cognito-idp.amazonaws.com` invoke it, bound to this pool's ARN and this account. The
pool's ARN is known only once the pool exists, so the permission is planned with it
unknown on a first run and bound when the pool has been created. The trigger is
attached after the function exists and is active.

Triggers come from `desired_triggers`. Its ARNs may be UNKNOWN while planning a
function not yet created; they are asked for again when the change is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import BadInput, StepFailed
from runbook.functions import registry
from runbook.functions.deploy import FunctionSpec, FunctionsMixin, FunctionState, function_spec
from runbook.resources.base import Inventory
from runbook.resources.user_pool import (PASSWORD_FIELDS, AppClient, AppClientFound,
                                         AppClientSpec, UserPool, UserPoolFound,
                                         UserPoolSpec, attribute_schema)

STEP_NAME = "cognito"
PRE_SIGNUP = registry.PRE_SIGNUP.key      # lambdas/pre_signup
PRE_SIGNUP_TRIGGER = registry.PRE_SIGNUP.trigger
POOL, CLIENT = UserPool(), AppClient()


@dataclass
class CognitoState(Inventory):
    """found: "pool" (UserPoolFound) and "client" (AppClientFound), or None."""

    functions: dict[str, FunctionState] = field(default_factory=dict)


@dataclass(frozen=True)
class CognitoOutputs(Outputs):
    user_pool_id: str
    user_pool_arn: str
    client_id: str
    user_pool_name: str
    pre_signup_function_arn: str


class CognitoStep(FunctionsMixin, Step):
    name = STEP_NAME

    @property
    def cognito(self):
        if self.config.cognito is None:
            raise BadInput("cognito: the environment file has no cognito section, which step "
                           "'cognito' needs (user_pool and client names at least).")
        return self.config.cognito

    # -- hooks ---------------------------------------------------------------------

    def desired_triggers(self, state: CognitoState) -> dict[str, str]:
        """Trigger name -> Lambda ARN runbook attaches ({"PreSignUp": arn}); an ARN may be
        UNKNOWN while planning. Other triggers on the pool are kept."""
        fn = state.functions.get(PRE_SIGNUP)
        return {PRE_SIGNUP_TRIGGER: fn.arn} if fn is not None else {}

    # -- what the step wants ---------------------------------------------------------

    def pool_spec(self, triggers: dict | None = None) -> UserPoolSpec:
        """The pool; `triggers` only matter to a plan (a pool is found without them)."""
        cognito = self.cognito
        return UserPoolSpec(
            cognito.user_pool, naming.tags(self.config, STEP_NAME, cognito.user_pool),
            "cognito.pool_id" if cognito.pool_id else "cognito.user_pool", cognito.pool_id,
            password_policy={name: getattr(cognito.password_policy, name)
                             for name, _ in PASSWORD_FIELDS},
            deletion_protection=cognito.deletion_protection,
            custom_attributes={name: attribute_schema(name, a.type, a.mutable, a.max_length)
                               for name, a in cognito.custom_attributes.items()},
            triggers=dict(triggers or {}))

    def client_spec(self, pool_id) -> AppClientSpec:
        name = self.cognito.client
        return AppClientSpec(name, naming.tags(self.config, STEP_NAME, name), "cognito.client",
                             pool_id=pool_id)

    def pre_signup_spec(self, pool_arn: str, account: str) -> FunctionSpec:
        """The Pre-SignUp function (runbook.functions.registry: outside the VPC, no layer,
        no database), with the domain rules in its environment."""
        cognito = self.cognito
        environment = {}
        if cognito.allowed_domains:
            environment["ALLOWED_EMAIL_DOMAINS"] = ",".join(cognito.allowed_domains)
        if cognito.auto_confirm_domains:
            environment["AUTO_CONFIRM_DOMAINS"] = ",".join(cognito.auto_confirm_domains)
        return function_spec(registry.PRE_SIGNUP, self.config, account=account,
                             region=self.ctx.aws.region, pool_arn=pool_arn,
                             environment=environment)

    # -- read ----------------------------------------------------------------------

    def read(self) -> CognitoState:
        pools = POOL.candidates(self.api, self.pool_spec())
        # Refused here already, so that nothing more is read of a pool runbook will not use.
        pool = self._chosen(pools)
        client = CLIENT.find(self.api, self.client_spec(pool.id)) if pool is not None else None
        function = self.read_function(
            self.pre_signup_spec(pool.arn if pool is not None else UNKNOWN, self.account()))
        return self.state(pools, client, function)

    def state(self, pools: dict, client: AppClientFound | None,
              pre_signup: FunctionState) -> CognitoState:
        """What was read, keyed for the plan: pure, so that plans are tested from data.
        `pools` are the pool's candidates (Resource.candidates)."""
        return CognitoState(found={"pool": self._chosen(pools), "client": client},
                            functions={PRE_SIGNUP: pre_signup})

    def _chosen(self, pools: dict) -> UserPoolFound | None:
        """The pool adopted among the candidates (Resource.choose), claimed."""
        spec = self.pool_spec()
        pool = POOL.choose(spec, **pools)
        if pool is not None:
            POOL.claim(spec, pool)
        return pool

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: CognitoState) -> list[Change]:
        function = self.plan_function(state.functions[PRE_SIGNUP])
        spec, pool = self.pool_spec(self.desired_triggers(state)), state.found.get("pool")
        changes = [self._once_functions_are_active(c) if c.action == "create" else c
                   for c in POOL.plan(spec, pool, "pool")]
        changes += POOL.plan_custom_attributes(spec, pool, "pool")
        if pool is None:
            # The function first, so that the pool is created with its trigger in one
            # call; the invoke permission names the pool's ARN, so it comes after.
            permission = [c for c in function if c.op == "set_permission"]
            function = [c for c in function if c.op != "set_permission"]
            return function + changes + permission + self._plan_client(state)
        changes += function
        changes += [self._once_functions_are_active(c)
                    for c in POOL.plan_triggers(spec, pool, "pool")]
        return changes + self._plan_client(state)

    def _plan_client(self, state: CognitoState) -> list[Change]:
        return CLIENT.plan(self.client_spec(state.ref("pool")), state.found.get("client"),
                           "client")

    def _once_functions_are_active(self, change: Change) -> Change:
        """A change that attaches triggers (the pool's create, or its triggers' update),
        run with the triggers asked for again, once their functions exist and are active:
        Cognito calls a trigger from the moment it is attached. A created pool's ARN is
        then bound to Pre-SignUp's invoke permission."""

        def run(api, state: CognitoState, spec: UserPoolSpec, **args) -> None:
            triggers = self.desired_triggers(state)
            unknown = sorted(name for name, arn in triggers.items() if not is_known(arn))
            if unknown:
                raise StepFailed(STEP_NAME, change.resource,
                                 f"the function of trigger {', '.join(unknown)} is still unknown")
            for fn in state.functions.values():
                if fn.changed:
                    self.wait_active(fn)
            change.run(api, state, spec=replace(spec, triggers=triggers), **args)
            if change.action == "create":
                fn = state.functions[PRE_SIGNUP]
                fn.spec = replace(fn.spec, invoker=replace(fn.spec.invoker,
                                                           source_arn=state.found["pool"].arn))

        return replace(change, run=run)

    # -- settle and outputs ----------------------------------------------------------

    def settle(self, state: CognitoState) -> None:
        self.settle_functions(state.functions)

    def outputs(self, state: CognitoState) -> CognitoOutputs:
        pool, client = state.found.get("pool"), state.found.get("client")
        fn = state.functions[PRE_SIGNUP]
        return CognitoOutputs(
            user_pool_id=pool.id if pool else UNKNOWN,
            user_pool_arn=pool.arn if pool else UNKNOWN,
            client_id=client.id if client else UNKNOWN,
            user_pool_name=pool.name if pool else self.cognito.user_pool,
            pre_signup_function_arn=fn.function["FunctionArn"] if fn.function else UNKNOWN)


STEP = CognitoStep
