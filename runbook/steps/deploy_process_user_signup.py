"""Step `deploy-process-user-signup` (phase a4): the consumer of the signup queue that
step event-bus made, and the schedule of the registration relay.

The function (lambdas/process_user_signup) runs in the private subnets and logs in to
the database as the registry says: as the database.roles entry with `trigger:
process-user-signup` by IAM, else with the DB secret, as Post-Confirmation does
(runbook.functions.deploy.database_login); with step db-proxy in the file, through the
RDS Proxy's endpoint, connecting as that user through the proxy's prx- id only. Its role may receive, delete and read the
attributes of messages of that one queue (what Lambda's poller needs: the SQS part of
AWSLambdaSQSQueueExecutionRole, scoped to one queue), write its logs and attach its
network interfaces; nothing else. The poller invokes it with that execution role, so
the mapping needs no resource-policy permission.

The event source mapping (runbook.resources.event_source_mapping) is made once the
function is active: batches of events.batch_size with ReportBatchItemFailures, at most
events.max_concurrency at once. Lambda refuses a function timeout above the queue's
visibility timeout; the plan refuses it first.

The schedule: an EventBridge rule on the default bus, every 5 minutes, whose target is
the same function. Post-Confirmation writes a registration to a transactional outbox in
the transaction that stores the profile; when PutEvents fails even after its resend,
the event is not lost but left in the outbox, and the scheduled invocation relays what
the outbox holds. Without the schedule, such a registration would reach `users` only
when someone remembered it. EventBridge may invoke the function through a statement of
its resource policy bound to this rule's ARN and the account (FunctionSpec.invoker).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.functions import package, registry
from runbook.functions.deploy import (FUNCTION_KEY, FunctionSpec, FunctionsMixin,
                                      FunctionState, Invoker, LayerState, function_spec)
from runbook.resources.base import Apply, Inventory
from runbook.resources.event_bus import DEFAULT_BUS, Rule, RuleSpec, Target, TargetSpec, rule_arn
from runbook.resources.event_source_mapping import (REPORT_FAILURES, EventSourceMapping,
                                                    MappingSpec)

STEP_NAME = "deploy-process-user-signup"
ENTRY = registry.PROCESS_USER_SIGNUP
KEY = ENTRY.key
EVENTS = "events.amazonaws.com"
# What Lambda's poller does with the execution role on the queue.
QUEUE_ACTIONS = ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
RELAY_SCHEDULE = "rate(5 minutes)"
RELAY_TARGET_ID, RELAY_STATEMENT_ID = "relay", "runbook-relay-schedule"
# A relay invocation that could not be delivered is worth nothing once the next one is
# due: EventBridge gives up on it after the interval, not after its default 24 h.
RELAY_MAX_AGE_S, RELAY_ATTEMPTS = 300, 2
FIELD = "network.name"                  # the rule's name derives from it

MAPPING, RULE, TARGET = EventSourceMapping(), Rule(), Target()
# Keys of the step's own inventory, in plan order (after the function's).
KEYS = ("mapping", "relay-rule", "relay-target")


@dataclass
class DeployState(Inventory):
    """found: KEYS; the function and the layer are inventories of their own."""

    layer: LayerState | None = None
    functions: dict[str, FunctionState] = field(default_factory=dict)
    account: str = ""


@dataclass(frozen=True)
class DeployOutputs(Outputs):
    function_name: str
    function_arn: str
    role_arn: str
    code_sha256: str
    db_auth: str                          # iam | secret
    mapping_uuid: str
    batch_size: int
    max_concurrency: int
    relay_rule_arn: str


@dataclass
class WhenActive:
    """Run a change once the function is active: Lambda's poller starts invoking it as
    soon as the mapping exists."""

    apply: Apply
    fn: FunctionState
    wait: Callable[[FunctionState], None]

    def __call__(self, api, state, **args) -> None:
        if self.fn.changed:
            self.wait(self.fn)
        return self.apply(api, state, **args)


class DeployProcessUserSignup(FunctionsMixin, Step):
    name = STEP_NAME

    # -- what the step wants ---------------------------------------------------------

    def relay_rule(self) -> str:
        return naming.relay_rule_name(self.config)

    def relay_rule_arn(self, account: str) -> str:
        return rule_arn(self.ctx.aws.region, account, DEFAULT_BUS, self.relay_rule())

    def proxy(self):
        """db-proxy's outputs when the function logs in through the RDS Proxy, else None."""
        return self.inputs.db_proxy if registry.through_proxy(self.config) else None

    def spec(self, account: str) -> FunctionSpec:
        base = function_spec(
            ENTRY, self.config, account=account, region=self.ctx.aws.region,
            network=self.inputs.vpc_integrate, database=self.inputs.database,
            secrets=self.inputs.store_secrets,
            proxy=self.proxy(),
            environment=dict(self.config.database.schemas.environment))
        queue = {"Sid": "ConsumeSignupQueue", "Effect": "Allow", "Action": QUEUE_ACTIONS,
                 "Resource": self.inputs.event_bus.queue_arn}
        return dataclasses.replace(
            base, statements=base.statements + (queue,),
            invoker=Invoker(EVENTS, self.relay_rule_arn(account), account, RELAY_STATEMENT_ID))

    def specs(self, fn: FunctionState, rule_found_arn: str | None = None) -> dict:
        """{key: (resource, spec)} of KEYS. `rule_found_arn`: the rule's, to claim its
        target by (the read); the plan knows it beforehand."""
        bus, spec, events = self.inputs.event_bus, fn.spec, self.config.events
        queue_name = str(bus.queue_arn).rsplit(":", 1)[-1]
        rule = self.relay_rule()
        rule_tags = naming.tags(self.config, STEP_NAME, rule)
        arn = rule_found_arn or self.relay_rule_arn(fn.account)
        return {
            "mapping": (MAPPING, MappingSpec(
                f"{spec.name}/{queue_name}", spec.tags, "events", function=spec.name,
                source_arn=bus.queue_arn, batch_size=events.batch_size,
                response_types=(REPORT_FAILURES,), max_concurrency=events.max_concurrency,
                function_timeout_s=spec.timeout_s, timeout_field=f"{ENTRY.section}.timeout_s",
                visibility_timeout_s=bus.visibility_timeout_s)),
            "relay-rule": (RULE, RuleSpec(
                rule, rule_tags, FIELD, arn=arn, bus=DEFAULT_BUS, schedule=RELAY_SCHEDULE,
                description=f"relays the registration outbox through {spec.name}")),
            "relay-target": (TARGET, TargetSpec(
                f"{rule}/{RELAY_TARGET_ID}", rule_tags, FIELD, rule=rule, rule_arn=arn,
                bus=DEFAULT_BUS, target_id=RELAY_TARGET_ID, arn=fn.arn,
                max_attempts=RELAY_ATTEMPTS, max_age_seconds=RELAY_MAX_AGE_S)),
        }

    # -- read ------------------------------------------------------------------------

    def read(self) -> DeployState:
        # The inputs first, so that a missing one is named before anything else is read;
        # fix-tables' too: the tables the consumer writes exist.
        for need in ("vpc_integrate", "database", "store_secrets", "fix_tables", "event_bus"):
            getattr(self.inputs, need)
        self.proxy()
        account = self.account()
        spec = self.spec(account)
        layer = self.read_layer(self.config.lambdas.runtime)
        artifact = package.build_function(KEY)
        function_found = self.find_function(spec)
        fn = FunctionState.of(spec, account, self.ctx.aws.region, artifact, function_found)
        found: dict = {}
        for key, (resource, wanted) in self.specs(fn).items():
            if key == "relay-target":
                rule = found["relay-rule"]
                wanted = self.specs(fn, rule.id)[key][1] if rule else None
            if key == "mapping" and not is_known(wanted.source_arn):
                wanted = None
            found[key] = resource.find(self.api, wanted) if wanted else None
        return self.state(account, layer, artifact, function_found, found)

    def state(self, account: str, layer: LayerState, artifact: package.Artifact,
              function_found: dict, found: dict) -> DeployState:
        """What was read, claimed and keyed for the plan: pure, so that plans are tested
        from data."""
        fn = FunctionState.of(self.spec(account), account, self.ctx.aws.region, artifact,
                              function_found)
        return DeployState(found={key: found.get(key) for key in KEYS}, layer=layer,
                           functions={KEY: fn}, account=account)

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: DeployState) -> list[Change]:
        fn = state.functions[KEY]
        changes = self.plan_layer(state.layer) + self.plan_function(fn, state.layer)
        for key, (resource, spec) in self.specs(fn).items():
            planned = resource.plan(spec, state.found.get(key), key)
            if key == "mapping":
                planned = [dataclasses.replace(c, run=WhenActive(c.run, fn, self.wait_active))
                           for c in planned]
            changes += planned
        return changes

    def settle(self, state: DeployState) -> None:
        self.settle_functions(state.functions)

    # -- outputs -----------------------------------------------------------------------

    def outputs(self, state: DeployState) -> DeployOutputs:
        fn = state.functions[KEY]
        mapping, rule = state.found.get("mapping"), state.found.get("relay-rule")
        events = self.config.events
        return DeployOutputs(
            function_name=fn.spec.name,
            function_arn=fn.found[FUNCTION_KEY].id if fn.found.get(FUNCTION_KEY) else UNKNOWN,
            role_arn=fn.role_arn if is_known(fn.role_arn) else UNKNOWN,
            code_sha256=fn.artifact.sha256,
            db_auth="iam" if fn.spec.environment.get("DB_AUTH") == "iam" else "secret",
            mapping_uuid=mapping.id if mapping else UNKNOWN,
            batch_size=events.batch_size, max_concurrency=events.max_concurrency,
            relay_rule_arn=rule.id if rule else UNKNOWN)


STEP = DeployProcessUserSignup
