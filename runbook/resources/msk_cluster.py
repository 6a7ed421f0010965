"""A provisioned MSK cluster with IAM client authentication, and its public access
(step `msk-cluster`).

Everything that cannot be turned on later is set at creation: IAM authentication on and
unauthenticated access off, TLS only between clients and brokers, TLS between brokers
(in-cluster encryption cannot be enabled on an existing cluster). Encryption at rest is
always on in MSK; no key is named, so AWS's managed key `aws/kafka` encrypts the
volumes: the topic keeps a hash at most retention_hours, and the table the hashes end in
has a key of its own (step hash-table).

Public access cannot be asked for at creation: AWS refuses any PublicAccess but DISABLED
there. It is a change of its own, `update_connectivity`, sent once the cluster is ACTIVE
with the cluster's CurrentVersion (AWS refuses a stale one) and followed through its
cluster operation (runbook.steps.msk_cluster waits for both, with progress).

A cluster's name is unique in the account and region on AWS (a second CreateClusterV2 is
a ConflictException); moto 5.2.5 accepts duplicates. So the clusters are listed by name,
and two with the name are refused, not guessed between; a ConflictException on create
(an earlier attempt's answer lost, or a concurrent run) adopts what exists.

Teardown reads a cluster again through ListClustersV2 (by its name, then its ARN), not
DescribeClusterV2: moto 5.2.5 fails DescribeClusterV2 and DeleteCluster for an ARN it
does not know with an internal error (KeyError) where AWS says NotFoundException, and
the list says "none" the same way on both. The event source mapping that reads the
cluster goes first (runbook.teardown orders it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.aws.retry import error_code
from runbook.engine.plan import Change
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec

ACTIVE, CREATING, UPDATING, FAILED, DELETING = (
    "ACTIVE", "CREATING", "UPDATING", "FAILED", "DELETING")
# States whose brokers answer (GetBootstrapBrokers works), and those that pass by.
SERVING = frozenset({ACTIVE, UPDATING, "MAINTENANCE", "REBOOTING_BROKER", "HEALING"})
PUBLIC, DISABLED = "SERVICE_PROVIDED_EIPS", "DISABLED"
TLS = "TLS"
OPERATION_DONE, OPERATION_FAILED = "UPDATE_COMPLETE", "UPDATE_FAILED"
# The brokers' IAM ports: inside the VPC, and through public access.
PRIVATE_IAM_PORT, PUBLIC_IAM_PORT = 9098, 9198


def cluster_uuid(arn: str) -> str:
    """The last segment of a cluster's ARN (cluster/<name>/<uuid>), which its topic and
    group ARNs carry (topic/<name>/<uuid>/<topic>)."""
    return arn.rsplit("/", 1)[-1] if arn else ""


@dataclass(frozen=True)
class ClusterSpec(Spec):
    kafka_version: str = ""
    broker_type: str = ""
    broker_count: int = 0
    volume_gb: int = 0
    subnet_ids: tuple = ()               # network's public subnets
    security_group_ids: tuple = ()       # the step's group (id or Unknown)
    public: bool = True                  # public access wanted


@dataclass
class ClusterFound(Found):
    """`id` is the cluster's ARN."""

    name: str = ""
    state: str = ""
    cluster_type: str = "PROVISIONED"
    current_version: str = ""
    kafka_version: str = ""
    broker_type: str = ""
    broker_count: int = 0
    volume_gb: int = 0
    subnet_ids: tuple = ()
    security_group_ids: tuple = ()
    iam: bool = False
    unauthenticated: bool = False
    client_broker: str = ""
    in_cluster: bool = False
    public_access: str = DISABLED
    bootstrap_private: str = ""          # BootstrapBrokerStringSaslIam
    bootstrap_public: str = ""           # BootstrapBrokerStringPublicSaslIam
    operation: str = ""                  # the connectivity update this run started

    @property
    def arn(self) -> str:
        return self.id

    @property
    def uuid(self) -> str:
        return cluster_uuid(self.id)


