"""Step `database`: the DB security group and subnet group, the Aurora PostgreSQL
cluster (Serverless v2, IAM auth, encrypted, deletion-protected) and its instances
(runbook.resources.rds, runbook.resources.security_group).

Every resource is described before anything is created: moto overwrites a cluster on a
duplicate CreateDBCluster and accepts a duplicate DB subnet group, and runbook must
never depend on the API refusing a duplicate.

The cluster is created with its final master password and the tag that names it
(runbook.resources.rds.Cluster), never shown: the outputs hand it to step
`store-secrets` in memory, never in the report, and that step keeps it in the DB secret,
the one place it lives. A run that stops in between loses it; the next run's
store-secrets then sets the password its secret holds.

A new cluster takes 10+ minutes on AWS. The step makes it and its instances and moves
on: its outputs say whether they were `available` when last described, and the first
step that needs them ready (store-secrets to set the password, db-proxy to register the
cluster, fix-tables to connect) waits for them (`wait_available`), printing the elapsed
time. Steps that need only their ids (vpc-integrate) go ahead meanwhile.

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

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws.api import Api
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import StepFailed
from runbook.resources.base import Inventory
from runbook.resources.secret import MasterPassword
from runbook.resources.rds import (Cluster, ClusterFound, ClusterParameterGroup,
                                   ClusterSecurityGroup, ClusterSpec, Instance, InstanceFound,
                                   InstanceSpec, Member, ParameterGroupFound,
                                   ParameterGroupSpec, SubnetGroup, SubnetGroupFound,
                                   SubnetGroupSpec, writer_first)
from runbook.resources.security_group import SecurityGroup, SecurityGroupSpec

STEP_NAME = "database"
ENGINE = "aurora-postgresql"

# DBClusterMembers[].DBClusterParameterGroupStatus. After a ModifyDBCluster that names a
# new group, AWS shows each member `applying`, then `pending-reboot` until that instance
# restarts, then `in-sync`. A reboot made while the member is still `applying` may not
# pick the group up. On Aurora PostgreSQL 15.2, 14.7, 13.10, 12.14 and all 11.x a reader
# needs its own reboot too (AWS, "Associating a DB cluster parameter group with a DB
# cluster"); on other versions the writer's restart can restart the readers. Members are
# therefore judged by their own status, readers as much as the writer.
APPLYING, PENDING_REBOOT, IN_SYNC = "applying", "pending-reboot", "in-sync"
AVAILABLE = "available"           # a cluster's Status, an instance's DBInstanceStatus
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
class DatabaseState(Inventory):
    """found: "security-group", "subnet-group", "parameter-group", "cluster", and
    "instance <identifier>" for each instance of the cluster, in the order read (then
    made)."""

    # The master password this run created the cluster with (Cluster.create).
    master_password: MasterPassword | None = field(default=None, repr=False)
    # Whether the cluster existed when read, and how many changes apply made: settle
    # describes again only what they may have changed (DatabaseStep.settle).
    cluster_existed: bool = False
    applied: int = 0

    @property
    def cluster(self) -> ClusterFound | None:
        return self.found.get("cluster")

    @property
    def instances(self) -> list[InstanceFound]:
        return [item for key, item in self.found.items()
                if key.startswith("instance ") and item is not None]

    def set_instances(self, instances: list[InstanceFound]) -> None:
        for key in [key for key in self.found if key.startswith("instance ")]:
            del self.found[key]
        for instance in instances:
            self.found[instance_key(instance.id)] = instance


def instance_key(identifier: str) -> str:
    return f"instance {identifier}"


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
    # The cluster and every instance were `available` when last described. False while
    # they are being made: a step that needs them ready calls wait_available.
    available: bool = True
    # The master password this run created the cluster with, for store-secrets to keep
    # in the DB secret; None when the cluster was there already. Never in the report.
    master_password: MasterPassword | None = field(default=None, repr=False, compare=False)

    def as_report(self) -> dict:
        report = super().as_report()
        del report["master_password"]
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



SECURITY_GROUP = ClusterSecurityGroup(label_id=False)
SUBNET_GROUP, PARAMETER_GROUP = SubnetGroup(), ClusterParameterGroup()
CLUSTER, INSTANCE = Cluster(), Instance()


class DatabaseStep(Step):
    name = STEP_NAME

    @property
    def db(self):
        return self.config.database

    # -- what the step wants ---------------------------------------------------------

    def _tags(self, name: str) -> dict:
        return naming.tags(self.config, STEP_NAME, name)

    def security_group_spec(self) -> SecurityGroupSpec:
        # The group's rules belong to step vpc-integrate, which keeps AWS's default egress
        # here (Aurora's aws_s3, aws_lambda and ML features connect out through it).
        name = self.db.security_group_name
        return SecurityGroupSpec(
            name, self._tags(name), _field(self.db, "security_group"),
            vpc_id=self.inputs.network.vpc_id,
            description=f"Aurora cluster {self.db.cluster_id} (managed by runbook)")

    def subnet_group_spec(self) -> SubnetGroupSpec:
        network, name = self.inputs.network, self.db.subnet_group_name
        return SubnetGroupSpec(name, self._tags(name), _field(self.db, "subnet_group"),
                               vpc_id=network.vpc_id, subnet_ids=tuple(network.subnet_ids),
                               description=f"Private subnets of {self.config.network.name}")

    def parameter_group_spec(self, cluster: ClusterFound | None) -> ParameterGroupSpec:
        """Of the family of the cluster's engine: the running one for an existing cluster."""
        name = self.db.parameter_group_name
        version = (cluster.engine_version if cluster else None) or self.db.engine_version
        return ParameterGroupSpec(
            name, self._tags(name), _field(self.db, "parameter_group"), family=family(version),
            description=f"TLS only for cluster {self.db.cluster_id} (managed by runbook)")

    def cluster_spec(self, state: DatabaseState) -> ClusterSpec:
        db = self.db
        return ClusterSpec(
            db.cluster_id, self._tags(db.cluster_id), "database.cluster_id", engine=ENGINE,
            engine_version=db.engine_version, database=db.name, port=db.port,
            master_username=db.master_username, subnet_group=db.subnet_group_name,
            parameter_group=db.parameter_group_name,
            security_group_id=state.ref("security-group"),
            deletion_protection=db.deletion_protection, min_capacity=db.min_capacity,
            max_capacity=db.max_capacity, reboot_note=self._reboot_note(),
            members=tuple(m.id for m in self._members(state)))

    def instance_spec(self, identifier: str) -> InstanceSpec:
        return InstanceSpec(identifier, self._tags(identifier), "database.cluster_id",
                            cluster_id=self.db.cluster_id, engine=ENGINE,
                            instance_class=self.db.instance_class)

    # -- read ----------------------------------------------------------------------

    def read(self) -> DatabaseState:
        api, db, vpc_id = self.api, self.db, self.inputs.network.vpc_id
        with api.reading():
            group = (SecurityGroup.named(api, vpc_id, db.security_group_name)
                     if is_known(vpc_id) else None)
            subnet_group = SubnetGroup.named(api, db.subnet_group_name)
            parameter_group = ClusterParameterGroup.named(api, db.parameter_group_name)
            cluster = Cluster.named(api, db.cluster_id)
            instances = Instance.of_cluster(api, db.cluster_id) if cluster is not None else []
        return self.state(group, subnet_group, parameter_group, cluster, instances)

    def state(self, security_group, subnet_group: SubnetGroupFound | None,
              parameter_group: ParameterGroupFound | None, cluster: ClusterFound | None,
              instances: list[InstanceFound]) -> DatabaseState:
        """What was read, keyed for the plan: pure, so that plans are tested from data.
        What another environment owns is refused here, before anything is adopted or
        tagged."""
        state = DatabaseState(found={"security-group": security_group,
                                     "subnet-group": subnet_group,
                                     "parameter-group": parameter_group, "cluster": cluster})
        state.set_instances(instances)
        state.cluster_existed = cluster is not None
        if security_group is not None:
            SECURITY_GROUP.claim(self.security_group_spec(), security_group)
        if subnet_group is not None:
            SUBNET_GROUP.claim(self.subnet_group_spec(), subnet_group)
        if cluster is not None:
            CLUSTER.claim(self.cluster_spec(state), cluster)
        for instance in instances:
            INSTANCE.claim(self.instance_spec(instance.id), instance)
        # After the cluster: its default name derives from cluster_id, so a copied file
        # hears about the cluster first.
        if parameter_group is not None:
            PARAMETER_GROUP.claim(self.parameter_group_spec(cluster), parameter_group)
        return state

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: DatabaseState) -> list[Change]:
        found, cluster = state.found, state.cluster
        changes = SECURITY_GROUP.plan(self.security_group_spec(), found["security-group"],
                                      "security-group")
        changes += SUBNET_GROUP.plan(self.subnet_group_spec(), found["subnet-group"],
                                     "subnet-group")
        changes += PARAMETER_GROUP.plan(self.parameter_group_spec(cluster),
                                        found["parameter-group"], "parameter-group")
        # An existing cluster gets the group in its one ModifyDBCluster (Cluster.diff).
        spec = self.cluster_spec(state)
        changes += CLUSTER.plan(spec, cluster, "cluster")
        changes += self._plan_instances(state)
        changes += self._plan_reboot(
            state, attached_now=cluster is not None and CLUSTER.attaches(spec, cluster))
        pending = self._pending_reboot(state)
        if pending and not self.ctx.allow_reboot and self.ctx.plan_only:
            # Not a change: nothing to converge until the operator allows the restart. A
            # run says it once, after apply (settle).
            self._say_pending(pending)
        return changes

    def _plan_instances(self, state: DatabaseState) -> list[Change]:
        existing = {instance.id: instance for instance in state.instances}
        changes: list[Change] = []
        missing = self.db.instances - len(existing)
        number = 0
        while missing > 0:
            number += 1
            name = f"{self.db.cluster_id}-{number}"
            if name in existing:
                continue
            changes += INSTANCE.plan(self.instance_spec(name), None, instance_key(name))
            missing -= 1
        for name, instance in sorted(existing.items()):
            changes += INSTANCE.plan(self.instance_spec(name), instance, instance_key(name))
        return changes

    # -- the parameter group's restart (--allow-reboot) ------------------------------

    def _reboot_note(self) -> str:
        if self.ctx.allow_reboot:
            return ("each member is rebooted once AWS shows the group pending-reboot, writer "
                    "first (--allow-reboot); connections drop while each restarts")
        return ("pending: the group takes effect when the members restart. Run "
                f"`{self._reboot_command()}` to reboot them now, or reboot them in a quiet hour")

    def _reboot_command(self) -> str:
        return f"runbook run --step {STEP_NAME} --allow-reboot --env {self.config.env}"

    def _members(self, state: DatabaseState) -> list[Member]:
        """The cluster's members, writer first. A cluster that lists none (its instances
        are being made) counts its first instance as the writer."""
        members = state.cluster.members if state.cluster is not None else []
        if not members:
            members = [Member(i.id, writer=True) for i in state.instances[:1]]
        return writer_first(members)

    def _pending_reboot(self, state: DatabaseState) -> list[str]:
        """Members, writer first, that have yet to restart into the cluster's parameter
        group: those AWS shows `applying` or `pending-reboot`, and every member when this
        run attached the group and did not reboot (moto 5.2.5 always shows `in-sync`)."""
        attached = [] if self.ctx.allow_reboot or state.cluster is None else state.cluster.attached
        return [m.id for m in self._members(state)
                if m.id in attached or m.group_status in NOT_IN_FORCE]

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
            if not attached_now and member.group_status not in NOT_IN_FORCE:
                continue
            when = "" if attached_now and member.writer else ", if it still shows pending-reboot"
            changes.append(Change(
                "update", f"rds:instance {member.id}", "reboot_instance",
                {"identifier": member.id, "unless_in_sync": not (attached_now and member.writer)},
                {"reboot": f"{'writer' if member.writer else 'reader'}, to apply parameter group "
                           f"{group}{when} (--allow-reboot)"}, run=self._reboot))
        return changes

    def _reboot(self, api: Api, state: DatabaseState, identifier: str,
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
        Instance.reboot(api, identifier)
        self._wait_member(
            identifier, rebooted,
            f"rds instance {identifier} to restart in-sync with parameter group {group}")
        return None

    def _member_status(self, identifier: str) -> dict:
        """One read of what a reboot waits on: the cluster's and the instance's status and
        the member's DBClusterParameterGroupStatus (None: not a member)."""
        cluster = Cluster.named(self.api, self.db.cluster_id)
        member = next((m for m in (cluster.members if cluster else []) if m.id == identifier),
                      None)
        return {"cluster": cluster.status if cluster else None,
                "instance": Instance.status(self.api, identifier),
                "group": member and member.group_status}

    def _wait_member(self, identifier: str, done, what: str) -> dict:
        return self._wait(lambda: self._member_status(identifier), done, what,
                          f"rds:instance {identifier}", failed=reboot_blocked)

    def _wait(self, read, done, what: str, resource: str, failed=lambda _: None):
        return self.wait_until(read, done, what=what, resource=resource, failed=failed,
                               timeout_s=REBOOT_TIMEOUT_S, interval_s=REBOOT_INTERVAL_S)

    # -- apply, settle and outputs --------------------------------------------------

    def apply(self, state: DatabaseState, change: Change) -> bool | None:
        done = super().apply(state, change)
        if done is not False:
            state.applied += 1
        if change.op == CLUSTER.ops["create"]:
            # Kept apart from found["cluster"], which later reads replace.
            state.master_password = state.cluster.password
        return done

    def settle(self, state: DatabaseState) -> None:
        """Describe what apply left, without waiting for a new cluster or instance to be
        available (wait_available: its consumers do).

        Only a cluster that existed and was changed, or that showed a member `applying`
        its parameter group, is described again (its instances, then until no member is
        `applying`). One this run created holds what its create answers said (made with
        the group, it has nothing to apply), and on a run that changed nothing the read
        is still what AWS shows."""
        if self._may_be_applying(state):
            self._describe_again(state)
        self._check_in_force(state)

    @staticmethod
    def _may_be_applying(state: DatabaseState) -> bool:
        cluster = state.cluster
        return cluster is not None and (
            (state.cluster_existed and state.applied > 0)
            or any(m.group_status == APPLYING for m in cluster.members))

    def _describe_again(self, state: DatabaseState) -> None:
        cluster_id = self.db.cluster_id
        state.set_instances(Instance.of_cluster(self.api, cluster_id))
        attached = state.cluster.attached if state.cluster is not None else []
        state.found["cluster"] = self._settle_parameter_group()
        if state.cluster is not None:
            state.cluster.attached = attached

    def _check_in_force(self, state: DatabaseState) -> None:
        """After apply: fail a run with --allow-reboot that leaves a member out of sync,
        and make a run without it say which members are left and the next command."""
        if self.ctx.allow_reboot:
            # --allow-reboot promises the group in force at the end: fail when it is not.
            out = [(m.id, m.group_status) for m in self._members(state)
                   if m.group_status not in (None, IN_SYNC)]
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

    def _settle_parameter_group(self) -> ClusterFound | None:
        """The cluster once no member shows `applying` (a group just attached, or a
        parameter just changed): what is left is in-sync or pending-reboot."""
        return self._wait(
            lambda: Cluster.named(self.api, self.db.cluster_id),
            lambda cluster: cluster is None or not any(
                m.group_status == APPLYING for m in cluster.members),
            f"rds cluster {self.db.cluster_id}'s members to apply parameter group "
            f"{self.db.parameter_group_name}", f"rds:cluster {self.db.cluster_id}")

    def outputs(self, state: DatabaseState) -> DatabaseOutputs:
        cluster, group = state.cluster, state.found.get("security-group")
        pending = self._pending_reboot(state)
        return DatabaseOutputs(
            cluster_id=self.db.cluster_id,
            cluster_arn=_known(cluster and cluster.arn),
            cluster_resource_id=_known(cluster and cluster.resource_id),
            endpoint=_known(cluster and cluster.endpoint),
            reader_endpoint=_known(cluster and cluster.reader_endpoint),
            port=cluster.port if cluster and cluster.port is not None else self.db.port,
            database=self.db.name,
            master_username=self.db.master_username,
            security_group_id=group.id if group else UNKNOWN,
            subnet_group=self.db.subnet_group_name,
            instance_ids=tuple(sorted(i.id for i in state.instances) or [UNKNOWN]),
            parameter_group=self.db.parameter_group_name,
            pending_reboot=tuple(pending),
            reboot_command=self._reboot_command() if pending else None,
            available=_available(state),
            master_password=state.master_password)


def _available(state: DatabaseState) -> bool:
    cluster = state.cluster
    return (cluster is not None and cluster.status == AVAILABLE and bool(state.instances)
            and all(instance.status == AVAILABLE for instance in state.instances))


def wait_available(ctx, database: DatabaseOutputs, *, instances: bool = True) -> None:
    """Wait until step database's cluster, and with `instances` its instances, are
    available, unless its outputs say they were (read calls only, the elapsed time
    shown). The step that first needs them ready calls it: a new cluster takes 10+
    minutes, which the steps that need only its ids spend on their own work."""
    if database.available:
        return
    cluster_id = database.cluster_id
    ctx.wait_for("rds", "db_cluster_available", DBClusterIdentifier=cluster_id,
                 what=f"rds cluster {cluster_id} to be available",
                 timeout_s=WAIT_TIMEOUT_S, interval_s=WAIT_INTERVAL_S)
    if instances:
        ctx.wait_for("rds", "db_instance_available",
                     Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}],
                     what=f"rds instances of {cluster_id} to be available",
                     timeout_s=WAIT_TIMEOUT_S, interval_s=WAIT_INTERVAL_S)


def _known(value):
    """What AWS said, or UNKNOWN where it said nothing (no cluster yet)."""
    return value if value else UNKNOWN


def _field(db, name: str) -> str:
    """The environment-file field that names `db`'s `name` (subnet_group, security_group):
    the field itself when set, else database.cluster_id, which the default derives from."""
    return f"database.{name}" if getattr(db, name) else "database.cluster_id"


STEP = DatabaseStep
