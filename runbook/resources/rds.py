"""The Aurora cluster and what it stands on (step `database`): the DB subnet group, the
TLS-only cluster parameter group, the cluster and its instances.

Each is found by its name (an RDS name is unique in an account and region), never by
trusting the API to refuse a duplicate: moto overwrites a cluster on a duplicate
CreateDBCluster and accepts a duplicate DB subnet group. RDS resources are tagged by ARN.

Teardown (`owned`, `delete`, `gone`) goes the other way, each kind on its own: the
instances, then the cluster (deletion protection off first; a final snapshot unless the
destroy skips it), then the two groups, which RDS refuses to delete while a cluster uses
them. runbook.teardown orders them; a delete reads first, so that one finished or under
way is done with no write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import diff_field, is_known
from runbook.errors import PlanError
from runbook.resources.base import DeleteOptions, F, Found, Resource, S, Spec
from runbook.resources.secret import PASSWORD_ID_TAG, MasterPassword
from runbook.resources.security_group import SecurityGroup, SecurityGroupSpec

# What the cluster parameter group sets. On Aurora PostgreSQL rds.force_ssl is a cluster
# parameter (default 0); as a role setting it would do nothing.
FORCE_SSL = ("rds.force_ssl", "1")
# A cluster's or an instance's status while RDS deletes it.
DELETING = "deleting"


class _Rds(Resource[S, F]):
    """What RDS kinds share: tagged by ARN, labelled by name alone."""

    service = "rds"
    label_id = False

    def tag_target(self, found: F) -> str:
        return found.arn


# -- the cluster's security group ------------------------------------------------------------

class ClusterSecurityGroup(SecurityGroup):
    """The cluster's group: made with no ingress and AWS's default egress. Its rules
    belong to step vpc-integrate."""

    ops = {"create": "create_security_group", "tag": "tag_ec2"}

    def summary(self, spec: SecurityGroupSpec) -> dict:
        return {"vpc": spec.vpc_id, "ingress": "none yet", "egress": "all (the default)"}


# -- the DB subnet group ---------------------------------------------------------------------

@dataclass(frozen=True)
class SubnetGroupSpec(Spec):
    vpc_id: Any = None
    subnet_ids: tuple = ()
    description: str = ""


@dataclass
class SubnetGroupFound(Found):
    arn: str = ""
    vpc_id: str | None = None
    subnet_ids: list = field(default_factory=list)     # sorted


class SubnetGroup(_Rds[SubnetGroupSpec, SubnetGroupFound]):
    kind, plural = "rds:subnet-group", "DB subnet groups"
    replaces = {"vpc_id": "Rename database.subnet_group or delete the old group."}
    ops = {"create": "create_subnet_group", "update": "update_subnet_group", "tag": "tag_rds"}

    @staticmethod
    def named(api: Api, name: str) -> SubnetGroupFound | None:
        answer = or_none(lambda: api.client("rds").describe_db_subnet_groups(
            DBSubnetGroupName=name))
        return parse_subnet_group(api, answer["DBSubnetGroups"][0], name) if answer else None

    def summary(self, spec: SubnetGroupSpec) -> dict:
        return {"subnets": list(spec.subnet_ids)}

    def check(self, spec: SubnetGroupSpec, found: SubnetGroupFound) -> None:
        if is_known(spec.vpc_id) and found.vpc_id not in (None, spec.vpc_id):
            raise PlanError(spec.step, self.label(spec, found),
                            f"it belongs to {found.vpc_id}, not to the environment's VPC "
                            f"{spec.vpc_id}. {self.replaces['vpc_id']}")

    def diff(self, spec: SubnetGroupSpec, found: SubnetGroupFound) -> dict:
        diff: dict = {}
        if sorted(spec.subnet_ids) != found.subnet_ids:
            diff["subnets"] = {"from": found.subnet_ids, "to": sorted(spec.subnet_ids)}
        return diff

    def create(self, api: Api, spec: SubnetGroupSpec) -> SubnetGroupFound:
        group = api.client("rds").create_db_subnet_group(
            DBSubnetGroupName=spec.name, DBSubnetGroupDescription=spec.description,
            SubnetIds=list(spec.subnet_ids), Tags=naming.as_aws(spec.tags))["DBSubnetGroup"]
        return SubnetGroupFound(spec.name, dict(spec.tags), group["DBSubnetGroupArn"],
                                spec.vpc_id, sorted(spec.subnet_ids))

    def update(self, api: Api, spec: SubnetGroupSpec, found: SubnetGroupFound, diff: dict,
               tags: dict) -> SubnetGroupFound:
        api.client("rds").modify_db_subnet_group(DBSubnetGroupName=spec.name,
                                                 SubnetIds=list(spec.subnet_ids))
        found.subnet_ids = sorted(spec.subnet_ids)
        return found

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[SubnetGroupFound]:
        """DescribeDBSubnetGroups carries no tags: each group's are read by its ARN."""
        groups = (parse_subnet_group(api, raw) for raw in pages(
            api.client("rds"), "describe_db_subnet_groups", "DBSubnetGroups"))
        return [g for g in groups if g.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: SubnetGroupFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """RDS refuses while a cluster uses the group (InvalidDBSubnetGroupStateFault):
        teardown deletes it once the cluster is gone."""
        rds = api.client("rds")
        if or_none(lambda: rds.describe_db_subnet_groups(DBSubnetGroupName=found.id)):
            or_none(lambda: rds.delete_db_subnet_group(DBSubnetGroupName=found.id))


def parse_subnet_group(api: Api, raw: dict, name: str | None = None) -> SubnetGroupFound:
    """A DescribeDBSubnetGroups item, with its tags (read by ARN: the item has none).
    `name`: the name it was asked by, as the file spells it (RDS keeps it lower-case)."""
    arn = raw["DBSubnetGroupArn"]
    tags = api.client("rds").list_tags_for_resource(ResourceName=arn)["TagList"]
    return SubnetGroupFound(name or raw["DBSubnetGroupName"], naming.from_aws(tags), arn,
                            raw.get("VpcId"),
                            sorted(s["SubnetIdentifier"] for s in raw.get("Subnets") or ()))


# -- the cluster parameter group (rds.force_ssl=1) --------------------------------------------

@dataclass(frozen=True)
class ParameterGroupSpec(Spec):
    family: str = ""                   # the family of the cluster's engine
    description: str = ""


@dataclass
class ParameterGroupFound(Found):
    arn: str = ""
    family: str | None = None
    force_ssl: str | None = None       # rds.force_ssl as set on the group; None: the default
    apply_type: str | None = None      # its ApplyType, where AWS says (moto does not)


class ClusterParameterGroup(_Rds[ParameterGroupSpec, ParameterGroupFound]):
    """A DB cluster parameter group that sets rds.force_ssl=1: TLS only."""

    kind, plural = "rds:cluster-parameter-group", "DB cluster parameter groups"
    replaces = {"family": "Set database.parameter_group to another name, or delete the group."}
    ops = {"create": "create_parameter_group", "update": "set_force_ssl", "tag": "tag_rds"}

    @staticmethod
    def named(api: Api, name: str) -> ParameterGroupFound | None:
        rds = api.client("rds")
        answer = or_none(lambda: rds.describe_db_cluster_parameter_groups(
            DBClusterParameterGroupName=name))
        if answer is None:
            return None
        found = parse_parameter_group(api, answer["DBClusterParameterGroups"][0], name)
        # AWS lists every parameter of the family (about 350, in pages) with its Source
        # and ApplyType; moto 5.2.5 lists only those set on the group, without ApplyType.
        # A parameter absent from the list is at its engine default (0 for rds.force_ssl).
        for parameter in pages(rds, "describe_db_cluster_parameters", "Parameters",
                               DBClusterParameterGroupName=name):
            if parameter.get("ParameterName") == FORCE_SSL[0]:
                found.force_ssl = parameter.get("ParameterValue")
                found.apply_type = parameter.get("ApplyType")
        return found

    def summary(self, spec: ParameterGroupSpec) -> dict:
        return {"family": spec.family, FORCE_SSL[0]: FORCE_SSL[1]}

    def check(self, spec: ParameterGroupSpec, found: ParameterGroupFound) -> None:
        # moto accepts any family name and never compares it with the cluster's engine;
        # AWS refuses to attach a group of another family. Checked here, before a write.
        if found.family != spec.family:
            raise PlanError(spec.step, self.label(spec, found),
                            f"it is a {found.family} group, and the cluster needs "
                            f"{spec.family}. {self.replaces['family']}")

    def diff(self, spec: ParameterGroupSpec, found: ParameterGroupFound) -> dict:
        diff: dict = {}
        diff_field(diff, FORCE_SSL[0], found.force_ssl, FORCE_SSL[1])
        return diff

    def create(self, api: Api, spec: ParameterGroupSpec) -> ParameterGroupFound:
        group = api.client("rds").create_db_cluster_parameter_group(
            DBClusterParameterGroupName=spec.name, DBParameterGroupFamily=spec.family,
            Description=spec.description,
            Tags=naming.as_aws(spec.tags))["DBClusterParameterGroup"]
        found = ParameterGroupFound(spec.name, dict(spec.tags),
                                    group["DBClusterParameterGroupArn"], spec.family)
        # A new group holds the engine defaults: rds.force_ssl is set next, in the same
        # run. A run that stops in between finds the group and sets it then.
        return self.update(api, spec, found, {}, {})

    def update(self, api: Api, spec: ParameterGroupSpec, found: ParameterGroupFound,
               diff: dict, tags: dict) -> ParameterGroupFound:
        """Set rds.force_ssl=1. It is dynamic on Aurora PostgreSQL: "immediate" applies
        it without a restart. AWS refuses "immediate" for a static parameter, so the
        ApplyType AWS reports wins where it says static."""
        static = found.apply_type == "static"
        api.client("rds").modify_db_cluster_parameter_group(
            DBClusterParameterGroupName=spec.name,
            Parameters=[{"ParameterName": FORCE_SSL[0], "ParameterValue": FORCE_SSL[1],
                         "ApplyMethod": "pending-reboot" if static else "immediate"}])
        found.force_ssl = FORCE_SSL[1]
        return found

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[ParameterGroupFound]:
        """Without the groups' parameters (a page walk of some 350 each on AWS), which
        a delete does not need. AWS's own default.* groups are skipped unread: neither
        runbook nor anyone can delete them."""
        groups = (parse_parameter_group(api, raw) for raw in pages(
            api.client("rds"), "describe_db_cluster_parameter_groups",
            "DBClusterParameterGroups")
            if not raw["DBClusterParameterGroupName"].startswith("default."))
        return [g for g in groups if g.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: ParameterGroupFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """RDS refuses while a cluster uses the group (InvalidDBParameterGroupState):
        teardown deletes it once the cluster is gone."""
        rds = api.client("rds")
        if or_none(lambda: rds.describe_db_cluster_parameter_groups(
                DBClusterParameterGroupName=found.id)):
            or_none(lambda: rds.delete_db_cluster_parameter_group(
                DBClusterParameterGroupName=found.id))


def parse_parameter_group(api: Api, raw: dict, name: str | None = None) -> ParameterGroupFound:
    """A DescribeDBClusterParameterGroups item, with its tags (read by ARN: the item has
    none) and without its parameters. `name`: as for parse_subnet_group."""
    arn = raw["DBClusterParameterGroupArn"]
    tags = api.client("rds").list_tags_for_resource(ResourceName=arn)["TagList"]
    return ParameterGroupFound(name or raw["DBClusterParameterGroupName"],
                               naming.from_aws(tags), arn,
                               raw.get("DBParameterGroupFamily"))


# -- the cluster -------------------------------------------------------------------------------

@dataclass
class Member:
    """One of DescribeDBClusters' DBClusterMembers."""

    id: str
    writer: bool = False
    group_status: str | None = None    # DBClusterParameterGroupStatus


@dataclass(frozen=True)
class ClusterSpec(Spec):
    engine: str = ""
    engine_version: str = ""
    database: str = ""
    port: int = 5432
    master_username: str = ""
    subnet_group: str = ""
    parameter_group: str = ""
    security_group_id: Any = None
    deletion_protection: bool = True
    min_capacity: float = 0.5
    max_capacity: float = 4.0
    # What the plan says, beside an attach of the group to an existing cluster, about
    # the members' restart; and the members that restart into it then, writer first
    # (ClusterFound.attached).
    reboot_note: str = ""
    members: tuple = ()


@dataclass
class ClusterFound(Found):
    arn: str = ""
    engine: str = ""
    engine_version: str | None = None
    status: str | None = None
    encrypted: bool = False
    subnet_group: str | None = None
    parameter_group: str | None = None
    deletion_protection: bool | None = None
    iam_auth: bool | None = None
    scaling: dict | None = None        # ServerlessV2ScalingConfiguration
    security_groups: list = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    resource_id: str | None = None
    endpoint: str | None = None
    reader_endpoint: str | None = None
    port: int | None = None
    # The members when this run's ModifyDBCluster attached the group: none of them runs
    # it until it restarts, whatever status AWS (or moto, which always says in-sync)
    # shows just after.
    attached: list = field(default_factory=list)
    # The master password this run created the cluster with, for store-secrets to keep.
    password: MasterPassword | None = field(default=None, repr=False)


def parse_cluster(raw: dict) -> ClusterFound:
    """A DescribeDBClusters item (or CreateDBCluster's, ModifyDBCluster's answer)."""
    return ClusterFound(
        raw["DBClusterIdentifier"], naming.from_aws(raw.get("TagList")),
        raw.get("DBClusterArn", ""),
        raw.get("Engine", ""), raw.get("EngineVersion"), raw.get("Status"),
        bool(raw.get("StorageEncrypted")), raw.get("DBSubnetGroup"),
        raw.get("DBClusterParameterGroup"), raw.get("DeletionProtection"),
        raw.get("IAMDatabaseAuthenticationEnabled"), raw.get("ServerlessV2ScalingConfiguration"),
        [g["VpcSecurityGroupId"] for g in raw.get("VpcSecurityGroups", ())],
        [Member(m["DBInstanceIdentifier"], bool(m.get("IsClusterWriter")),
                m.get("DBClusterParameterGroupStatus"))
         for m in raw.get("DBClusterMembers") or []],
        raw.get("DbClusterResourceId"), raw.get("Endpoint"), raw.get("ReaderEndpoint"),
        raw.get("Port"))


class Cluster(_Rds[ClusterSpec, ClusterFound]):
    """An Aurora cluster: Serverless v2, IAM auth, encrypted, deletion-protected.

    It is created with its final master password, made here and tagged with its id
    (PASSWORD_ID_TAG), and never shown: `ClusterFound.password` hands it to step
    `store-secrets`, which keeps it in the DB secret, the one place it lives. A run that
    stops between the two loses it, and the next run's store-secrets sets the password
    the secret has (the tag then names no password the secret holds)."""

    kind, plural = "rds:cluster", "DB clusters"
    replaces = {
        "engine": "Use another database.cluster_id.",
        "encrypted": "Restore an encrypted copy from a snapshot and point "
                     "database.cluster_id at it.",
    }
    ops = {"create": "create_cluster", "update": "update_cluster", "tag": "tag_rds"}

    @staticmethod
    def named(api: Api, cluster_id: str) -> ClusterFound | None:
        answer = or_none(lambda: api.client("rds").describe_db_clusters(
            DBClusterIdentifier=cluster_id))
        return parse_cluster(answer["DBClusters"][0]) if answer is not None else None

    def summary(self, spec: ClusterSpec) -> dict:
        return {"engine": f"{spec.engine} {spec.engine_version}", "database": spec.database,
                "serverless_v2": f"{spec.min_capacity}-{spec.max_capacity} ACU",
                "iam_auth": True, "encrypted": True, "parameter_group": spec.parameter_group,
                "deletion_protection": spec.deletion_protection}

    def check(self, spec: ClusterSpec, found: ClusterFound) -> None:
        label = self.label(spec, found)
        if found.engine != spec.engine:
            raise PlanError(spec.step, label, f"it runs {found.engine}, not {spec.engine}. "
                            + self.replaces["engine"])
        if not found.encrypted:
            raise PlanError(spec.step, label, "its storage is not encrypted, and encryption "
                            "cannot be turned on in place. " + self.replaces["encrypted"])
        if found.status in ("stopped", "stopping"):
            raise PlanError(spec.step, label, f"the cluster is {found.status}. Start it "
                            f"(`aws rds start-db-cluster --db-cluster-identifier {spec.name}`) "
                            "and run again.")
        # RDS stores subnet group names in lower case.
        if str(found.subnet_group or "").lower() != spec.subnet_group.lower():
            raise PlanError(spec.step, label, f"it uses DB subnet group {found.subnet_group}, "
                            f"the file says {spec.subnet_group}. Set database.subnet_group "
                            "to match.")

    @staticmethod
    def attaches(spec: ClusterSpec, found: ClusterFound) -> bool:
        """Whether the update attaches the parameter group."""
        # RDS stores parameter group names in lower case.
        return str(found.parameter_group or "").lower() != spec.parameter_group.lower()

    def diff(self, spec: ClusterSpec, found: ClusterFound) -> dict:
        """Everything in one ModifyDBCluster, the parameter group's attach included: a
        second ModifyDBCluster right after the first may be refused
        (InvalidDBClusterStateFault) while the cluster is still `modifying`."""
        diff: dict = {}
        diff_field(diff, "deletion_protection", found.deletion_protection,
                   spec.deletion_protection)
        diff_field(diff, "iam_auth", found.iam_auth, True)
        scaling = {"MinCapacity": spec.min_capacity, "MaxCapacity": spec.max_capacity}
        current = found.scaling or {}
        diff_field(diff, "serverless_v2",
                   {k: current.get(k) for k in scaling} if current else None, scaling)
        groups = list(found.security_groups)
        if spec.security_group_id not in groups:
            diff["security_groups"] = {"from": groups, "to": groups + [spec.security_group_id]}
        if self.attaches(spec, found):
            diff["parameter_group"] = {"from": found.parameter_group, "to": spec.parameter_group}
            diff["reboot"] = spec.reboot_note
        return diff

    def create(self, api: Api, spec: ClusterSpec) -> ClusterFound:
        password = MasterPassword.new()
        cluster = api.client("rds").create_db_cluster(
            DBClusterIdentifier=spec.name,
            Engine=spec.engine,
            EngineVersion=spec.engine_version,
            DatabaseName=spec.database,
            Port=spec.port,
            MasterUsername=spec.master_username,
            MasterUserPassword=password.value,
            DBSubnetGroupName=spec.subnet_group,
            DBClusterParameterGroupName=spec.parameter_group,
            VpcSecurityGroupIds=[spec.security_group_id],
            StorageEncrypted=True,
            EnableIAMDatabaseAuthentication=True,
            DeletionProtection=spec.deletion_protection,
            ServerlessV2ScalingConfiguration={"MinCapacity": spec.min_capacity,
                                              "MaxCapacity": spec.max_capacity},
            CopyTagsToSnapshot=True,
            Tags=naming.as_aws({**spec.tags, PASSWORD_ID_TAG: password.id}),
        )["DBCluster"]
        found = parse_cluster(cluster)
        found.password = password
        return found

    def update(self, api: Api, spec: ClusterSpec, found: ClusterFound, diff: dict,
               tags: dict) -> ClusterFound:
        params: dict = {"DBClusterIdentifier": spec.name, "ApplyImmediately": True}
        if "deletion_protection" in diff:
            params["DeletionProtection"] = spec.deletion_protection
        if "iam_auth" in diff:
            params["EnableIAMDatabaseAuthentication"] = True
        if "serverless_v2" in diff:
            params["ServerlessV2ScalingConfiguration"] = {"MinCapacity": spec.min_capacity,
                                                          "MaxCapacity": spec.max_capacity}
        if "security_groups" in diff:
            params["VpcSecurityGroupIds"] = found.security_groups + [spec.security_group_id]
        attached = found.attached
        if "parameter_group" in diff:
            # A run that fails here (or loses the answer) is finished by the next: it finds
            # the group attached or not, and on AWS the members' status (pending-reboot)
            # says whether a restart is still due.
            params["DBClusterParameterGroupName"] = spec.parameter_group
            attached = list(spec.members)
        cluster = parse_cluster(api.client("rds").modify_db_cluster(**params)["DBCluster"])
        cluster.attached = attached
        return cluster

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[ClusterFound]:
        """Each with its members (`members`), the instances teardown deletes first: AWS
        refuses to delete a cluster that has one not being deleted."""
        clusters = (parse_cluster(raw) for raw in pages(
            api.client("rds"), "describe_db_clusters", "DBClusters"))
        return [c for c in clusters if c.tags.get(naming.ENV_TAG) == env]

    @staticmethod
    def final_snapshot_id(found: ClusterFound, options: DeleteOptions) -> str | None:
        """The manual snapshot `delete` has RDS take (kept, and billed, until someone
        deletes it), or None when the destroy skips it."""
        if options.final_snapshot_stamp is None:
            return None
        return f"{found.id}-final-{options.final_snapshot_stamp}"

    def delete(self, api: Api, found: ClusterFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Read first: a cluster gone or `deleting` is done. Deletion protection is turned
        off (ModifyDBCluster) before DeleteDBCluster, which AWS refuses otherwise; then
        either a final snapshot or SkipFinalSnapshot, never both (AWS refuses both).
        Automated backups go with the cluster."""
        rds = api.client("rds")
        current = self.named(api, found.id)
        if current is None or current.status == DELETING:
            return
        if current.deletion_protection:
            rds.modify_db_cluster(DBClusterIdentifier=found.id, DeletionProtection=False,
                                  ApplyImmediately=True)
        snapshot = self.final_snapshot_id(found, options)
        final = ({"FinalDBSnapshotIdentifier": snapshot} if snapshot is not None
                 else {"SkipFinalSnapshot": True})
        or_none(lambda: rds.delete_db_cluster(DBClusterIdentifier=found.id, **final))

    def gone(self, api: Api, found: ClusterFound) -> bool:
        return self.named(api, found.id) is None


def writer_first(members: list[Member]) -> list[Member]:
    return sorted(members, key=lambda m: not m.writer)


# -- instances ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstanceSpec(Spec):
    cluster_id: str = ""
    engine: str = ""
    instance_class: str = ""


@dataclass
class InstanceFound(Found):
    arn: str = ""
    public: bool = False               # PubliclyAccessible
    cluster_id: str | None = None      # DBClusterIdentifier
    status: str | None = None          # DBInstanceStatus


class Instance(_Rds[InstanceSpec, InstanceFound]):
    """A cluster instance, private: never publicly accessible."""

    kind, plural = "rds:instance", "DB instances"
    ops = {"create": "create_instance", "update": "make_private", "tag": "tag_rds"}

    @staticmethod
    def of_cluster(api: Api, cluster_id: str) -> list[InstanceFound]:
        return [parse_instance(i) for i in pages(
            api.client("rds"), "describe_db_instances", "DBInstances",
            Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}])]

    @staticmethod
    def status(api: Api, identifier: str) -> str:
        """Its DBInstanceStatus; "deleted" when there is no such instance."""
        answer = or_none(lambda: api.client("rds").describe_db_instances(
            DBInstanceIdentifier=identifier))
        return answer["DBInstances"][0]["DBInstanceStatus"] if answer is not None else "deleted"

    def summary(self, spec: InstanceSpec) -> dict:
        return {"class": spec.instance_class}

    def diff(self, spec: InstanceSpec, found: InstanceFound) -> dict:
        diff: dict = {}
        diff_field(diff, "publicly_accessible", found.public, False)
        return diff

    def create(self, api: Api, spec: InstanceSpec) -> InstanceFound:
        instance = api.client("rds").create_db_instance(
            DBInstanceIdentifier=spec.name,
            DBClusterIdentifier=spec.cluster_id,
            Engine=spec.engine,
            DBInstanceClass=spec.instance_class,
            # The default depends on the VPC: with an internet gateway it is public.
            PubliclyAccessible=False,
            Tags=naming.as_aws(spec.tags),
        )["DBInstance"]
        return InstanceFound(spec.name, dict(spec.tags), instance["DBInstanceArn"], False,
                             spec.cluster_id, instance.get("DBInstanceStatus"))

    def update(self, api: Api, spec: InstanceSpec, found: InstanceFound, diff: dict,
               tags: dict) -> InstanceFound:
        """Make it private (the one update)."""
        api.client("rds").modify_db_instance(DBInstanceIdentifier=found.id,
                                             PubliclyAccessible=False, ApplyImmediately=True)
        found.public = False
        return found

    @staticmethod
    def reboot(api: Api, identifier: str) -> None:
        api.client("rds").reboot_db_instance(DBInstanceIdentifier=identifier)

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[InstanceFound]:
        instances = (parse_instance(raw) for raw in pages(
            api.client("rds"), "describe_db_instances", "DBInstances"))
        return [i for i in instances if i.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: InstanceFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """SkipFinalSnapshot: an Aurora instance keeps no data of its own (the cluster's
        final snapshot has it all). One gone or `deleting` is done."""
        if self.status(api, found.id) in ("deleted", DELETING):
            return
        or_none(lambda: api.client("rds").delete_db_instance(
            DBInstanceIdentifier=found.id, SkipFinalSnapshot=True))

    def gone(self, api: Api, found: InstanceFound) -> bool:
        return self.status(api, found.id) == "deleted"


def parse_instance(raw: dict) -> InstanceFound:
    """A DescribeDBInstances item."""
    return InstanceFound(raw["DBInstanceIdentifier"], naming.from_aws(raw.get("TagList")),
                         raw["DBInstanceArn"], bool(raw.get("PubliclyAccessible")),
                         raw.get("DBClusterIdentifier"), raw.get("DBInstanceStatus"))