class MskCluster(Resource[ClusterSpec, ClusterFound]):
    kind, service, plural = "kafka:cluster", "kafka", "MSK clusters"
    label_id = False
    ops = {"create": "create_cluster_v2", "tag": "tag_resource"}

    # -- read ------------------------------------------------------------------------

    def find(self, api: Api, spec: ClusterSpec) -> ClusterFound | None:
        found = super().find(api, spec)
        return self.with_brokers(api, found) if found is not None else None

    def candidates(self, api: Api, spec: ClusterSpec) -> dict:
        """By name only: unique in the account and region, and it cannot change."""
        return {"tagged": [], "named": self.by_name(api, spec)}

    def by_name(self, api: Api, spec: ClusterSpec) -> list[ClusterFound]:
        return named(api, spec.name)

    def describe(self, api: Api, arn: str) -> ClusterFound:
        """The cluster as it is now, with its brokers when they answer."""
        raw = api.client("kafka").describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]
        return self.with_brokers(api, parse_cluster(raw))

    def with_brokers(self, api: Api, found: ClusterFound) -> ClusterFound:
        """`found` with its IAM bootstrap strings, once its brokers serve (a creating
        cluster has none: GetBootstrapBrokers is a BadRequestException then)."""
        if found.state not in SERVING:
            return found
        answer = api.client("kafka").get_bootstrap_brokers(ClusterArn=found.id)
        found.bootstrap_private = answer.get("BootstrapBrokerStringSaslIam") or ""
        found.bootstrap_public = answer.get("BootstrapBrokerStringPublicSaslIam") or ""
        return found

    def _provisioned(self, spec: ClusterSpec, found: ClusterFound) -> None:
        if found.cluster_type != "PROVISIONED":
            raise PlanError(spec.step, self.label(spec, found),
                            f"it is a {found.cluster_type.lower()} cluster; runbook's has "
                            "provisioned brokers with public access (MSK Serverless has "
                            "none). Delete it, or set msk.cluster_name to another name.")

    def several(self, spec: ClusterSpec, candidates: list[ClusterFound], how: str) -> PlanError:
        return PlanError(spec.step, self.label(spec),
                         f"{len(candidates)} MSK clusters are named {spec.name} "
                         f"({', '.join(c.id for c in candidates)}); AWS allows one. Delete "
                         "the ones that are not this environment's (aws kafka "
                         "delete-cluster --cluster-arn ...), then run again.")

    # -- plan (pure) -------------------------------------------------------------------

    def label(self, spec: ClusterSpec, found: ClusterFound | None = None) -> str:
        return f"{self.kind} {spec.name}"

    def summary(self, spec: ClusterSpec) -> dict:
        return {"kafka_version": spec.kafka_version, "broker_type": spec.broker_type,
                "brokers": spec.broker_count, "volume_gb": spec.volume_gb,
                "subnets": list(spec.subnet_ids),
                "security_groups": list(spec.security_group_ids),
                "client_authentication": "IAM (unauthenticated off)",
                "encryption": "TLS client-broker and in-cluster; at rest with aws/kafka"}

    def check(self, spec: ClusterSpec, found: ClusterFound) -> None:
        """What runbook does not change in place, and what cannot change: refused with
        the fix. None of these is a setting runbook would ever have made otherwise, so
        they are a cluster made by hand, or a file edited since."""
        label = self.label(spec, found)
        self._provisioned(spec, found)
        if found.state == FAILED:
            raise PlanError(spec.step, label, "its state is FAILED. Delete it (aws kafka "
                            f"delete-cluster --cluster-arn {found.id}) and run again.")
        if found.state == DELETING:
            raise PlanError(spec.step, label, "it is being deleted. Wait until `aws kafka "
                            "list-clusters-v2` no longer lists it, then run again.")
        differences = [
            ("kafka_version", found.kafka_version, spec.kafka_version,
             "aws kafka update-cluster-kafka-version, or set msk.kafka_version to it"),
            ("broker_type", found.broker_type, spec.broker_type,
             "aws kafka update-broker-type, or set msk.broker_type to it"),
            ("broker_count", found.broker_count, spec.broker_count,
             "aws kafka update-broker-count (adds brokers only), or set msk.brokers_per_az"),
            ("volume_gb", found.volume_gb, spec.volume_gb,
             "aws kafka update-broker-storage (grows only), or set msk.volume_gb to it"),
        ]
        for name, current, wanted, fix in differences:
            if current != wanted:
                raise PlanError(spec.step, label, f"its {name} is {current}, the file says "
                                f"{wanted}; runbook does not change it in place yet: {fix}.")
        if sorted(found.subnet_ids) != sorted(spec.subnet_ids):
            raise PlanError(spec.step, label,
                            f"its subnets are {', '.join(sorted(found.subnet_ids))}, the "
                            f"network's public subnets are {', '.join(sorted(spec.subnet_ids))}"
                            ". A cluster's subnets cannot change: delete it and run again.")
        if sorted(found.security_group_ids) != sorted(spec.security_group_ids):
            raise PlanError(spec.step, label,
                            f"its security groups are {', '.join(sorted(found.security_group_ids))}"
                            f", the step's is {', '.join(str(g) for g in spec.security_group_ids)}"
                            ". A cluster's security groups cannot change: delete it and run "
                            "again.")
        if not found.in_cluster:
            raise PlanError(spec.step, label, "it does not encrypt between brokers, and "
                            "that cannot be turned on later (public access needs it): delete "
                            "it and run again.")
        security = []
        if not found.iam:
            security.append("IAM authentication is off")
        if found.unauthenticated:
            security.append("unauthenticated access is on")
        if found.client_broker != TLS:
            security.append(f"client-broker encryption is {found.client_broker or 'unset'}, "
                            "not TLS")
        if security:
            raise PlanError(spec.step, label, f"{'; '.join(security)}. runbook does not "
                            "change a cluster's security in place yet: aws kafka "
                            "update-security, then run again.")

    def plan(self, spec: ClusterSpec, found: ClusterFound | None, key: str) -> list[Change]:
        """Create (or tag), then public access when it is not on: a change of its own,
        because AWS takes it only once the cluster is ACTIVE."""
        changes = super().plan(spec, found, key)
        if spec.public and (found is None or found.public_access != PUBLIC):
            changes.append(Change(
                "update", self.label(spec, found), "update_connectivity", {"spec": spec},
                {"public_access": {"from": found.public_access if found else DISABLED,
                                   "to": PUBLIC}},
                run=Apply(self, key, "enable_public_access")))
        return changes

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: ClusterSpec) -> ClusterFound:
        kafka = api.client("kafka")
        try:
            arn = kafka.create_cluster_v2(ClusterName=spec.name, Tags=dict(spec.tags),
                                          Provisioned=provisioned(spec))["ClusterArn"]
        except Exception as exc:  # noqa: BLE001 - only "exists" is adopted
            if error_code(exc) != "ConflictException":
                raise
            # An earlier attempt's answer was lost, or a concurrent run made it: adopt it
            # as a plan would (claimed, checked), tagged.
            found = self.find(api, spec)
            if found is None:
                raise StepFailed(spec.step, self.label(spec), "AWS said it exists, and "
                                 "then that it does not: run again") from None
            self.check(spec, found)
            add = naming.missing_tags(spec.tags, found.tags)
            return self.tag(api, found, add) if add else found
        return self.describe(api, arn)

    def enable_public_access(self, api: Api, spec: ClusterSpec,
                             found: ClusterFound) -> ClusterFound:
        """UpdateConnectivity with the cluster's current version, read right before:
        AWS refuses a stale one. Nothing when public access is on already (an earlier
        run's update finished since its plan). The caller waits for the operation."""
        fresh = self.describe(api, found.id)
        if fresh.public_access == PUBLIC:
            return fresh
        answer = api.client("kafka").update_connectivity(
            ClusterArn=fresh.id, CurrentVersion=fresh.current_version,
            ConnectivityInfo={"PublicAccess": {"Type": PUBLIC}})
        fresh.operation = answer["ClusterOperationArn"]
        return fresh

    def operation(self, api: Api, arn: str) -> dict:
        """A cluster operation's state: {"state", "error"}."""
        info = api.client("kafka").describe_cluster_operation_v2(
            ClusterOperationArn=arn)["ClusterOperationInfo"]
        error = info.get("ErrorInfo") or {}
        return {"state": info.get("OperationState", ""),
                "error": ": ".join(p for p in (error.get("ErrorCode"), error.get("ErrorString"))
                                   if p)}

    def tag(self, api: Api, found: ClusterFound, tags: dict) -> ClusterFound:
        api.client("kafka").tag_resource(ResourceArn=found.id, Tags=dict(tags))
        found.tags.update(tags)
        return found

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[ClusterFound]:
        """ListClustersV2 gives each cluster's tags. Without bootstrap strings: a delete
        does not need them."""
        clusters = (parse_cluster(raw) for raw in pages(
            api.client("kafka"), "list_clusters_v2", "ClusterInfoList"))
        return [c for c in clusters if c.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: ClusterFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteCluster with the cluster's CurrentVersion read right before (AWS refuses
        a stale one, and `found` may be minutes old). One gone or DELETING is done."""
        current = self.current(api, found)
        if current is None or current.state == DELETING:
            return
        or_none(lambda: api.client("kafka").delete_cluster(
            ClusterArn=current.id, CurrentVersion=current.current_version))

    def gone(self, api: Api, found: ClusterFound) -> bool:
        return self.current(api, found) is None

    @staticmethod
    def current(api: Api, found: ClusterFound) -> ClusterFound | None:
        """The cluster `found` names as it is now (by name, then ARN), or None."""
        return next((c for c in named(api, found.name) if c.id == found.id), None)


def named(api: Api, name: str) -> list[ClusterFound]:
    """The clusters named `name` (AWS allows one; moto 5.2.5 several)."""
    # The filter matches the start of a name: matbakh-prod-legacy-2 would match too.
    return [parse_cluster(raw) for raw in pages(
        api.client("kafka"), "list_clusters_v2", "ClusterInfoList",
        ClusterNameFilter=name) if raw.get("ClusterName") == name]


def provisioned(spec: ClusterSpec) -> dict:
    """CreateClusterV2's Provisioned: everything public access needs, from the start."""
    return {
        "KafkaVersion": spec.kafka_version,
        "NumberOfBrokerNodes": spec.broker_count,
        "BrokerNodeGroupInfo": {
            "InstanceType": spec.broker_type,
            "ClientSubnets": list(spec.subnet_ids),
            "SecurityGroups": list(spec.security_group_ids),
            "StorageInfo": {"EbsStorageInfo": {"VolumeSize": spec.volume_gb}},
            # The only value AWS takes at creation; public access follows once ACTIVE.
            "ConnectivityInfo": {"PublicAccess": {"Type": DISABLED}},
        },
        "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}},
                                 "Unauthenticated": {"Enabled": False}},
        "EncryptionInfo": {"EncryptionInTransit": {"ClientBroker": TLS, "InCluster": True}},
    }


