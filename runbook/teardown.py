"""`runbook destroy`: take an environment down in the order AWS needs, deleting only
what runbook made.

What is torn down is found by its tags, not by the environment file's names: every
resource of every kind that carries the environment's runbook:env tag
(Resource.owned), from the steps destroyed, a phase and every phase after it, or the
whole environment (then also what a step the file no longer lists made). A resource
that carries runbook:created, set only in the call that made it, is deleted; one runbook
adopted (made by the old shell scripts, or by hand) is kept, and said so. Three things
carry no tags and follow what they belong to: a function's event source mappings, the
dependency layer (runbook's by its description, this environment's by its name), and the
Cognito triggers that name a function being deleted, taken off a pool that stays.

The order (STAGES) is what AWS needs (AWS-FACTS D): the event source mappings,
triggers, rules and functions first; the execution roles only once Lambda has released
the functions' network interfaces in the groups and subnets going away (Lambda uses the
role to delete them, and an interface left `available` is deleted here); then the
queues, logs and alarms; the secrets (a recovery window by default); the hash table and
its key; the MSK cluster; the proxy, the instances, the cluster (a final snapshot by
default), its parameter and subnet groups; the endpoints, the groups (the rules that
reference other groups revoked first), the route tables, subnets, gateway and VPC.
Each delete starts; a stage of slow kinds waits, printing the elapsed time, until all
of it is gone before the next starts.

Crash-safe by construction: every delete is a write the run's journal records as it
returns, `delete` is idempotent, and a destroy reads the account afresh. One cut short
at any point and run again lists what is left and finishes the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from runbook.aws import naming, retry
from runbook.aws.api import Api
from runbook.engine.plan import Change
from runbook.errors import BadInput, RunbookError, StepFailed
from runbook.resources.alarm import Alarm
from runbook.resources.base import DeleteOptions, Found, Resource
from runbook.resources.dynamodb_table import DynamoTable
from runbook.resources.event_bus import EventBus, Rule
from runbook.resources.event_source_mapping import EventSourceMapping
from runbook.resources.iam_role import Role
from runbook.resources.internet_gateway import InternetGateway
from runbook.resources.kms_key import KmsKey
from runbook.resources.lambda_function import LambdaFunction
from runbook.resources.lambda_layer import LayerVersion
from runbook.resources.log_group import LogGroup
from runbook.resources.msk_cluster import MskCluster
from runbook.resources.network_interface import NetworkInterface, blocking, lambda_interfaces
from runbook.resources.queue import Queue
from runbook.resources.rds import Cluster, ClusterParameterGroup, Instance, SubnetGroup
from runbook.resources.rds_proxy import DbProxy
from runbook.resources.secret import Secret
from runbook.resources.security_group import SecurityGroup, revoke_references
from runbook.resources.security_group_rule import SecurityGroupRule
from runbook.resources.user_pool import UserPool
from runbook.resources.vpc import RouteTable, Subnet, Vpc
from runbook.resources.vpc_endpoint import VpcEndpoint

MINUTE = 60.0

# Where an environment file says that an environment must not be destroyed, by the
# step whose resource the field protects.
PROTECTION = {"database": "database.deletion_protection",
              "cognito": "cognito.deletion_protection",
              "hash-table": "legacy.deletion_protection"}

MAPPING, FUNCTION, LAYER = EventSourceMapping(), LambdaFunction(), LayerVersion()
POOL, GROUP, SUBNET, INTERFACE = UserPool(), SecurityGroup(), Subnet(), NetworkInterface()
CLUSTER, SECRET, KEY = Cluster(), Secret(), KmsKey()


@dataclass(frozen=True)
class Stage:
    kind: Resource
    # Wait until every one deleted here is gone before the next stage starts, for at
    # most this long; 0: its deletes take effect in the call.
    wait_s: float = 0
    # Owned resources of the kind are listed (Resource.owned); False: found through
    # another kind (a mapping through its function, the layer by its name).
    listed: bool = True


# In the order they are deleted. Reported times: AWS-FACTS D.
STAGES = (
    Stage(MAPPING, wait_s=15 * MINUTE, listed=False),
    Stage(Rule()),
    Stage(EventBus()),
    Stage(POOL),
    Stage(FUNCTION),
    Stage(LAYER, listed=False),
    Stage(DbProxy(), wait_s=30 * MINUTE),
    # Here the execution roles wait for Lambda's network interfaces (release_interfaces).
    Stage(Role()),
    Stage(Alarm()),
    Stage(LogGroup()),
    Stage(Queue(), wait_s=5 * MINUTE),
    Stage(SECRET),
    Stage(DynamoTable(), wait_s=20 * MINUTE),
    Stage(KEY),
    Stage(MskCluster(), wait_s=60 * MINUTE),
    Stage(Instance(), wait_s=60 * MINUTE),
    Stage(CLUSTER, wait_s=60 * MINUTE),
    Stage(ClusterParameterGroup()),
    Stage(SubnetGroup()),
    Stage(VpcEndpoint(), wait_s=20 * MINUTE),
    Stage(SecurityGroupRule()),
    Stage(GROUP),
    Stage(RouteTable()),
    Stage(SUBNET),
    Stage(InternetGateway()),
    Stage(Vpc()),
)
# Lambda has been reported to take 20-45 minutes, and more than an hour, to release a
# deleted function's network interfaces (AWS-FACTS D).
INTERFACES_WAIT_S = 90 * MINUTE
# A group or subnet AWS still says is in use (DependencyViolation) is tried again for
# this long: an interface of a service deleted just before may take minutes to go.
DEPENDENCY = retry.Policy("still in use", attempts=12, first_delay_s=5, max_delay_s=60)
POLL_S = 15.0


def in_use(exc: BaseException) -> bool:
    return retry.error_code(exc) == "DependencyViolation"


# -- the plan ------------------------------------------------------------------------

@dataclass
class Item:
    """One resource the destroy found: deleted, kept, or changed (a kept user pool whose
    triggers name a function being deleted)."""

    kind: Resource
    found: Found
    step: str
    action: str                 # "delete" | "keep" | "update"
    why: str = ""               # for "keep": why it stays
    diff: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.kind.title(self.found)

    def change(self) -> Change:
        return Change(self.action, self.title, self.action, diff=dict(self.diff))


@dataclass
class Teardown:
    env: str
    steps: list[str]            # the steps destroyed, in the file's order
    whole: bool                 # the whole environment (not from a phase on)
    items: list[Item]
    options: DeleteOptions

    def of(self, kind: Resource, action: str = "delete") -> list[Item]:
        return [i for i in self.items if i.kind is kind and i.action == action]

    def by_step(self) -> list[tuple[str, list[Item]]]:
        """The items grouped by step, the steps in reverse order: the file's steps last
        first, then those no step of the file names."""
        order = list(reversed(self.steps))
        order += sorted({i.step for i in self.items} - set(order))
        return [(step, [i for i in self.items if i.step == step]) for step in order]

    @property
    def deletes(self) -> int:
        return sum(i.action == "delete" for i in self.items)


def protected(config, steps: list[str]) -> list[str]:
    """The environment file's deletion_protection fields that are true for a step being
    destroyed."""
    return [field_name for step, field_name in PROTECTION.items()
            if step in steps and _setting(config, field_name)]


def _setting(config, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def refuse_if_protected(config, steps: list[str], path: str) -> None:
    fields = protected(config, steps)
    if fields:
        listed = ", ".join(f"{f}: true" for f in fields)
        raise BadInput(
            f"environment {config.env!r} is protected from destroy: {path} says {listed}. "
            "Removing protection is a deliberate change of its own: set "
            f"{' and '.join(fields)} to false in {path}, review it like any other "
            "change, then destroy.")


def plan(api: Api, config, steps: list[str], *, whole: bool,
         options: DeleteOptions) -> Teardown:
    """Read only: what a destroy of `steps` would delete, keep and change."""
    env, items = config.env, []
    for stage in STAGES:
        if not stage.listed:
            continue
        for found in stage.kind.owned(api, env):
            step = found.tags.get(naming.STEP_TAG) or "?"
            if step not in steps and not (whole and step not in config.all_steps()):
                continue
            items.append(_item(stage.kind, found, step))
    items += _mappings(api, items)
    items += _layers(api, config, steps)
    teardown = Teardown(env, steps, whole, items, options)
    teardown.items += _triggers(api, config, teardown)
    return teardown


def _item(kind: Resource, found: Found, step: str, *, why_kept: str | None = None) -> Item:
    if why_kept is None and not naming.created(found.tags):
        why_kept = "adopted: runbook did not create it (no runbook:created tag)"
    if why_kept:
        return Item(kind, found, step, "keep", why_kept)
    return Item(kind, found, step, "delete")


def _mappings(api: Api, items: list[Item]) -> list[Item]:
    """Each function's event source mappings, which carry no tags: deleted with a
    function that is, kept with one that stays."""
    out = []
    for function in [i for i in items if i.kind is FUNCTION]:
        name = function.found.configuration.get("FunctionName") or function.found.id
        for mapping in MAPPING.of_function(api, name):
            out.append(Item(MAPPING, mapping, function.step, function.action,
                            "its function stays" if function.action == "keep" else ""))
    return out


def _layers(api: Api, config, steps: list[str]) -> list[Item]:
    """The dependency layer's versions: no tags, runbook's by their description and this
    environment's by their name (lambdas.prefix). Shared by every function that uses
    it, it goes only with the last step that deploys one."""
    from runbook.functions import registry

    users = [f.step for f in registry.FUNCTIONS.values()
             if f.layer and f.step in config.all_steps() and f.deployed(config)]
    if not users:
        return []
    staying = [s for s in users if s not in steps]
    step = next((s for s in config.all_steps() if s in users and s in steps), users[0])
    return [_item(LAYER, version, step, why_kept=(
                f"still used by step {staying[0]}" if staying else ""))
            for version in LAYER.versions(api, config.function_name("deps"))]


def _triggers(api: Api, config, teardown: Teardown) -> list[Item]:
    """A user pool that stays (adopted, or of a step not destroyed) loses the triggers
    that name a function being deleted: Cognito would otherwise fail every sign-up or
    sign-in that calls one."""
    deleted = {i.found.id for i in teardown.of(FUNCTION)}
    if not deleted:
        return []
    staying = {i.found.id for i in teardown.items if i.kind is POOL}
    pools = [i.found for i in teardown.items if i.kind is POOL and i.action == "keep"]
    pools += [p for p in POOL.owned(api, config.env) if p.id not in staying]
    out = []
    for pool in pools:
        removed = {name: arn for name, arn in pool.triggers.items() if arn in deleted}
        if removed:
            step = pool.tags.get(naming.STEP_TAG) or "?"
            diff = {"triggers": {"from": sorted(removed), "to": []}}
            out.append(Item(POOL, pool, step, "update", diff=diff))
    return out


# -- the destroy ---------------------------------------------------------------------

def retained(teardown: Teardown) -> list[str]:
    """What a destroy keeps on purpose, said so in its report: the clusters' final
    snapshots (billed until someone deletes them), the secrets in their recovery window
    (a `runbook run` restores them), the keys scheduled for deletion."""
    options, out = teardown.options, []
    if options.final_snapshot_stamp:
        out += [f"rds:cluster-snapshot {CLUSTER.final_snapshot_id(i.found, options)}: the "
                "final snapshot, kept (and billed) until deleted" for i in teardown.of(CLUSTER)]
    if options.secret_recovery_days:
        out += [f"{i.title}: deletion pending for {options.secret_recovery_days} days; "
                "`runbook run` restores it" for i in teardown.of(SECRET)]
    out += [f"{i.title}: deletion scheduled in {options.key_pending_days} days"
            for i in teardown.of(KEY)]
    return out


class Destroyer:
    """Runs a Teardown: the stages in order, each delete scoped to its item's step (so
    that the report counts the calls per step), the waits printing elapsed time."""

    def __init__(self, aws, progress, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, scope_prefix: str = ""):
        self.aws, self.progress = aws, progress
        self.api = Api(aws, sleep=sleep)
        self.sleep, self.clock = sleep, clock
        self.scope_prefix = scope_prefix      # "verify:" for a dry run's second destroy
        # What was done, by step, as it is done: a destroy cut short reports how far it got.
        self.done: dict[str, list[Item]] = {}
        self._at = ("destroy", "the account")      # (step, resource) being worked on

    def run(self, teardown: Teardown) -> None:
        """The stages in order. AWS's refusal of any call, or a lost answer, stops the
        destroy as a StepFailed naming the step and resource it was at: what is gone
        stays gone, and the next destroy goes on from there."""
        try:
            for stage in STAGES:
                self._stage(stage, teardown)
        except RunbookError:
            raise
        except Exception as exc:  # noqa: BLE001 - said per resource, then stopped
            step, resource = self._at
            raise StepFailed(step, resource,
                             f"{retry.error_code(exc) or type(exc).__name__}: {exc}. Run "
                             "`runbook destroy` again once it is fixed: what is gone "
                             "stays gone.") from exc

    def _stage(self, stage: Stage, teardown: Teardown) -> None:
        if stage.kind is POOL:
            self._each(teardown.of(POOL, "update"), self._detach, teardown)
        if stage.kind is GROUP:
            self._revoke_references(teardown)
        if isinstance(stage.kind, Role):
            self.release_interfaces(teardown)
        doomed = teardown.of(stage.kind)
        self._each(doomed, self._delete, teardown)
        if doomed and stage.wait_s:
            self._wait_gone(stage, doomed)

    def scoped(self, step: str):
        return self.aws.scoped(self.scope_prefix + step)

    def _each(self, items: list[Item], do, teardown: Teardown) -> None:
        for item in items:
            self._at = (item.step, item.title)
            with self.scoped(item.step):
                self.progress.line(f"  {item.change().describe()}")
                do(item, teardown)
            self.done.setdefault(item.step, []).append(item)

    def _delete(self, item: Item, teardown: Teardown) -> None:
        if item.kind not in (GROUP, SUBNET):
            item.kind.delete(self.api, item.found, teardown.options)
            return
        try:
            retry.retry(lambda: item.kind.delete(self.api, item.found, teardown.options),
                        when=in_use, policy=DEPENDENCY, sleep=self.sleep)
        except Exception as exc:  # noqa: BLE001 - only "in use" is explained
            if not in_use(exc):
                raise
            raise self._blocked(item, exc) from None

    def _detach(self, item: Item, teardown: Teardown) -> None:
        deleted = {i.found.id for i in teardown.of(FUNCTION)}
        POOL.detach_triggers(self.api, item.found, deleted)

    def _blocked(self, item: Item, exc: BaseException) -> StepFailed:
        groups = [item.found.id] if item.kind is GROUP else []
        subnets = [item.found.id] if item.kind is SUBNET else []
        users = blocking(self.api, groups, subnets)
        what = ", ".join(f"{i.id} ({i.description or 'no description'})" for i in users[:5])
        return StepFailed(item.step, item.title,
                          f"AWS still says it is in use ({retry.error_code(exc)})"
                          + (f": network interfaces {what}" if what else "")
                          + ". Run `runbook destroy` again once they are gone.")

    def _revoke_references(self, teardown: Teardown) -> None:
        """The rules of the groups going away that reference another group: AWS refuses
        to delete a group another group's rule names, and these name each other."""
        groups = teardown.of(GROUP)
        if groups:
            self._at = (groups[0].step, "the security groups' rules that name each other")
            with self.scoped(groups[0].step):
                revoke_references(self.api, [g.found.id for g in groups])

    def release_interfaces(self, teardown: Teardown) -> None:
        """Wait until Lambda has released the network interfaces of the functions in the
        groups and subnets going away, deleting each it left `available`; the roles it
        releases them with stay until then."""
        groups = [i.found.id for i in teardown.of(GROUP)]
        subnets = [i.found.id for i in teardown.of(SUBNET)]
        if not groups and not subnets:
            return
        step = (teardown.of(GROUP) or teardown.of(SUBNET))[0].step
        self._at = (step, "Lambda's network interfaces")

        def left() -> list:
            with self.scoped(step):
                interfaces = lambda_interfaces(self.api, group_ids=groups, subnet_ids=subnets)
                for interface in interfaces:
                    if interface.status == "available":
                        self.progress.line(f"  - {INTERFACE.title(interface)} (left "
                                           "available by Lambda)")
                        INTERFACE.delete(self.api, interface, teardown.options)
            return [i for i in interfaces if i.status != "available"]

        self._wait(left, lambda remaining: not remaining,
                   what="Lambda to release its network interfaces",
                   resource="ec2:network-interface", step=step,
                   timeout_s=INTERFACES_WAIT_S)

    def _wait_gone(self, stage: Stage, items: list[Item]) -> None:
        pending = list(items)
        self._at = (items[0].step, f"the {stage.kind.plural} being deleted")

        def left() -> list[Item]:
            with self.scoped(items[0].step):
                pending[:] = [i for i in pending if not stage.kind.gone(self.api, i.found)]
            return pending

        self._wait(left, lambda remaining: not remaining,
                   what=f"{len(items)} {stage.kind.plural} to be deleted",
                   resource=stage.kind.kind, step=items[0].step, timeout_s=stage.wait_s)

    def _wait(self, read, done, *, what: str, resource: str, step: str,
              timeout_s: float) -> None:
        try:
            retry.wait_until(read, done, what=what, timeout_s=timeout_s, interval_s=POLL_S,
                             sleep=self.sleep, clock=self.clock,
                             on_wait=self.progress.waiting)
        except retry.WaitTimeout as exc:
            raise StepFailed(step, resource, f"{exc}. Run `runbook destroy` again to "
                             "go on waiting.") from None
