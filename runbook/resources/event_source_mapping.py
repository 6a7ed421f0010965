"""A Lambda event source mapping from an SQS queue (phase a4) or an Amazon MSK topic
(phase a5): Lambda's poller, which receives batches from the queue, or reads the topic
in a consumer group, and invokes the function with them.

An MSK mapping (MappingSpec.topics set) is made with its topic, starting position and
consumer group, which Lambda fixes at creation: a difference in them is a PlanError
naming the fix (delete the mapping), not an update. Its batch size, state and
provisioned pollers are compared with what GetEventSourceMapping returns and updated
in place.

A mapping has no name: it is the (function, queue ARN) pair, which AWS allows once
(a second CreateEventSourceMapping for the pair is a ResourceConflictException; moto
5.2.5 makes a second one, which `find` then refuses). Its id, a UUID, is AWS's.

runbook's checks are strict where moto is lax: AWS refuses a mapping whose function's
timeout is above the queue's visibility timeout when the mapping is made (a batch would
reappear on the queue while it is still being processed); moto accepts it. The plan
refuses it first, naming the field.

A mapping being created or updated (State Creating, Enabling, Updating) is found as it
is: an update that meets one is retried while AWS says it is in use. A mapping being
deleted is not found. Mappings carry no runbook tags: one is claimed through its
function, which the same step claims.

Teardown, for the same reason, finds mappings through their function (`of_function`),
not by tags, and deletes them before it: DeleteEventSourceMapping answers at once with
State Deleting, and the mapping is gone (`gone`) only when Lambda's pollers have
stopped. An MSK mapping must be gone before its cluster is deleted (AWS-FACTS D).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import retry
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import Change, diff_field, is_known
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import DeleteOptions, Found, Resource, Spec

REPORT_FAILURES = "ReportBatchItemFailures"
# UpdateEventSourceMapping and DeleteEventSourceMapping answer ResourceInUseException
# while the mapping is still being created or updated: 2 + 4 + 8 + 15 + 15 = 44 s.
IN_USE = retry.Policy("event source mapping in use", attempts=6, first_delay_s=2,
                      max_delay_s=15)
GONE = frozenset({"Deleting"})
OFF = frozenset({"Disabled", "Disabling"})


def _in_use(exc: BaseException) -> bool:
    """Lambda's answer to an update or delete of a mapping still being created or
    updated."""
    return retry.error_code(exc) == "ResourceInUseException"


@dataclass(frozen=True)
class MappingSpec(Spec):
    """`name` is "<function>/<queue name>"; `tags` are the function's (claims only)."""

    function: str = ""                   # the function's name
    source_arn: str = ""                 # the queue's ARN
    batch_size: int = 10                 # 1-10 for a standard queue without a window
    response_types: tuple = (REPORT_FAILURES,)
    max_concurrency: int = 2             # ScalingConfig.MaximumConcurrency: 2-1000
    enabled: bool = True
    # What AWS checks when the mapping is made: the function's timeout (the field that
    # sets it, for the message) against the queue's visibility timeout.
    function_timeout_s: int = 0
    timeout_field: str = ""
    visibility_timeout_s: Any = None     # int, or Unknown while the queue is not read
    # An Amazon MSK mapping: its topics (one), StartingPosition (TRIM_HORIZON or LATEST),
    # AmazonManagedKafkaEventSourceConfig.ConsumerGroupId, and ProvisionedPollerConfig
    # as (MinimumPollers, MaximumPollers), None for on-demand pollers. Empty topics: SQS.
    topics: tuple = ()
    starting_position: str | None = None
    consumer_group: str | None = None
    pollers: tuple[int, int] | None = None

    @property
    def msk(self) -> bool:
        return bool(self.topics)

    def settings(self) -> dict:
        """The diffed settings, as `MappingFound.settings` gives them."""
        if self.msk:
            return {"batch_size": self.batch_size, "enabled": self.enabled,
                    "provisioned_pollers": _pollers(self.pollers)}
        return {"batch_size": self.batch_size,
                "function_response_types": sorted(self.response_types),
                "maximum_concurrency": self.max_concurrency, "enabled": self.enabled}

    def fixed(self) -> dict:
        """What an MSK mapping keeps from its creation, as `MappingFound.fixed` gives it."""
        return {"topics": sorted(self.topics), "starting_position": self.starting_position,
                "consumer_group": self.consumer_group}


def _pollers(pollers: tuple[int, int] | None) -> dict | None:
    if pollers is None:
        return None
    return {"MinimumPollers": pollers[0], "MaximumPollers": pollers[1]}


