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
created. Attaching it to an existing cluster takes effect only when the writer restarts:
the plan says so, and the step reboots the writer only with `--allow-reboot`.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass, field

from runbook import naming
from runbook.engine import UNKNOWN, Change, Step, diff_field, is_known, tag_change
from runbook.errors import PlanError
from runbook.retry import error_code

STEP_NAME = "database"
ENGINE = "aurora-postgresql"

# What the cluster parameter group sets. On Aurora PostgreSQL rds.force_ssl is a cluster
# parameter (default 0); as a role setting it would do nothing.
FORCE_SSL = ("rds.force_ssl", "1")
# DBClusterMembers[].DBClusterParameterGroupStatus of a writer that has yet to restart
# into the cluster's (new) parameter group.
PENDING_REBOOT = "pending-reboot"

# Live waits: Aurora clusters and Serverless v2 instances usually take 5-15 minutes.
WAIT_TIMEOUT_S = 45 * 60
WAIT_INTERVAL_S = 30


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


def family(engine_version: str) -> str:
    """The parameter group family of an Aurora PostgreSQL version: 16.8 -> aurora-postgresql16."""
    return f"{ENGINE}{str(engine_version).split('.')[0]}"


class DatabaseStep(Step):
    name = STEP_NAME

    @property
    def db(self):
        return self.config.database

    # -- read ----------------------------------------------------------------------

    def read(self) -> DatabaseState:
        network = self.ctx.upstream("network")
        state = DatabaseState(network["vpc_id"], list(network["subnet_ids"]))
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
        attach = self._plan_attach_parameter_group(state)
        changes += attach
        changes += self._plan_instances(state)
        changes += self._plan_reboot(state, attached_now=bool(attach))
        pending = self._pending_reboot(state)
        if pending and not self.ctx.allow_reboot:
            # Not a change: nothing to converge until the operator allows the restart.
            self.ctx.progress.line(
                f"  reboot pending: {', '.join(pending)} has yet to restart into parameter "
                f"group {self.db.parameter_group_name} (rds.force_ssl); {self._reboot_note()}",
                fg="yellow")
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

    def _plan_attach_parameter_group(self, state: DatabaseState) -> list[Change]:
        cluster = state.cluster
        if cluster is None:
            return []  # created with the group attached
        name = self.db.parameter_group_name
        current = cluster.get("DBClusterParameterGroup")
        # RDS stores parameter group names in lower case.
        if str(current or "").lower() == name.lower():
            return []
        return [Change("update", f"rds:cluster {self.db.cluster_id}", "attach_parameter_group",
                       {}, {"parameter_group": {"from": current, "to": name},
                            "reboot": self._reboot_note()})]

    def _reboot_note(self) -> str:
        if self.ctx.allow_reboot:
            return ("the writer is rebooted after the group is attached (--allow-reboot); "
                    "connections drop while it restarts")
        return ("pending: the group takes effect when the writer restarts. Run "
                f"`runbook run --step {STEP_NAME} --allow-reboot --env {self.config.env}` "
                "to reboot it now, or reboot it in a quiet hour")

    def _writers(self, state: DatabaseState) -> list[str]:
        members = (state.cluster or {}).get("DBClusterMembers") or []
        writers = [m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")]
        if writers or members:
            return writers
        return [i["DBInstanceIdentifier"] for i in state.instances][:1]

    def _pending_reboot(self, state: DatabaseState) -> list[str]:
        """Writers that have yet to restart into the cluster's parameter group. AWS shows
        `pending-reboot` on the member; moto 5.2.5 always shows `in-sync`, so there only a
        group attached in this run is known to need the reboot."""
        members = (state.cluster or {}).get("DBClusterMembers") or []
        return [m["DBInstanceIdentifier"] for m in members
                if m.get("IsClusterWriter") and m.get("DBClusterParameterGroupStatus")
                == PENDING_REBOOT]

    def _plan_reboot(self, state: DatabaseState, *, attached_now: bool) -> list[Change]:
        writers = self._writers(state) if attached_now else self._pending_reboot(state)
        if not writers or not self.ctx.allow_reboot:
            return []  # the attach change (or outputs' pending_reboot) says it is pending
        group = self.db.parameter_group_name
        return [Change("update", f"rds:instance {writer}", "reboot_instance",
                       {"identifier": writer},
                       {"reboot": f"to apply parameter group {group} (--allow-reboot)"})
                for writer in writers]

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

    def apply_attach_parameter_group(self, state: DatabaseState) -> None:
        state.cluster = self.client("rds").modify_db_cluster(
            DBClusterIdentifier=self.db.cluster_id,
            DBClusterParameterGroupName=self.db.parameter_group_name,
            ApplyImmediately=True)["DBCluster"]

    def apply_reboot_instance(self, state: DatabaseState, identifier: str) -> None:
        # Only planned with --allow-reboot. settle() then waits for it to be available.
        self.client("rds").reboot_db_instance(DBInstanceIdentifier=identifier)

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
        state.cluster = self._describe_cluster()
        state.instances = self._describe_instances()

    def outputs(self, state: DatabaseState) -> dict:
        cluster = state.cluster or {}
        return {
            "cluster_id": self.db.cluster_id,
            "cluster_arn": cluster.get("DBClusterArn", UNKNOWN),
            "cluster_resource_id": cluster.get("DbClusterResourceId", UNKNOWN),
            "endpoint": cluster.get("Endpoint", UNKNOWN),
            "reader_endpoint": cluster.get("ReaderEndpoint", UNKNOWN),
            "port": cluster.get("Port", self.db.port),
            "database": self.db.name,
            "master_username": self.db.master_username,
            "security_group_id": state.security_group["id"] if state.security_group else UNKNOWN,
            "subnet_group": self.db.subnet_group_name,
            "instance_ids": sorted(i["DBInstanceIdentifier"] for i in state.instances) or [UNKNOWN],
            "parameter_group": self.db.parameter_group_name,
            # Writers still to restart into the parameter group (AWS reports them; see
            # _pending_reboot): [] once rds.force_ssl is in force.
            "pending_reboot": self._pending_reboot(state),
        }


def _field(db, name: str) -> str:
    """The environment-file field that names `db`'s `name` (subnet_group, security_group):
    the field itself when set, else database.cluster_id, which the default derives from."""
    return f"database.{name}" if getattr(db, name) else "database.cluster_id"


STEP = DatabaseStep