def parse_cluster(raw: dict) -> ClusterFound:
    """A ClusterInfo of DescribeClusterV2 or ListClustersV2."""
    prov: dict[str, Any] = raw.get("Provisioned") or {}
    nodes = prov.get("BrokerNodeGroupInfo") or {}
    auth = prov.get("ClientAuthentication") or {}
    transit = (prov.get("EncryptionInfo") or {}).get("EncryptionInTransit") or {}
    public = ((nodes.get("ConnectivityInfo") or {}).get("PublicAccess") or {}).get("Type")
    return ClusterFound(
        raw["ClusterArn"], dict(raw.get("Tags") or {}), name=raw.get("ClusterName", ""),
        state=raw.get("State", ""), cluster_type=raw.get("ClusterType", "PROVISIONED"),
        current_version=raw.get("CurrentVersion", ""),
        kafka_version=(prov.get("CurrentBrokerSoftwareInfo") or {}).get("KafkaVersion", ""),
        broker_type=nodes.get("InstanceType", ""),
        broker_count=int(prov.get("NumberOfBrokerNodes") or 0),
        volume_gb=int(((nodes.get("StorageInfo") or {}).get("EbsStorageInfo") or {})
                      .get("VolumeSize") or 0),
        subnet_ids=tuple(sorted(nodes.get("ClientSubnets") or ())),
        security_group_ids=tuple(sorted(nodes.get("SecurityGroups") or ())),
        iam=bool(((auth.get("Sasl") or {}).get("Iam") or {}).get("Enabled")),
        # AWS leaves Unauthenticated out when it was never asked for: off.
        unauthenticated=bool((auth.get("Unauthenticated") or {}).get("Enabled")),
        # AWS's default, when EncryptionInTransit is left out, is TLS and in-cluster on.
        client_broker=transit.get("ClientBroker", TLS),
        in_cluster=bool(transit.get("InCluster", True)),
        public_access=public or DISABLED)