# The request parameter behind each diffed setting.
def _parameter(name: str, spec: MappingSpec) -> dict:
    return {"batch_size": {"BatchSize": spec.batch_size},
            "function_response_types": {"FunctionResponseTypes": list(spec.response_types)},
            "maximum_concurrency": {"ScalingConfig": {"MaximumConcurrency":
                                                      spec.max_concurrency}},
            "enabled": {"Enabled": spec.enabled},
            "provisioned_pollers": {"ProvisionedPollerConfig": _pollers(spec.pollers)}}[name]


@dataclass
class MappingFound(Found):
    """`id` is the mapping's UUID; `mapping` what ListEventSourceMappings gives."""

    mapping: dict = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.mapping.get("State", "")

    def settings(self, msk: bool = False) -> dict:
        if msk:
            config = self.mapping.get("ProvisionedPollerConfig") or {}
            pollers = ({"MinimumPollers": config.get("MinimumPollers"),
                        "MaximumPollers": config.get("MaximumPollers")} if config else None)
            return {"batch_size": self.mapping.get("BatchSize"),
                    "enabled": self.state not in OFF, "provisioned_pollers": pollers}
        return {"batch_size": self.mapping.get("BatchSize"),
                "function_response_types": sorted(self.mapping.get("FunctionResponseTypes")
                                                  or ()),
                "maximum_concurrency": (self.mapping.get("ScalingConfig") or {}).get(
                    "MaximumConcurrency"),
                "enabled": self.state not in OFF}

    def fixed(self) -> dict:
        kafka = self.mapping.get("AmazonManagedKafkaEventSourceConfig") or {}
        return {"topics": sorted(self.mapping.get("Topics") or ()),
                "starting_position": self.mapping.get("StartingPosition"),
                "consumer_group": kafka.get("ConsumerGroupId")}


