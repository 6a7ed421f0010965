"""Step `database`: the DB security group and subnet group, the Aurora PostgreSQL
cluster (Serverless v2, IAM auth, encrypted, deletion-protected) and its instances.

Every resource is described before anything is created: moto overwrites a cluster on a
duplicate CreateDBCluster and accepts a duplicate DB subnet group, and runbook must
never depend on the API refusing a duplicate.

The cluster is created with a throwaway master password that is never stored or shown.
Step `store-secrets` generates the real one once, keeps it in the DB secret and sets it
on the cluster, so the secret is the only place the password lives.

A new cluster takes 10+ minutes on AWS; the step waits for the cluster and its
instances to be `available` and prints the elapsed time while it does.

TLS is enforced by a custom DB cluster parameter group with rds.force_ssl=1
(`database.parameter_group`), made before the cluster and attached when the cluster is
created. Attached to an existing cluster (in the same ModifyDBCluster as any other
cluster change), it takes effect only when each member restarts: the plan says so, and
the step reboots members only with `--allow-reboot`, writer first, each once AWS shows
it `pending-reboot`, waiting until it is back `in-sync`. A run never reports the group in
force when it is not: without the flag, the members left to restart are printed with the
command that restarts them, and kept in the outputs (`pending_reboot`).
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws import retry
from runbook.engine import UNKNOWN, Change, Outputs, Step, diff_field, is_known
from runbook.resources.base import tag_change
from runbook.errors import PlanError, StepFailed
from runbook.aws.retry import error_code

STEP_NAME = "database"
ENGINE = "aurora-postgresql"

# What the cluster parameter group sets. On Aurora PostgreSQL rds.force_ssl is a cluster
# parameter (default 0); as a role setting it would do nothing.
FORCE_SSL = ("rds.force_ssl", "1")
# DBClusterMembers[].DBClusterParameterGroupStatus. After a ModifyDBCluster that names a
# new group, AWS shows each member `applying`, then `pending-reboot` until that instance
# restarts, then `in-sync`. A reboot made while the member is still `applying` may not
# pick the group up. On Aurora PostgreSQL 15.2, 14.7, 13.10, 12.14 and all 11.x a reader
# needs its own reboot too (AWS, "Associating a DB cluster parameter group with a DB
# cluster"); on other versions the writer's restart can restart the readers. Members are
# therefore judged by their own status, readers as much as the writer.
APPLYING, PENDING_REBOOT, IN_SYNC = "applying", "pending-reboot", "in-sync"
NOT_IN_FORCE = (APPLYING, PENDING_REBOOT)
# The failure states of boto3's db_instance_available waiter: an instance in one of these
# will not come back by waiting.
INSTANCE_FAILED = ("deleted", "deleting", "failed", "incompatible-restore",
                   "incompatible-parameters")

# Live waits: Aurora clusters and Serverless v2 instances usually take 5-15 minutes.
WAIT_TIMEOUT_S = 45 * 60
WAIT_INTERVAL_S = 30
# Around a reboot: `applying` turns `pending-reboot` within a minute or two, and an Aurora
# instance restarts in one to five; 20 minutes bounds either, polled every 10 s.
REBOOT_TIMEOUT_S = 20 * 60
REBOOT_INTERVAL_S = 10


@dataclass
class DatabaseState:
    vpc_id: str
    subnet_ids: list[str]
    security_group: dict | None = None       # {"id", "tags"}
    subnet_group: dict | None = None         # {"arn", "subnet_ids", "tags"}
    cluster: dict | None = None              # DescribeDBClusters item
    instances: list[dict] = field(default_factory=list)
    # {"arn", "family", "tags", "value": rds.force_ssl or None, "apply_type"}
    parameter_group: dict | None = None
    # The members when this run's ModifyDBCluster attached the group: none of them runs
    # it until it restarts, whatever status AWS (or moto, which always says in-sync)
    # shows just after.
    attached: list[str] = field(default_factory=list)


# What a reboot waits on, read by DatabaseStep._member_status: {"cluster": Status,
# "instance": DBInstanceStatus, "group": the member's DBClusterParameterGroupStatus or None}.

def ready_to_reboot(status: dict) -> bool:
    """The member has taken the group in (no longer `applying`) and nothing else is in
    progress on the cluster or the instance (RebootDBInstance refuses a busy instance)."""
    return (status["cluster"] == "available" and status["instance"] == "available"
            and status["group"] in (PENDING_REBOOT, IN_SYNC))


def rebooted(status: dict) -> bool:
    """Back from the reboot with the group in force."""
    return status["instance"] == "available" and status["group"] == IN_SYNC


def reboot_blocked(status: dict) -> str | None:
    """Why waiting on the member is pointless, or None."""
    if status["instance"] in INSTANCE_FAILED:
        return f"the instance is {status['instance']}"
    if status["group"] is None:
        return "it is not a member of the cluster"
    return None


def family(engine_version: str) -> str:
    """The parameter group family of an Aurora PostgreSQL version: 16.8 -> aurora-postgresql16."""
    return f"{ENGINE}{str(engine_version).split('.')[0]}"


@dataclass(frozen=True)
class DatabaseOutputs(Outputs):
    cluster_id: str
    cluster_arn: str
    cluster_resource_id: str
    endpoint: str
    reader_endpoint: str
    port: int
    database: str
    master_username: str
    security_group_id: str
    subnet_group: str
    instance_ids: tuple
    parameter_group: str
    # Members still to restart into the parameter group (see _pending_reboot), and the
    # command that restarts them: () and None once rds.force_ssl is in force.
    pending_reboot: tuple = ()
    reboot_command: str | None = None

    def as_report(self) -> dict:
        report = super().as_report()
        if self.reboot_command is None:
            del report["reboot_command"]
        return report

    @classmethod
    def standing_in(cls, database: str, master_username: str = "postgres") -> "DatabaseOutputs":
        """The outputs of a cluster not made yet, whose database a dry run's PostgreSQL
        stands in for (StepContext.database_dsn): for running fix-tables on its own."""
        return cls(cluster_id="(sandbox)", cluster_arn=UNKNOWN, cluster_resource_id=UNKNOWN,
                   endpoint=UNKNOWN, reader_endpoint=UNKNOWN, port=5432, database=database,
                   master_username=master_username, security_group_id=UNKNOWN,
                   subnet_group="(sandbox)", instance_ids=(UNKNOWN,), parameter_group="(sandbox)")


class DatabaseStep(Step):
    name = STEP_NAME

    @property
    def db(self):
        return self.config.database

    # -- read ----------------------------------------------------------------------

    def read(self) -> DatabaseState:
        network = self.inputs.network
        state = DatabaseState(network.vpc_id, list(network.subnet_ids))
        ec2, rds = self.client("ec2"), self.client("rds")
        if is_known(state.vpc_id):
            groups = ec2.describe_security_groups(Filters=[
                {"Name": "vpc-id", "Values": [state.vpc_id]},
                {"Name": "group-name", "Values": [self.db.security_group_name]},
            ])["SecurityGroups"]
            if groups:
                state.security_group = {"id": groups[0]["GroupId"],
                                        "tags": naming.from_aws(groups[0].get("Tags"))}
        try:
            group = rds.describe_db_subnet_groups(
                DBSubnetGroupName=self.db.subnet_group_name)["DBSubnetGroups"][0]
            state.subnet_group = {
                "arn": group["DBSubnetGroupArn"],
                "vpc_id": group.get("VpcId"),
                "subnet_ids": sorted(s["SubnetIdentifier"] for s in group["Subnets"]),
                "tags": naming.from_aws(rds.list_tags_for_resource(
                    ResourceName=group["DBSubnetGroupArn"])["TagList"]),
            }
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) != "DBSubnetGroupNotFoundFault":
                raise
        state.parameter_group = self._describe_parameter_group()
        state.cluster = self._describe_cluster()
        if state.cluster is not None:
            state.instances = self._describe_instances()
        self._claim(state)
        return state

    def _claim(self, state: DatabaseState) -> None:
        """Refuse what another environment owns, before anything is adopted or tagged."""
        db = self.db
        if state.security_group is not None:
            self.claim(f"ec2:security-group {db.security_group_name}",
                       state.security_group["tags"], _field(db, "security_group"))
        if state.subnet_group is not None:
            self.claim(f"rds:subnet-group {db.subnet_group_name}", state.subnet_group["tags"],
                       _field(db, "subnet_group"))
        if state.cluster is not None:
            self.claim(f"rds:cluster {db.cluster_id}",
                       naming.from_aws(state.cluster.get("TagList")), "database.cluster_id")
        for instance in state.instances:
            self.claim(f"rds:instance {instance['DBInstanceIdentifier']}",
                       naming.from_aws(instance.get("TagList")), "database.cluster_id")
        # After the cluster: its default name derives from cluster_id, so a copied file
        # hears about the cluster first.
        if state.parameter_group is not None:
            self.claim(f"rds:cluster-parameter-group {db.parameter_group_name}",
                       state.parameter_group["tags"], _field(db, "parameter_group"))

    def _describe_parameter_group(self) -> dict | None:
        rds = self.client("rds")
        name = self.db.parameter_group_name
        try:
            group = rds.describe_db_cluster_parameter_groups(
                DBClusterParameterGroupName=name)["DBClusterParameterGroups"][0]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("DBParameterGroupNotFound", "DBParameterGroupNotFoundFault"):
                return None
            raise
        # AWS lists every parameter of the family (about 350, in pages) with its Source
        # and ApplyType; moto 5.2.5 lists only those set on the group, without ApplyType.
        # A parameter absent from the list is at its engine default (0 for rds.force_ssl).
        found: dict = {}
        pages = rds.get_paginator("describe_db_cluster_parameters").paginate(
            DBClusterParameterGroupName=name)
        for page in pages:
            for parameter in page["Parameters"]:
                if parameter.get("ParameterName") == FORCE_SSL[0]:
                    found = parameter
        return {"arn": group["DBClusterParameterGroupArn"],
                "family": group.get("DBParameterGroupFamily"),
                "tags": naming.from_aws(rds.list_tags_for_resource(
                    ResourceName=group["DBClusterParameterGroupArn"])["TagList"]),
                "value": found.get("ParameterValue"),
                "apply_type": found.get("ApplyType")}

    def _describe_cluster(self) -> dict | None:
        try:
            return self.client("rds").describe_db_clusters(
                DBClusterIdentifier=self.db.cluster_id)["DBClusters"][0]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "DBClusterNotFoundFault":
                return None
            raise

    def _describe_instances(self) -> list[dict]:
        pages = self.client("rds").get_paginator("describe_db_instances").paginate(
            Filters=[{"Name": "db-cluster-id", "Values": [self.db.cluster_id]}])
        return [i for page in pages for i in page["DBInstances"]]

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: DatabaseState) -> list[Change]:
        changes = self._plan_security_group(state) + self._plan_subnet_group(state)
        changes += self._plan_parameter_group(state)
        changes += self._plan_cluster(state)
        changes += self._plan_instances(state)
        changes += self._plan_reboot(state, attached_now=self._group_to_attach(state) is not None)
        pending = self._pending_reboot(state)
        if pending and not self.ctx.allow_reboot and self.ctx.plan_only:
            # Not a change: nothing to converge until the operator allows the restart. A
            # run says it once, after apply (settle).
            self._say_pending(pending)
        return changes

    # -- the cluster parameter group (rds.force_ssl=1) -----------------------------

    def _wanted_family(self, state: DatabaseState) -> str:
        """The family of the cluster's engine: the running one for an existing cluster."""
        version = (state.cluster or {}).get("EngineVersion") or self.db.engine_version
        return family(version)

    def _plan_parameter_group(self, state: DatabaseState) -> list[Change]:
        name = self.db.parameter_group_name
        label = f"rds:cluster-parameter-group {name}"
        tags = naming.tags(self.config, STEP_NAME, name)
        wanted = self._wanted_family(state)
        group = state.parameter_group
        if group is None:
            return [Change("create", label, "create_parameter_group",
                           {"family": wanted, "tags": tags},
                           {"family": wanted, FORCE_SSL[0]: FORCE_SSL[1]})]
        # moto accepts any family name and never compares it with the cluster's engine;
        # AWS refuses to attach a group of another family. Checked here, before a write.
        if group["family"] != wanted:
            raise PlanError(STEP_NAME, label, f"it is a {group['family']} group, and the "
                            f"cluster needs {wanted}. Set database.parameter_group to another "
                            "name, or delete the group.")
        changes = []
        if group["value"] != FORCE_SSL[1]:
            changes.append(Change("update", label, "set_force_ssl", {},
                                  {FORCE_SSL[0]: {"from": group["value"], "to": FORCE_SSL[1]}}))
        return changes + tag_change(label, group["arn"], tags, group["tags"], "tag_rds")

    def _group_to_attach(self, state: DatabaseState) -> dict | None:
        """The cluster diff that attaches the group to an existing cluster, or None. It
        goes into the cluster's one ModifyDBCluster (update_cluster): a second
        ModifyDBCluster right after the first may be refused (InvalidDBClusterStateFault)
        while the cluster is still `modifying`."""
        cluster = state.cluster
        if cluster is None:
            return None  # created with the group attached
        name = self.db.parameter_group_name
        current = cluster.get("DBClusterParameterGroup")
        # RDS stores parameter group names in lower case.
        if str(current or "").lower() == name.lower():
            return None
        return {"parameter_group": {"from": current, "to": name},
                "reboot": self._reboot_note()}

    def _reboot_note(self) -> str:
        if self.ctx.allow_reboot:
            return ("each member is rebooted once AWS shows the group pending-reboot, writer "
                    "first (--allow-reboot); connections drop while each restarts")
        return ("pending: the group takes effect when the members restart. Run "
                f"`{self._reboot_command()}` to reboot them now, or reboot them in a quiet hour")

    def _reboot_command(self) -> str:
        return f"runbook run --step {STEP_NAME} --allow-reboot --env {self.config.env}"

    def _members(self, state: DatabaseState) -> list[dict]:
        """The cluster's members, writer first. A cluster that lists none (its instances
        are being made) counts its first instance as the writer."""
        members = (state.cluster or {}).get("DBClusterMembers") or []
        if not members:
            members = [{"DBInstanceIdentifier": i["DBInstanceIdentifier"], "IsClusterWriter": True}
                       for i in state.instances[:1]]
        return sorted(members, key=lambda m: not m.get("IsClusterWriter"))

    def _pending_reboot(self, state: DatabaseState) -> list[str]:
        """Members, writer first, that have yet to restart into the cluster's parameter
        group: those AWS shows `applying` or `pending-reboot`, and every member when this
        run attached the group and did not reboot (moto 5.2.5 always shows `in-sync`)."""
        attached = [] if self.ctx.allow_reboot else state.attached
        return [m["DBInstanceIdentifier"] for m in self._members(state)
                if m["DBInstanceIdentifier"] in attached
                or m.get("DBClusterParameterGroupStatus") in NOT_IN_FORCE]

    def _say_pending(self, pending: list[str]) -> None:
        self.ctx.progress.line(
            f"  reboot pending: {', '.join(pending)} {'has' if len(pending) == 1 else 'have'} "
            f"yet to restart into parameter group {self.db.parameter_group_name}, so "
            f"rds.force_ssl is not in force there. Next: `{self._reboot_command()}`",
            fg="yellow")

    def _plan_reboot(self, state: DatabaseState, *, attached_now: bool) -> list[Change]:
        """With --allow-reboot, a reboot per member the group is not in force on, writer
        first. After an attach in this run, every member: the writer is always rebooted,
        a reader only if it still shows pending-reboot once the writer is back."""
        if not self.ctx.allow_reboot:
            return []  # the cluster change (or outputs' pending_reboot) says it is pending
        group = self.db.parameter_group_name
        changes = []
        for member in self._members(state):
            identifier = member["DBInstanceIdentifier"]
            writer = bool(member.get("IsClusterWriter"))
            if not attached_now and member.get("DBClusterParameterGroupStatus") not in NOT_IN_FORCE:
                continue
            when = "" if attached_now and writer else ", if it still shows pending-reboot"
            changes.append(Change(
                "update", f"rds:instance {identifier}", "reboot_instance",
                {"identifier": identifier, "unless_in_sync": not (attached_now and writer)},
                {"reboot": f"{'writer' if writer else 'reader'}, to apply parameter group "
                           f"{group}{when} (--allow-reboot)"}))
        return changes

    def _plan_security_group(self, state: DatabaseState) -> list[Change]:
        name = self.db.security_group_name
        tags = naming.tags(self.config, STEP_NAME, name)
        if state.security_group is None:
            return [Change("create", f"ec2:security-group {name}", "create_security_group",
                           {"tags": tags}, {"vpc": state.vpc_id, "ingress": "none yet",
                                            "egress": "all (the default)"})]
        return tag_change(f"ec2:security-group {name}", state.security_group["id"], tags,
                           state.security_group["tags"], "tag_ec2")

    def _plan_subnet_group(self, state: DatabaseState) -> list[Change]:
        name = self.db.subnet_group_name
        label = f"rds:subnet-group {name}"
        tags = naming.tags(self.config, STEP_NAME, name)
        if state.subnet_group is None:
            return [Change("create", label, "create_subnet_group", {"tags": tags},
                           {"subnets": state.subnet_ids})]
        if is_known(state.vpc_id) and state.subnet_group["vpc_id"] not in (None, state.vpc_id):
            raise PlanError(STEP_NAME, label, f"it belongs to {state.subnet_group['vpc_id']}, "
                            f"not to the environment's VPC {state.vpc_id}. Rename "
                            "database.subnet_group or delete the old group.")
        changes = []
        if sorted(state.subnet_ids) != state.subnet_group["subnet_ids"]:
            changes.append(Change("update", label, "update_subnet_group", {},
                                  {"subnets": {"from": state.subnet_group["subnet_ids"],
                                               "to": sorted(state.subnet_ids)}}))
        return changes + tag_change(label, state.subnet_group["arn"], tags,
                                     state.subnet_group["tags"], "tag_rds")

    def _plan_cluster(self, state: DatabaseState) -> list[Change]:
        db = self.db
        label = f"rds:cluster {db.cluster_id}"
        tags = naming.tags(self.config, STEP_NAME, db.cluster_id)
        scaling = {"MinCapacity": db.min_capacity, "MaxCapacity": db.max_capacity}
        cluster = state.cluster
        if cluster is None:
            return [Change("create", label, "create_cluster", {"tags": tags}, {
                "engine": f"{ENGINE} {db.engine_version}", "database": db.name,
                "serverless_v2": f"{db.min_capacity}-{db.max_capacity} ACU",
                "iam_auth": True, "encrypted": True,
                "parameter_group": db.parameter_group_name,
                "deletion_protection": db.deletion_protection})]
        if cluster["Engine"] != ENGINE:
            raise PlanError(STEP_NAME, label, f"it runs {cluster['Engine']}, not {ENGINE}. "
                            "Use another database.cluster_id.")
        if not cluster.get("StorageEncrypted"):
            raise PlanError(STEP_NAME, label, "its storage is not encrypted, and encryption "
                            "cannot be turned on in place. Restore an encrypted copy from a "
                            "snapshot and point database.cluster_id at it.")
        if cluster.get("Status") in ("stopped", "stopping"):
            raise PlanError(STEP_NAME, label, f"the cluster is {cluster['Status']}. Start it "
                            f"(`aws rds start-db-cluster --db-cluster-identifier {db.cluster_id}`) "
                            "and run again.")
        # RDS stores subnet group names in lower case.
        if str(cluster.get("DBSubnetGroup", "")).lower() != db.subnet_group_name.lower():
            raise PlanError(STEP_NAME, label, f"it uses DB subnet group "
                            f"{cluster.get('DBSubnetGroup')}, the file says "
                            f"{db.subnet_group_name}. Set database.subnet_group to match.")
        diff: dict = {}
        diff_field(diff, "deletion_protection", cluster.get("DeletionProtection"),
                   db.deletion_protection)
        diff_field(diff, "iam_auth", cluster.get("IAMDatabaseAuthenticationEnabled"), True)
        current_scaling = cluster.get("ServerlessV2ScalingConfiguration") or {}
        diff_field(diff, "serverless_v2",
                   {k: current_scaling.get(k) for k in scaling} if current_scaling else None,
                   scaling)
        groups = [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", ())]
        sg = state.security_group["id"] if state.security_group else UNKNOWN
        if sg not in groups:
            diff["security_groups"] = {"from": groups, "to": groups + [sg]}
        diff.update(self._group_to_attach(state) or {})
        changes = []
        if diff:
            changes.append(Change("update", label, "update_cluster", {"diff": diff}, diff))
        return changes + tag_change(label, cluster["DBClusterArn"], tags,
                                     naming.from_aws(cluster.get("TagList")), "tag_rds")

    def _plan_instances(self, state: DatabaseState) -> list[Change]:
        db = self.db
        existing = {i["DBInstanceIdentifier"]: i for i in state.instances}
        changes: list[Change] = []
        missing = db.instances - len(existing)
        number = 0
        while missing > 0:
            number += 1
            name = f"{db.cluster_id}-{number}"
            if name in existing:
                continue
            changes.append(Change("create", f"rds:instance {name}", "create_instance",
                                  {"identifier": name,
                                   "tags": naming.tags(self.config, STEP_NAME, name)},
                                  {"class": db.instance_class}))
            missing -= 1
        for name, instance in sorted(existing.items()):
            if instance.get("PubliclyAccessible"):
                changes.append(Change("update", f"rds:instance {name}", "make_private",
                                      {"identifier": name},
                                      {"publicly_accessible": {"from": True, "to": False}}))
            changes += tag_change(f"rds:instance {name}", instance["DBInstanceArn"],
                                   naming.tags(self.config, STEP_NAME, name),
                                   naming.from_aws(instance.get("TagList")), "tag_rds")
        return changes

    # -- apply ---------------------------------------------------------------------

    def apply_create_security_group(self, state: DatabaseState, tags: dict) -> None:
        ec2 = self.client("ec2")
        group_id = self.ctx.retry_ec2(lambda: ec2.create_security_group(
            GroupName=self.db.security_group_name, VpcId=state.vpc_id,
            Description=f"Aurora cluster {self.db.cluster_id} (managed by runbook)",
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": naming.as_aws(tags)}]))["GroupId"]
        # The group's rules belong to step vpc-integrate, which keeps AWS's default egress
        # here (Aurora's aws_s3, aws_lambda and ML features connect out through it).
        state.security_group = {"id": group_id, "tags": tags}

    def apply_create_subnet_group(self, state: DatabaseState, tags: dict) -> None:
        group = self.client("rds").create_db_subnet_group(
            DBSubnetGroupName=self.db.subnet_group_name,
            DBSubnetGroupDescription=f"Private subnets of {self.config.network.name}",
            SubnetIds=state.subnet_ids, Tags=naming.as_aws(tags))["DBSubnetGroup"]
        state.subnet_group = {"arn": group["DBSubnetGroupArn"], "vpc_id": state.vpc_id,
                              "subnet_ids": sorted(state.subnet_ids), "tags": tags}

    def apply_update_subnet_group(self, state: DatabaseState) -> None:
        self.client("rds").modify_db_subnet_group(
            DBSubnetGroupName=self.db.subnet_group_name, SubnetIds=state.subnet_ids)

    def apply_create_cluster(self, state: DatabaseState, tags: dict) -> None:
        db = self.db
        state.cluster = self.client("rds").create_db_cluster(
            DBClusterIdentifier=db.cluster_id,
            Engine=ENGINE,
            EngineVersion=db.engine_version,
            DatabaseName=db.name,
            Port=db.port,
            MasterUsername=db.master_username,
            # Replaced by store-secrets with the password kept in the DB secret.
            MasterUserPassword=pysecrets.token_urlsafe(32),
            DBSubnetGroupName=db.subnet_group_name,
            DBClusterParameterGroupName=db.parameter_group_name,
            VpcSecurityGroupIds=[state.security_group["id"]],
            StorageEncrypted=True,
            EnableIAMDatabaseAuthentication=True,
            DeletionProtection=db.deletion_protection,
            ServerlessV2ScalingConfiguration={"MinCapacity": db.min_capacity,
                                              "MaxCapacity": db.max_capacity},
            CopyTagsToSnapshot=True,
            Tags=naming.as_aws(tags),
        )["DBCluster"]

    def apply_update_cluster(self, state: DatabaseState, diff: dict) -> None:
        db = self.db
        params: dict = {"DBClusterIdentifier": db.cluster_id, "ApplyImmediately": True}
        if "deletion_protection" in diff:
            params["DeletionProtection"] = db.deletion_protection
        if "iam_auth" in diff:
            params["EnableIAMDatabaseAuthentication"] = True
        if "serverless_v2" in diff:
            params["ServerlessV2ScalingConfiguration"] = {"MinCapacity": db.min_capacity,
                                                          "MaxCapacity": db.max_capacity}
        if "security_groups" in diff:
            current = [g["VpcSecurityGroupId"] for g in state.cluster.get("VpcSecurityGroups", ())]
            params["VpcSecurityGroupIds"] = current + [state.security_group["id"]]
        if "parameter_group" in diff:
            # A run that fails here (or loses the answer) is finished by the next: it finds
            # the group attached or not, and on AWS the members' status (pending-reboot)
            # says whether a restart is still due.
            params["DBClusterParameterGroupName"] = db.parameter_group_name
            state.attached = [m["DBInstanceIdentifier"] for m in self._members(state)]
        state.cluster = self.client("rds").modify_db_cluster(**params)["DBCluster"]

    def apply_create_parameter_group(self, state: DatabaseState, family: str,
                                     tags: dict) -> None:
        name = self.db.parameter_group_name
        group = self.client("rds").create_db_cluster_parameter_group(
            DBClusterParameterGroupName=name, DBParameterGroupFamily=family,
            Description=f"TLS only for cluster {self.db.cluster_id} (managed by runbook)",
            Tags=naming.as_aws(tags))["DBClusterParameterGroup"]
        state.parameter_group = {"arn": group["DBClusterParameterGroupArn"], "family": family,
                                 "tags": tags, "value": None, "apply_type": None}
        # A new group holds the engine defaults: rds.force_ssl is set next, in the same
        # run. A run that stops in between finds the group and sets it then.
        self.apply_set_force_ssl(state)

    def apply_set_force_ssl(self, state: DatabaseState) -> None:
        # rds.force_ssl is dynamic on Aurora PostgreSQL: "immediate" applies it without a
        # restart. AWS refuses "immediate" for a static parameter, so the ApplyType AWS
        # reports wins where it says static.
        static = (state.parameter_group or {}).get("apply_type") == "static"
        self.client("rds").modify_db_cluster_parameter_group(
            DBClusterParameterGroupName=self.db.parameter_group_name,
            Parameters=[{"ParameterName": FORCE_SSL[0], "ParameterValue": FORCE_SSL[1],
                         "ApplyMethod": "pending-reboot" if static else "immediate"}])
        state.parameter_group["value"] = FORCE_SSL[1]

    def apply_reboot_instance(self, state: DatabaseState, identifier: str,
                              unless_in_sync: bool) -> bool | None:
        """Reboot one member into the group (only planned with --allow-reboot): once AWS
        shows it pending-reboot, and then wait until it is available and in-sync, so the
        next member (a reader after the writer) starts from a settled cluster. Returns
        False, not rebooting, when `unless_in_sync` and the member is already in-sync: a
        reader the writer's restart took along, or a reboot whose answer was lost."""
        group = self.db.parameter_group_name
        before = self._wait_member(
            identifier, ready_to_reboot,
            f"rds instance {identifier} to show parameter group {group} pending-reboot")
        if unless_in_sync and before["group"] == IN_SYNC:
            self.ctx.progress.line(f"  rds:instance {identifier} is in-sync with {group} "
                                   "already; not rebooted", dim=True)
            return False
        self.client("rds").reboot_db_instance(DBInstanceIdentifier=identifier)
        self._wait_member(
            identifier, rebooted,
            f"rds instance {identifier} to restart in-sync with parameter group {group}")
        return None

    def _member_status(self, identifier: str) -> dict:
        """One read of what a reboot waits on: the cluster's and the instance's status and
        the member's DBClusterParameterGroupStatus (None: not a member)."""
        cluster = self._describe_cluster() or {}
        member = next((m for m in cluster.get("DBClusterMembers") or []
                       if m["DBInstanceIdentifier"] == identifier), None)
        try:
            instance = self.client("rds").describe_db_instances(
                DBInstanceIdentifier=identifier)["DBInstances"][0]["DBInstanceStatus"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) != "DBInstanceNotFound":
                raise
            instance = "deleted"
        return {"cluster": cluster.get("Status"), "instance": instance,
                "group": member and member.get("DBClusterParameterGroupStatus")}

    def _wait_member(self, identifier: str, done, what: str) -> dict:
        return self._wait(lambda: self._member_status(identifier), done, what,
                          f"rds:instance {identifier}", failed=reboot_blocked)

    def _wait(self, read, done, what: str, resource: str, failed=lambda _: None):
        """retry.wait_until with the step context's sleep, clock and progress (the
        elapsed time printed while it waits); a timeout fails the step on `resource`."""
        try:
            return retry.wait_until(read, done, what=what, timeout_s=REBOOT_TIMEOUT_S,
                                    interval_s=REBOOT_INTERVAL_S, sleep=self.ctx.sleep,
                                    clock=self.ctx.clock, failed=failed,
                                    on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout as exc:
            raise StepFailed(STEP_NAME, resource, str(exc)) from None

    def apply_create_instance(self, state: DatabaseState, identifier: str, tags: dict) -> None:
        instance = self.client("rds").create_db_instance(
            DBInstanceIdentifier=identifier,
            DBClusterIdentifier=self.db.cluster_id,
            Engine=ENGINE,
            DBInstanceClass=self.db.instance_class,
            # The default depends on the VPC: with an internet gateway it is public.
            PubliclyAccessible=False,
            Tags=naming.as_aws(tags),
        )["DBInstance"]
        state.instances.append(instance)

    def apply_make_private(self, state: DatabaseState, identifier: str) -> None:
        self.client("rds").modify_db_instance(DBInstanceIdentifier=identifier,
                                              PubliclyAccessible=False, ApplyImmediately=True)

    def apply_tag_rds(self, state: DatabaseState, resource_id: str, tags: dict) -> None:
        self.client("rds").add_tags_to_resource(ResourceName=resource_id,
                                                Tags=naming.as_aws(tags))

    def apply_tag_ec2(self, state: DatabaseState, resource_id: str, tags: dict) -> None:
        self.ctx.retry_ec2(lambda: self.client("ec2").create_tags(
            Resources=[resource_id], Tags=naming.as_aws(tags)))

    # -- settle and outputs --------------------------------------------------------

    def settle(self, state: DatabaseState) -> None:
        cluster_id = self.db.cluster_id
        self.ctx.wait_for("rds", "db_cluster_available", DBClusterIdentifier=cluster_id,
                          what=f"rds cluster {cluster_id} to be available",
                          timeout_s=WAIT_TIMEOUT_S, interval_s=WAIT_INTERVAL_S)
        self.ctx.wait_for("rds", "db_instance_available",
                          Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}],
                          what=f"rds instances of {cluster_id} to be available",
                          timeout_s=WAIT_TIMEOUT_S, interval_s=WAIT_INTERVAL_S)
        state.instances = self._describe_instances()
        state.cluster = self._settle_parameter_group()
        self._check_in_force(state)

    def _check_in_force(self, state: DatabaseState) -> None:
        """After apply: fail a run with --allow-reboot that leaves a member out of sync,
        and make a run without it say which members are left and the next command."""
        if self.ctx.allow_reboot:
            # --allow-reboot promises the group in force at the end: fail when it is not.
            out = [(m["DBInstanceIdentifier"], m.get("DBClusterParameterGroupStatus"))
                   for m in self._members(state)
                   if m.get("DBClusterParameterGroupStatus") not in (None, IN_SYNC)]
            if out:
                raise StepFailed(
                    STEP_NAME, f"rds:cluster {self.db.cluster_id}",
                    f"{', '.join(f'{name} ({status})' for name, status in out)} still not "
                    f"in-sync with parameter group {self.db.parameter_group_name} after the "
                    "reboots, so rds.force_ssl is not in force there. Run again, which "
                    "reboots what shows pending-reboot; if it stays, see `aws rds "
                    f"describe-events --source-identifier {out[0][0]} --source-type db-instance`")
            return
        pending = self._pending_reboot(state)
        if pending:
            self._say_pending(pending)

    def _settle_parameter_group(self) -> dict | None:
        """The cluster once no member shows `applying` (a group just attached, or a
        parameter just changed): what is left is in-sync or pending-reboot."""
        return self._wait(self._describe_cluster, lambda cluster: cluster is None or not any(
            m.get("DBClusterParameterGroupStatus") == APPLYING
            for m in cluster.get("DBClusterMembers") or []),
            f"rds cluster {self.db.cluster_id}'s members to apply parameter group "
            f"{self.db.parameter_group_name}", f"rds:cluster {self.db.cluster_id}")

    def outputs(self, state: DatabaseState) -> DatabaseOutputs:
        cluster = state.cluster or {}
        pending = self._pending_reboot(state)
        return DatabaseOutputs(
            cluster_id=self.db.cluster_id,
            cluster_arn=cluster.get("DBClusterArn", UNKNOWN),
            cluster_resource_id=cluster.get("DbClusterResourceId", UNKNOWN),
            endpoint=cluster.get("Endpoint", UNKNOWN),
            reader_endpoint=cluster.get("ReaderEndpoint", UNKNOWN),
            port=cluster.get("Port", self.db.port),
            database=self.db.name,
            master_username=self.db.master_username,
            security_group_id=state.security_group["id"] if state.security_group else UNKNOWN,
            subnet_group=self.db.subnet_group_name,
            instance_ids=tuple(sorted(i["DBInstanceIdentifier"] for i in state.instances)
                               or [UNKNOWN]),
            parameter_group=self.db.parameter_group_name,
            pending_reboot=tuple(pending),
            reboot_command=self._reboot_command() if pending else None)


def _field(db, name: str) -> str:
    """The environment-file field that names `db`'s `name` (subnet_group, security_group):
    the field itself when set, else database.cluster_id, which the default derives from."""
    return f"database.{name}" if getattr(db, name) else "database.cluster_id"


STEP = DatabaseStep