class EventSourceMapping(Resource[MappingSpec, MappingFound]):
    kind, service, plural = "lambda:event-source-mapping", "lambda", "event source mappings"
    ops = {"create": "create_event_source_mapping", "update": "update_event_source_mapping"}

    # -- read ------------------------------------------------------------------------

    def candidates(self, api: Api, spec: MappingSpec) -> dict:
        return {"tagged": [], "named": self.by_name(api, spec)}

    def by_name(self, api: Api, spec: MappingSpec) -> list[MappingFound]:
        """The mappings from the queue to the function (by name: moto matches the
        FunctionName filter as the string given), those being deleted left out."""
        listed = pages(api.client("lambda"), "list_event_source_mappings",
                       "EventSourceMappings", FunctionName=spec.function,
                       EventSourceArn=spec.source_arn)
        return [MappingFound(m["UUID"], {}, m) for m in listed if m.get("State") not in GONE]

    def several(self, spec: MappingSpec, candidates: list[MappingFound], how: str) -> PlanError:
        return PlanError(spec.step, self.label(spec),
                         f"{len(candidates)} mappings feed {spec.function} from "
                         f"{spec.source_arn} ({', '.join(c.id for c in candidates)}); AWS "
                         "allows one. Delete all but one (aws lambda "
                         "delete-event-source-mapping --uuid ...), then run again.")

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: MappingSpec) -> dict:
        fixed = spec.fixed() if spec.msk else {}
        return {"source": spec.source_arn, **fixed, **spec.settings()}

    def diff(self, spec: MappingSpec, found: MappingFound) -> dict:
        diff: dict = {}
        current = found.settings(msk=spec.msk)
        for name, wanted in spec.settings().items():
            diff_field(diff, name, current[name], wanted)
        return diff

    def check(self, spec: MappingSpec, found: MappingFound) -> None:
        """An MSK mapping's topic, starting position and consumer group are Lambda's to
        keep: a mapping with others is refused, naming the fix."""
        if not spec.msk:
            return
        current, wanted = found.fixed(), spec.fixed()
        differs = [name for name in wanted if current[name] != wanted[name]]
        if differs:
            shown = ", ".join(f"{name} {current[name]} (the file says {wanted[name]})"
                              for name in differs)
            raise PlanError(spec.step, self.label(spec, found),
                            f"its {shown}: Lambda cannot change them in place. Delete it "
                            f"(aws lambda delete-event-source-mapping --uuid {found.id}), "
                            "then run again; a new consumer group reads the topic from "
                            "its start (TRIM_HORIZON).")

    def plan(self, spec: MappingSpec, found: MappingFound | None, key: str) -> list[Change]:
        """Refuse a function timeout above the queue's visibility timeout (AWS would, at
        CreateEventSourceMapping; moto does not). No tag change: see the docstring."""
        visibility = spec.visibility_timeout_s
        if is_known(visibility) and visibility is not None \
                and spec.function_timeout_s > visibility:
            raise PlanError(spec.step, self.label(spec),
                            f"{spec.timeout_field} is {spec.function_timeout_s} s, above "
                            f"the queue's visibility timeout of {visibility} s: Lambda "
                            "refuses such a mapping, as a batch would reappear while it "
                            "is processed. Lower the timeout, or run step event-bus first "
                            "(it makes the visibility timeout 6x the timeout).")
        return [c for c in super().plan(spec, found, key) if c.run.action != "tag"]

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: MappingSpec) -> MappingFound:
        lam = api.client("lambda")
        try:
            # Lambda checks the execution role's rights on the queue here: right after
            # the role got them, it may refuse until IAM has propagated them.
            created = retry.retry(lambda: lam.create_event_source_mapping(
                FunctionName=spec.function, EventSourceArn=spec.source_arn,
                BatchSize=spec.batch_size, Enabled=spec.enabled, **_source_parameters(spec)),
                when=retry.is_role_missing_permission, policy=retry.IAM_PROPAGATION,
                sleep=api.sleep)
        except lam.exceptions.ResourceConflictException:
            # The answer to an earlier attempt was lost, or a concurrent run made it.
            found = self.find(api, spec)
            if found is None:
                raise StepFailed(spec.step, self.label(spec), "AWS said it exists, and "
                                 "then that it does not: run again") from None
            self.check(spec, found)   # another topic, position or group is not adopted
            diff = self.diff(spec, found)
            return self.update(api, spec, found, diff, {}) if diff else found
        return self.read_back(api, spec, created["UUID"])

    def update(self, api: Api, spec: MappingSpec, found: MappingFound, diff: dict,
               tags: dict) -> MappingFound:
        """Only the settings that differ."""
        params: dict = {}
        for name in diff:
            params.update(_parameter(name, spec))
        lam = api.client("lambda")
        retry.retry(lambda: lam.update_event_source_mapping(UUID=found.id, **params),
                    when=_in_use, policy=IN_USE, sleep=api.sleep)
        return self.read_back(api, spec, found.id)

    def read_back(self, api: Api, spec: MappingSpec, uuid: str) -> MappingFound:
        """The mapping as AWS stored it: a setting it did not keep fails the step here,
        not on the next run's plan."""
        mapping = api.client("lambda").get_event_source_mapping(UUID=uuid)
        found = MappingFound(uuid, {}, {k: v for k, v in mapping.items()
                                        if k != "ResponseMetadata"})
        differs = self.diff(spec, found)
        if differs:
            raise StepFailed(spec.step, self.label(spec, found),
                             f"AWS did not keep {', '.join(sorted(differs))}: {differs}")
        return found

    # -- teardown --------------------------------------------------------------------

    def of_function(self, api: Api, function_name: str) -> list[MappingFound]:
        """Read only: every mapping that invokes function `function_name`, from any
        source, those already being deleted (State Deleting) included: a destroy run
        again after an interrupted one must still wait for them to be gone before it
        deletes the function or an MSK cluster, and `delete` takes them as done. `tags`
        are empty: a mapping is its function's, whose tags say who made it. [] for a
        function that does not exist."""
        listed = or_none(lambda: pages(api.client("lambda"), "list_event_source_mappings",
                                       "EventSourceMappings", FunctionName=function_name))
        return [MappingFound(m["UUID"], {}, m) for m in listed or ()]

    def delete(self, api: Api, found: MappingFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteEventSourceMapping. A mapping gone, or already Deleting, is done and
        costs no write; one still being created or updated is retried while Lambda
        says it is in use."""
        lam = api.client("lambda")
        current = or_none(lambda: lam.get_event_source_mapping(UUID=found.id))
        if current is None or current.get("State") in GONE:
            return
        retry.retry(lambda: or_none(lambda: lam.delete_event_source_mapping(UUID=found.id)),
                    when=_in_use, policy=IN_USE, sleep=api.sleep)

    def gone(self, api: Api, found: MappingFound) -> bool:
        """Whether GetEventSourceMapping no longer knows it: Deleting is not gone."""
        return or_none(lambda: api.client("lambda").get_event_source_mapping(
            UUID=found.id)) is None


def _source_parameters(spec: MappingSpec) -> dict:
    """CreateEventSourceMapping's parameters of the source's kind."""
    if not spec.msk:
        return {"FunctionResponseTypes": list(spec.response_types),
                "ScalingConfig": {"MaximumConcurrency": spec.max_concurrency}}
    params = {"Topics": list(spec.topics), "StartingPosition": spec.starting_position,
              "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": spec.consumer_group}}
    if spec.pollers is not None:
        params["ProvisionedPollerConfig"] = _pollers(spec.pollers)
    return params
