"""The crash-consistency sweep: fail the k-th mutating AWS call of a full a1..a5 run, run
again without the fault, and compare what the account holds with what a clean run left.

One `Point` is a write number k (counted as ClientFactory counts writes) and a fault kind:

  throttling             the call is refused before it is sent: ThrottlingException, 400
  server-error           refused with InternalFailure (HTTP 500; ServiceUnavailable, 503,
                         on even k)
  connection-reset       the connection is reset before the request got through
  response-lost          the call reaches AWS and takes effect, then runbook sees
                         ConnectionClosedError: its answer was lost on the way back, or
                         runbook died right after the call
  response-lost-retried  the call reaches AWS and takes effect, the connection drops
                         before the answer, and botocore's own retry sends the request
                         again: how a create without an idempotency token is made twice
  untagged               (creates only) the create is refused, and the resource appears
                         as a crash between a create and its tags, or the old shell
                         scripts, would leave it: made without runbook's tags (LEFTOVERS)

The three refused kinds are what runbook sees once botocore's retries gave up (they are
raised from the factory's `interceptors`, which botocore does not retry). They leave the
account in the same state, so a full sweep rotates them over k (k % 3); the two lost
kinds leave the k-th call done and are tried at every k, and `untagged` at every create.
response-lost comes from the factory's `after_interceptors`. response-lost-retried has
to sit inside botocore's retry loop, which no call-level hook reaches, so `Fault.attach`
registers a `before-send` handler on the factory's clients that delivers the request
itself and then drops the connection.

After the faulty run, a second run without the fault (a fresh ClientFactory and Runner,
as a second `runbook run` would be; both take the environment's run lock as a live run
does) must succeed, and the account must hold what a clean run left: `inventory` lists
it with plain boto3 clients, never runbook's journal or reports, and the database's
migration ledger and tables. Resources are described without their ids, which differ
from run to run, so that the two inventories compare.

The three tests are part of the runs, as they are part of a dry run of `runbook run
--phase a5`: integration-test after deploy-post-confirmation, registration-test after
deploy-process-user-signup, migration-test after deploy-user-migration. The second run
proves the recovered pipeline works, and their users, rows (profiles, `users`, the
registration outbox), items and messages must be gone after it. Their own writes are
not swept: none is idempotent or converges anything (each makes a throwaway user,
registration-test two messages and migration-test a legacy profile row and a hash-table
item, and deletes them), so "ends in the same resources" does not apply to them; how
they clean up after a failure has tests of its own. Their writes still count in k, so
the swept writes of a4 are numbered after integration-test's.

registration-test needs Lambda's SQS poller: each run has one (`Account.poller`, with
moto's own firing of mappings off, runbook.sandbox.sqs), with clients of its own, so
that its calls are neither counted nor failed; it is stopped when the run ends, its
batch in flight finished.

Phase a5 runs after a4, as a dry run of `runbook run --phase a5` does: its writes are
hash-table's, msk-cluster's, deploy-legacy-loader's and deploy-user-migration's (the
function, and both triggers in one UpdateUserPool); stage-legacy-users writes to
Kafka and reads DynamoDB, and the loader's writes are Lambda's (the account's MSK
poller, like the SQS one, has clients of its own). Each point gets a new, empty Kafka
broker (the cluster's data plane: a topic, its records and the consumer group's offsets
would otherwise outlive moto's reset), and `inventory` lists the broker's topics and
the hash table's items: a converged run leaves every legacy user staged, once.

Which second run: after a failure in a1..a3, the whole run again. After a failure in
a4, `runbook run --phase a4` and then `--phase a5`; after one in a5, `--phase a5`
(`recovery`), as an operator re-runs the phase that failed and those after it: the
phases before it had passed. Re-running all of a1..a4 instead stops
at integration-test whenever the bus exists without the rest of a4 (a crash in step
event-bus or deploy-process-user-signup): its cleanup waits for the test user's event
to reach `users`, which needs the rule, the target, the consumer and its mapping, and
fails after integration_test.row_timeout_s, so that run never reaches the steps that
would finish a4.

Used by tests/integration/test_crash_consistency.py (a CI-sized sample) and by
bench/crash_sweep.py (every point).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runbook.engine import lock
from runbook.aws import naming
from runbook.aws.clients import ClientFactory
from runbook.engine import StepResult
from runbook.steps import new_runner
from runbook.output.progress import Progress
from runbook.sandbox import kafka as sandbox_kafka
from runbook.sandbox import kafka_poller, msk, sqs
from runbook.sandbox.stack import SANDBOX_CREDENTIALS

# The sweep's runs have no TLS front-end (runbook.sandbox.tls), so their layers carry this
# local stand-in for the RDS CA bundle; a dry run never fetches the real one.
os.environ.setdefault("RUNBOOK_RDS_CA_BUNDLE", str(
    Path(__file__).resolve().parent / "stand-in-rds-ca.pem"))

REGION = "eu-central-1"
PROVISIONING = ["network", "database", "store-secrets", "cognito", "vpc-integrate",
                "fix-tables", "db-proxy", "deploy-post-confirmation", "event-bus",
                "deploy-process-user-signup", "hash-table", "msk-cluster",
                "deploy-legacy-loader", "deploy-user-migration"]
# What a dry run of `runbook run --phase a5` runs from an empty account; the three tests'
# own writes are not swept (see the docstring).
A4 = ["event-bus", "deploy-process-user-signup", "registration-test"]
A5 = ["hash-table", "msk-cluster", "deploy-legacy-loader", "stage-legacy-users",
      "deploy-user-migration", "migration-test"]
RUN = PROVISIONING[:8] + ["integration-test"] + A4 + A5

REFUSED = ("throttling", "server-error", "connection-reset")
LOST = ("response-lost", "response-lost-retried")
UNTAGGED = "untagged"
KINDS = REFUSED + LOST + (UNTAGGED,)

# The services whose clients runbook's steps make; Fault.attach instruments each.
SERVICES = ("sts", "ec2", "rds", "secretsmanager", "iam", "logs", "lambda", "cognito-idp",
            "events", "sqs", "cloudwatch", "kms", "dynamodb", "kafka")


# -- the faults ------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    k: int          # the k-th write of the run (1-based)
    kind: str       # one of KINDS

    def __str__(self) -> str:
        return f"k={self.k} {self.kind}"


@dataclass(frozen=True)
class Write:
    k: int
    step: str
    call: str          # "ec2:CreateVpc"


def refused(kind: str, k: int, operation: str) -> Exception:
    """The error runbook sees when AWS refuses the call (it never took effect)."""
    from botocore.exceptions import ClientError, ConnectionClosedError

    if kind == "throttling":
        error, status = ("ThrottlingException", "Rate exceeded"), 400
    elif kind == "server-error":
        error, status = ((("ServiceUnavailable", "Service is unavailable"), 503) if k % 2 == 0
                         else (("InternalFailure", "An internal error occurred"), 500))
    elif kind == "connection-reset":
        return ConnectionClosedError(endpoint_url=f"{operation} (connection reset by peer)")
    else:
        raise ValueError(kind)
    return ClientError({"Error": {"Code": error[0], "Message": error[1]},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class Fault:
    """Fails the k-th write of a run as `point.kind` says; `fired` names the call once the
    fault happened.

    It also records every write with the step that made it (`writes`); without a point
    it only records, which is how the clean run is counted.
    """

    def __init__(self, point: Point | None = None):
        self.point = point
        self.writes: list[Write] = []
        self.fired: str | None = None
        self._aws: ClientFactory | None = None
        self._lose_answer: str | None = None   # response-lost: the call whose answer goes
        self._drop_send: str | None = None     # response-lost-retried: the call to drop

    def before(self, service: str, operation: str, write: bool) -> None:
        if not write:
            return
        call = f"{service}:{operation}"
        self.writes.append(Write(len(self.writes) + 1, self._aws.scope, call))
        if self.point is None or len(self.writes) != self.point.k:
            return
        if self.point.kind in REFUSED or self.point.kind == UNTAGGED:
            self.fired = call
            kind = self.point.kind if self.point.kind in REFUSED else "throttling"
            raise refused(kind, self.point.k, operation)
        if self.point.kind == "response-lost":
            self._lose_answer = call
        else:
            self._drop_send = operation

    def after(self, service: str, operation: str, write: bool, response: dict) -> None:
        if self._lose_answer == f"{service}:{operation}":
            from botocore.exceptions import ConnectionClosedError

            self.fired, self._lose_answer = self._lose_answer, None
            raise ConnectionClosedError(endpoint_url=f"{operation} (answer lost)")

    def before_send(self, request, event_name: str, **_):
        """Deliver the request, then drop the connection: botocore retries as it would."""
        if self._drop_send is None or not event_name.endswith(f".{self._drop_send}"):
            return None
        from botocore.exceptions import ConnectionClosedError
        from botocore.httpsession import URLLib3Session

        self.fired = self.writes[-1].call
        self._drop_send = None
        URLLib3Session().send(request)
        raise ConnectionClosedError(endpoint_url=request.url)

    def attach(self, aws: ClientFactory) -> None:
        self._aws = aws
        for service in SERVICES:
            aws.client(service).meta.events.register("before-send", self.before_send)


# -- runs ------------------------------------------------------------------------------

@dataclass
class Account:
    """The emulated account and database a sweep works in (a runbook Sandbox's)."""

    aws_url: str
    pg_dsn: str                      # the server; each point gets a database of its own
    database_dsn: str | None = None
    # The sandbox's Kafka broker (started anew, empty, by each reset) and its legacy
    # database (read only by the runs: one for the whole sweep).
    kafka_broker: sandbox_kafka.Broker | None = None
    legacy_dsn: str | None = None
    _database: str | None = None
    _clients: dict = field(default_factory=dict)

    @classmethod
    def of(cls, sandbox) -> "Account":
        """The account of a runbook Sandbox (runbook.sandbox.stack)."""
        return cls(sandbox.aws_url, sandbox.pg_dsn, kafka_broker=sandbox.kafka_broker,
                   legacy_dsn=sandbox.legacy_dsn)

    def client(self, service: str):
        """A plain boto3 client of the account, outside runbook's factory."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.Session(**SANDBOX_CREDENTIALS).client(
                service, endpoint_url=self.aws_url, region_name=REGION)
        return self._clients[service]

    def reset(self) -> None:
        """An empty account and an empty database, as before a first run."""
        import secrets
        import urllib.request

        import psycopg
        from psycopg.conninfo import make_conninfo

        urllib.request.urlopen(urllib.request.Request(f"{self.aws_url}/moto-api/reset",
                                                      method="POST")).read()
        name = f"sweep_{secrets.token_hex(4)}"
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            if self._database:
                conn.execute(f"DROP DATABASE IF EXISTS {self._database} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        self._database, self.database_dsn = name, make_conninfo(self.pg_dsn, dbname=name)
        if self.kafka_broker is not None:
            self.kafka_broker.stop()
            self.kafka_broker.start()
            msk.serve(self.kafka_broker.bootstrap)

    def kafka_access(self):
        """runbook's Kafka access to the broker, as a dry run's (token checked)."""
        import boto3

        session = boto3.Session(region_name=REGION, **SANDBOX_CREDENTIALS)
        return sandbox_kafka.SandboxKafkaAccess(session, REGION, SANDBOX_CREDENTIALS)

    def factory(self, **hooks) -> ClientFactory:
        """A new ClientFactory for the account, as each `runbook run` makes one."""
        return ClientFactory(REGION, endpoint_url=self.aws_url,
                             credentials=SANDBOX_CREDENTIALS, **hooks)

    @contextmanager
    def poller(self):
        """Lambda's SQS poller for the account, as a dry run's sandbox runs it: with
        clients of its own (its calls are Lambda's, outside the fault and the counts) and
        moto's own firing of mappings off. One per run, as the database changes with each
        point; stopped, its batch in flight finished, when the run ends however it ends."""
        from runbook.functions.invoke import sandbox_invoker

        sqs.install()
        aws = self.factory()
        invoke = sandbox_invoker(aws, self.database_dsn).invoke
        # A failed message is visible again at once, not after the sandbox's 1 s: the
        # dead-letter check's 5 receives are what a point waits for most.
        poller = sqs.Poller(aws, invoke, interval_s=0.05, retry_delay_s=0).start()
        # Lambda's MSK poller: the loader's mapping, against this point's broker.
        kafka = (kafka_poller.KafkaPoller(aws, invoke, self.kafka_broker.bootstrap).start()
                 if self.kafka_broker is not None else None)
        try:
            yield poller
        finally:
            stopped = [p.stop() for p in (poller, kafka) if p is not None]
            if not all(stopped):
                raise RuntimeError("a poller's invocation outlived the run")


def run(config, account: Account, fault: Fault | None = None,
        steps: list[str] = RUN) -> list[StepResult]:
    """One run of `steps` (by default a1..a5, as a dry run of `runbook run --phase a5`)
    against `account`, with `fault` (if any) injected into the run's clients."""
    return run_with(config, account, faulty(account, fault), steps)


def faulty(account: Account, fault: Fault | None) -> ClientFactory:
    """A new client factory of the account, as each `runbook` command makes one, with
    `fault` (if any) in its hooks and clients."""
    if fault is None:
        return account.factory()
    aws = account.factory(interceptors=[fault.before], after_interceptors=[fault.after])
    fault.attach(aws)
    return aws


def run_with(config, account: Account, aws: ClientFactory,
             steps: list[str] = RUN) -> list[StepResult]:
    """The environment's run lock, as a live run takes it, then `steps` through `aws`
    (the outputs of steps before them read from the account, as a live run reads
    them), with Lambda's SQS poller running the account's mappings meanwhile."""
    run_lock = lock.RunLock(account.factory().client("ssm"), config.env, sleep=_short_sleep)
    with run_lock.held(lock.me("runbook crash sweep", "a4"), wait_s=0), account.poller():
        runner = new_runner(config, aws, Progress(quiet=True), dry_run=True, sleep=_short_sleep,
                            database_dsn=account.database_dsn, kafka=account.kafka_access(),
                            legacy_dsn=account.legacy_dsn)
        return runner.run(list(steps))


def recovery(first: list[StepResult]) -> list[str]:
    """What the run after a failed one runs: everything again, or, when the failure was
    in phase a4 or a5 (the phases before it had passed), `runbook run --phase a4` or
    `--phase a5`, as an operator re-runs the phase that failed (see the module
    docstring)."""
    failed = next((r.name for r in first if r.status != "ok"), None)
    if failed in A4:
        return A4 + A5      # --phase a4, then --phase a5, which the failure stopped
    if failed in A5:
        return list(A5)
    return list(RUN)


def _short_sleep(seconds: float) -> None:
    # moto is ready at once: waits and propagation retries need not sleep long.
    time.sleep(min(seconds, 0.05))


# -- what the account holds ------------------------------------------------------------

# Tags whose value is random per run: compared by presence.
_RANDOM_TAGS = ("runbook:password-id",)


def _tags(raw) -> dict:
    """The tags compared, without runbook:created: an untagged leftover stands for what
    the old scripts made, which the second run adopts (and tags) without marking it
    created, by design, so that a destroy keeps it. That it is kept is
    tests/functional/test_destroy_cli.py's to prove; here it is the same resource."""
    if isinstance(raw, list):
        raw = {t["Key"]: t["Value"] for t in raw}
    return {k: ("*" if k in _RANDOM_TAGS else v) for k, v in sorted((raw or {}).items())
            if k != naming.CREATED_TAG}


def _pages(client, operation: str, key: str, **kwargs) -> list:
    return [item for page in client.get_paginator(operation).paginate(**kwargs)
            for item in page[key]]


class Inventory(dict):
    """{type: Counter({(name, details-as-JSON): count})}: what the account holds,
    without ids. `name` identifies a resource across runs; `details` are the settings a
    converged resource must have."""

    def add(self, kind: str, name: str, **details) -> None:
        self.setdefault(kind, Counter())[(name, json.dumps(details, sort_keys=True,
                                                           default=str))] += 1

    def counts(self) -> dict[str, int]:
        return {kind: sum(items.values()) for kind, items in sorted(self.items())}


def inventory(account: Account, config) -> Inventory:
    """List the account (and the database) resource by resource."""
    found = Inventory()
    _network(account.client("ec2"), found)
    _database(account.client("rds"), account.client("ec2"), found)
    _proxies(account.client("rds"), account.client("ec2"), found)
    _secrets(account.client("secretsmanager"), found)
    _cognito(account.client("cognito-idp"), found)
    _iam(account.client("iam"), found)
    clusters = _kafka(account.client("kafka"), account.client("ec2"), found)
    _lambda(account.client("lambda"), found, clusters)
    _kms(account.client("kms"), found)
    _dynamodb(account.client("dynamodb"), found)
    if account.kafka_broker is not None:
        _topics(account.kafka_broker.bootstrap, found)
    for group in _pages(account.client("logs"), "describe_log_groups", "logGroups"):
        tags = account.client("logs").list_tags_log_group(
            logGroupName=group["logGroupName"]).get("tags")
        found.add("logs:log-group", group["logGroupName"],
                  retention=group.get("retentionInDays"), tags=_tags(tags))
    for parameter in _pages(account.client("ssm"), "describe_parameters", "Parameters"):
        found.add("ssm:parameter", parameter["Name"])
    _events(account.client("events"), found)
    _queues(account.client("sqs"), found)
    _alarms(account.client("cloudwatch"), found)
    _postgres(account.database_dsn, config, found)
    return found


def _network(ec2, found: Inventory) -> None:
    vpcs = {v["VpcId"]: v for v in _pages(ec2, "describe_vpcs", "Vpcs") if not v.get("IsDefault")}
    vpc_name = {i: _tags(v.get("Tags")).get("Name") or f"cidr {v['CidrBlock']}"
                for i, v in vpcs.items()}
    for vpc_id, vpc in vpcs.items():
        attrs = {name: ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[
            name[0].upper() + name[1:]]["Value"] for name in ("enableDnsSupport",
                                                             "enableDnsHostnames")}
        found.add("ec2:vpc", vpc_name[vpc_id], cidr=vpc["CidrBlock"],
                  tags=_tags(vpc.get("Tags")), **attrs)
    ours = [{"Name": "vpc-id", "Values": sorted(vpcs) or ["none"]}]
    gateway_name = _gateways(ec2, vpc_name, found)
    subnets = {s["SubnetId"]: s for s in _pages(ec2, "describe_subnets", "Subnets", Filters=ours)}
    for subnet in subnets.values():
        found.add("ec2:subnet", f"{vpc_name[subnet['VpcId']]} {subnet['CidrBlock']}",
                  az=subnet["AvailabilityZone"], tags=_tags(subnet.get("Tags")),
                  public_ip=subnet.get("MapPublicIpOnLaunch"))
    for table in _pages(ec2, "describe_route_tables", "RouteTables", Filters=ours):
        associations = table.get("Associations", ())
        main = any(a.get("Main") for a in associations)
        name = _tags(table.get("Tags")).get("Name") or ("main" if main else "unnamed")
        found.add("ec2:route-table", f"{vpc_name[table['VpcId']]} {name}", main=main,
                  subnets=sorted(subnets[a["SubnetId"]]["CidrBlock"] for a in associations
                                 if a.get("SubnetId") in subnets),
                  routes=sorted(f"{r.get('DestinationCidrBlock')}>"
                                f"{gateway_name.get(r.get('GatewayId'), r.get('GatewayId')) or r.get('NatGatewayId') or '?'}"
                                for r in table.get("Routes", ())),
                  tags=_tags(table.get("Tags")))
    groups = {g["GroupId"]: g for g in _pages(ec2, "describe_security_groups", "SecurityGroups",
                                              Filters=ours)}
    group_name = {i: f"{vpc_name[g['VpcId']]} {g['GroupName']}" for i, g in groups.items()}
    for group_id, group in groups.items():
        found.add("ec2:security-group", group_name[group_id], tags=_tags(group.get("Tags")))
    for rule in _pages(ec2, "describe_security_group_rules", "SecurityGroupRules"):
        if rule["GroupId"] not in groups:
            continue
        source = (group_name.get((rule.get("ReferencedGroupInfo") or {}).get("GroupId"))
                  or rule.get("CidrIpv4") or rule.get("CidrIpv6") or rule.get("PrefixListId"))
        direction = "egress" if rule.get("IsEgress") else "ingress"
        found.add("ec2:security-group-rule",
                  f"{group_name[rule['GroupId']]} {direction} {rule.get('IpProtocol')} "
                  f"{rule.get('FromPort')}-{rule.get('ToPort')} {source}")
    for endpoint in _pages(ec2, "describe_vpc_endpoints", "VpcEndpoints", Filters=ours):
        if str(endpoint.get("State", "")).lower() in ("deleted", "deleting"):
            continue
        found.add("ec2:vpc-endpoint",
                  f"{vpc_name[endpoint['VpcId']]} {endpoint['ServiceName']}",
                  type=endpoint.get("VpcEndpointType"),
                  private_dns=endpoint.get("PrivateDnsEnabled"),
                  subnets=sorted(subnets[s]["CidrBlock"] for s in endpoint.get("SubnetIds", ())
                                 if s in subnets),
                  groups=sorted(group_name.get(g["GroupId"], g["GroupId"])
                                for g in endpoint.get("Groups", ())),
                  tags=_tags(endpoint.get("Tags")))


def _gateways(ec2, vpc_name: dict, found: Inventory) -> dict[str, str]:
    """Every internet gateway, by its Name (an untagged one "unnamed") with the VPC it is
    attached to and its tags; {id: how routes name it}, ids differing from run to run."""
    names = {}
    for gateway in _pages(ec2, "describe_internet_gateways", "InternetGateways"):
        name = _tags(gateway.get("Tags")).get("Name") or "unnamed"
        names[gateway["InternetGatewayId"]] = f"igw {name}"
        found.add("ec2:internet-gateway", name,
                  vpcs=sorted(vpc_name.get(a["VpcId"], a["VpcId"])
                              for a in gateway.get("Attachments", ())),
                  tags=_tags(gateway.get("Tags")))
    return names


def _database(rds, ec2, found: Inventory) -> None:
    subnet_cidr = {s["SubnetId"]: s["CidrBlock"] for s in _pages(ec2, "describe_subnets",
                                                                 "Subnets")}
    group_name = {g["GroupId"]: g["GroupName"] for g in _pages(ec2, "describe_security_groups",
                                                               "SecurityGroups")}
    for group in _pages(rds, "describe_db_subnet_groups", "DBSubnetGroups"):
        tags = rds.list_tags_for_resource(ResourceName=group["DBSubnetGroupArn"])["TagList"]
        found.add("rds:subnet-group", group["DBSubnetGroupName"],
                  subnets=sorted(subnet_cidr.get(s["SubnetIdentifier"], "?")
                                 for s in group["Subnets"]), tags=_tags(tags))
    for group in _pages(rds, "describe_db_cluster_parameter_groups", "DBClusterParameterGroups"):
        if group["DBClusterParameterGroupName"].startswith("default."):
            continue
        name = group["DBClusterParameterGroupName"]
        parameters = {p["ParameterName"]: p.get("ParameterValue") for p in _pages(
            rds, "describe_db_cluster_parameters", "Parameters", DBClusterParameterGroupName=name)}
        tags = rds.list_tags_for_resource(ResourceName=group["DBClusterParameterGroupArn"])
        found.add("rds:cluster-parameter-group", name, family=group["DBParameterGroupFamily"],
                  force_ssl=parameters.get("rds.force_ssl"), tags=_tags(tags["TagList"]))
    for cluster in _pages(rds, "describe_db_clusters", "DBClusters"):
        found.add("rds:cluster", cluster["DBClusterIdentifier"], engine=cluster["Engine"],
                  parameter_group=cluster.get("DBClusterParameterGroup"),
                  iam_auth=cluster.get("IAMDatabaseAuthenticationEnabled"),
                  encrypted=cluster.get("StorageEncrypted"),
                  deletion_protection=cluster.get("DeletionProtection"),
                  subnet_group=cluster.get("DBSubnetGroup"),
                  groups=sorted(group_name.get(g["VpcSecurityGroupId"], "?")
                                for g in cluster.get("VpcSecurityGroups", ())),
                  tags=_tags(cluster.get("TagList")))
    for instance in _pages(rds, "describe_db_instances", "DBInstances"):
        found.add("rds:instance", instance["DBInstanceIdentifier"],
                  cluster=instance.get("DBClusterIdentifier"),
                  public=instance.get("PubliclyAccessible"), tags=_tags(instance.get("TagList")))


def _proxies(rds, ec2, found: Inventory) -> None:
    """Each RDS Proxy with the settings runbook converges, and each row of its default
    target group once per row: moto registers a cluster a second time where AWS refuses,
    so a duplicate registration shows as a duplicate. The proxy's security group and its
    rules are the network's (`_network` lists every group of the VPC)."""
    subnet_cidr = {s["SubnetId"]: s["CidrBlock"] for s in _pages(ec2, "describe_subnets",
                                                                 "Subnets")}
    group_name = {g["GroupId"]: g["GroupName"] for g in _pages(ec2, "describe_security_groups",
                                                               "SecurityGroups")}
    for proxy in _pages(rds, "describe_db_proxies", "DBProxies"):
        name = proxy["DBProxyName"]
        tags = rds.list_tags_for_resource(ResourceName=proxy["DBProxyArn"])["TagList"]
        found.add("rds:db-proxy", name, engine_family=proxy.get("EngineFamily"),
                  require_tls=proxy.get("RequireTLS"),
                  default_auth_scheme=proxy.get("DefaultAuthScheme"),
                  auth=sorted(json.dumps(a, sort_keys=True) for a in proxy.get("Auth") or ()),
                  subnets=sorted(subnet_cidr.get(s, "?") for s in proxy.get("VpcSubnetIds") or ()),
                  groups=sorted(group_name.get(g, "?")
                                for g in proxy.get("VpcSecurityGroupIds") or ()),
                  role=(proxy.get("RoleArn") or "").rsplit("/", 1)[-1], tags=_tags(tags))
        for target in _pages(rds, "describe_db_proxy_targets", "Targets", DBProxyName=name,
                             TargetGroupName="default"):
            found.add("rds:db-proxy-target",
                      f"{name} default {target.get('Type')} {target.get('RdsResourceId')}",
                      state=(target.get("TargetHealth") or {}).get("State"))


def _secrets(sm, found: Inventory) -> None:
    for secret in _pages(sm, "list_secrets", "SecretList", IncludePlannedDeletion=True):
        deleted = bool(secret.get("DeletedDate"))   # its value cannot be read
        value = {} if deleted else json.loads(
            sm.get_secret_value(SecretId=secret["ARN"])["SecretString"])
        found.add("secretsmanager:secret", secret["Name"], fields=sorted(value),
                  deleted=deleted, tags=_tags(secret.get("Tags")))


def _cognito(idp, found: Inventory) -> None:
    for listed in _pages(idp, "list_user_pools", "UserPools", MaxResults=60):
        pool = idp.describe_user_pool(UserPoolId=listed["Id"])["UserPool"]
        triggers = {name: arn.rsplit(":", 1)[-1]
                    for name, arn in (pool.get("LambdaConfig") or {}).items()
                    if isinstance(arn, str)}
        custom = sorted(a["Name"] for a in pool.get("SchemaAttributes") or ()
                        if a["Name"].startswith("custom:"))
        found.add("cognito-idp:user-pool", pool["Name"], triggers=triggers, custom=custom,
                  tags=_tags(pool.get("UserPoolTags")))
        for client in _pages(idp, "list_user_pool_clients", "UserPoolClients",
                             UserPoolId=pool["Id"], MaxResults=60):
            described = idp.describe_user_pool_client(
                UserPoolId=pool["Id"], ClientId=client["ClientId"])["UserPoolClient"]
            found.add("cognito-idp:app-client", f"{pool['Name']} {client['ClientName']}",
                      flows=sorted(described.get("ExplicitAuthFlows") or ()),
                      secret=bool(described.get("ClientSecret")))
        for _user in _pages(idp, "list_users", "Users", UserPoolId=pool["Id"]):
            found.add("cognito-idp:user", f"{pool['Name']} user")


def _iam(iam, found: Inventory) -> None:
    for role in _pages(iam, "list_roles", "Roles"):
        name = role["RoleName"]
        trust = _document(role["AssumeRolePolicyDocument"])
        found.add("iam:role", name,
                  trusts=sorted(str(s.get("Principal")) for s in trust.get("Statement", ())),
                  tags=_tags(iam.list_role_tags(RoleName=name)["Tags"]))
        for policy in _pages(iam, "list_role_policies", "PolicyNames", RoleName=name):
            document = _document(iam.get_role_policy(RoleName=name,
                                                     PolicyName=policy)["PolicyDocument"])
            found.add("iam:role-policy", f"{name} {policy}",
                      statements=sorted(s.get("Sid", "?") for s in document["Statement"]))
        for attached in _pages(iam, "list_attached_role_policies", "AttachedPolicies",
                               RoleName=name):
            found.add("iam:attached-policy", f"{name} {attached['PolicyName']}")


def _document(value) -> dict:
    """IAM answers with policy documents decoded, or as URL-encoded JSON text."""
    if isinstance(value, str):
        from urllib.parse import unquote

        return json.loads(unquote(value))
    return value


def _kafka(kafka, ec2, found: Inventory) -> dict[str, str]:
    """Each MSK cluster with the settings runbook converges (moto accepts two with one
    name: a duplicate shows as one); {ARN: name} for the mappings that name it."""
    subnet_cidr = {s["SubnetId"]: s["CidrBlock"] for s in _pages(ec2, "describe_subnets",
                                                                 "Subnets")}
    group_name = {g["GroupId"]: g["GroupName"] for g in _pages(ec2, "describe_security_groups",
                                                               "SecurityGroups")}
    names = {}
    for cluster in _pages(kafka, "list_clusters_v2", "ClusterInfoList"):
        names[cluster["ClusterArn"]] = cluster["ClusterName"]
        provisioned = cluster.get("Provisioned") or {}
        nodes = provisioned.get("BrokerNodeGroupInfo") or {}
        public = ((nodes.get("ConnectivityInfo") or {}).get("PublicAccess") or {}).get("Type")
        found.add("kafka:cluster", cluster["ClusterName"], state=cluster.get("State"),
                  version=provisioned.get("CurrentBrokerSoftwareInfo", {}).get("KafkaVersion"),
                  brokers=provisioned.get("NumberOfBrokerNodes"),
                  type=nodes.get("InstanceType"), public=public,
                  subnets=sorted(subnet_cidr.get(s, s) for s in nodes.get("ClientSubnets", ())),
                  groups=sorted(group_name.get(g, g) for g in nodes.get("SecurityGroups", ())),
                  iam=(((provisioned.get("ClientAuthentication") or {}).get("Sasl") or {})
                       .get("Iam") or {}).get("Enabled"),
                  tags=_tags(cluster.get("Tags")))
    return names


def _topics(bootstrap: str, found: Inventory) -> None:
    """The broker's topics with their partitions and retention, read with a plain client
    (not runbook's access) and the topic resource's reader."""
    from kafka import KafkaAdminClient

    from runbook.resources.kafka_topic import read_topic

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10_000)
    try:
        for name in sorted(admin.list_topics()):
            topic = None if name.startswith("__") else read_topic(admin, name)
            if topic is not None:
                found.add("kafka:topic", name, partitions=topic.partitions,
                          retention_ms=topic.retention_ms)
    finally:
        admin.close()


def _kms(kms, found: Inventory) -> None:
    """Customer keys that are not going away, by their aliases ("unaliased": a create
    cut short before its alias), with rotation, tags and the key policy's Sids."""
    for key in _pages(kms, "list_keys", "Keys"):
        meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        if meta.get("KeyManager") != "CUSTOMER" or meta.get("KeyState") != "Enabled":
            continue
        aliases = sorted(a["AliasName"] for a in _pages(kms, "list_aliases", "Aliases",
                                                       KeyId=key["KeyId"]))
        policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"],
                                               PolicyName="default")["Policy"])
        found.add("kms:key", " ".join(aliases) or "unaliased",
                  rotation=kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"],
                  policy=sorted(s.get("Sid", "?") for s in policy.get("Statement", ())),
                  tags=_tags({t["TagKey"]: t["TagValue"] for t in _pages(
                      kms, "list_resource_tags", "Tags", KeyId=key["KeyId"])}))


def _dynamodb(ddb, found: Inventory) -> None:
    """Each table with the settings runbook converges, and one `dynamodb:item` per item
    (a converged a5 leaves each legacy user staged once)."""
    for name in _pages(ddb, "list_tables", "TableNames"):
        table = ddb.describe_table(TableName=name)["Table"]
        pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        found.add("dynamodb:table", name,
                  key=[k["AttributeName"] for k in table["KeySchema"]],
                  billing=(table.get("BillingModeSummary") or {}).get("BillingMode"),
                  sse=(table.get("SSEDescription") or {}).get("SSEType"),
                  pitr=(pitr.get("PointInTimeRecoveryDescription") or {}).get(
                      "PointInTimeRecoveryStatus"),
                  deletion_protection=table.get("DeletionProtectionEnabled"),
                  tags=_tags(ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]))
        for item in _pages(ddb, "scan", "Items", TableName=name):
            found.add("dynamodb:item", name, email_domain=item["email"]["S"].rsplit("@", 1)[-1])


def _lambda(lam, found: Inventory, clusters: dict[str, str]) -> None:
    for layer in _pages(lam, "list_layers", "Layers"):
        for version in _pages(lam, "list_layer_versions", "LayerVersions",
                              LayerName=layer["LayerName"]):
            found.add("lambda:layer-version", layer["LayerName"],
                      description=version.get("Description"))
    for function in _pages(lam, "list_functions", "Functions"):
        name = function["FunctionName"]
        got = lam.get_function(FunctionName=name)
        config = got["Configuration"]
        vpc = config.get("VpcConfig") or {}
        found.add("lambda:function", name, runtime=config.get("Runtime"),
                  handler=config.get("Handler"), role=config.get("Role", "").rsplit("/", 1)[-1],
                  memory=config.get("MemorySize"), timeout=config.get("Timeout"),
                  code=config.get("CodeSha256"),
                  environment=sorted(((config.get("Environment") or {}).get("Variables")
                                      or {})),
                  subnets=len(vpc.get("SubnetIds") or ()),
                  groups=len(vpc.get("SecurityGroupIds") or ()),
                  layers=sorted(layer["Arn"].split(":")[-2]
                                for layer in config.get("Layers") or ()),
                  tags=_tags(got.get("Tags")))
        try:
            policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
        except lam.exceptions.ResourceNotFoundException:
            continue
        for statement in policy.get("Statement", ()):
            found.add("lambda:permission", f"{name} {statement.get('Sid')}",
                      principal=statement.get("Principal"), action=statement.get("Action"))
    for mapping in _pages(lam, "list_event_source_mappings", "EventSourceMappings"):
        source = mapping["EventSourceArn"]
        found.add("lambda:event-source-mapping",
                  f"{_last(mapping['FunctionArn'])} {clusters.get(source) or _last(source)}",
                  topics=mapping.get("Topics"),
                  batch_size=mapping.get("BatchSize"),
                  response_types=sorted(mapping.get("FunctionResponseTypes") or ()),
                  concurrency=(mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                  state=mapping.get("State"))


def _last(arn: str | None) -> str | None:
    """An ARN's last part (a queue's or a bus's name), or None: the account and region
    are the sweep's, the same in every run."""
    return arn.rsplit(":", 1)[-1].rsplit("/", 1)[-1] if arn else None


def _events(events, found: Inventory) -> None:
    """Buses, the rules on them (the default bus's too: the relay's schedule) and each
    rule's targets. A target has no tags; its RoleArn is shown by presence."""
    buses = ["default"]
    for bus in _token_pages(events.list_event_buses, "EventBuses"):
        if bus["Name"] == "default":
            continue
        buses.append(bus["Name"])
        found.add("events:event-bus", bus["Name"], tags=_tags(
            events.list_tags_for_resource(ResourceARN=bus["Arn"])["Tags"]))
    for bus in buses:
        for rule in _pages(events, "list_rules", "Rules", EventBusName=bus):
            pattern = rule.get("EventPattern")
            found.add("events:rule", f"{bus} {rule['Name']}",
                      pattern=json.loads(pattern) if pattern else None,
                      schedule=rule.get("ScheduleExpression"), state=rule.get("State"),
                      description=rule.get("Description"), tags=_tags(
                          events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]))
            for target in _pages(events, "list_targets_by_rule", "Targets", Rule=rule["Name"],
                                 EventBusName=bus):
                found.add("events:target", f"{bus} {rule['Name']} {target['Id']}",
                          arn=_last(target["Arn"]), retry=target.get("RetryPolicy"),
                          dead_letter=_last((target.get("DeadLetterConfig") or {}).get("Arn")),
                          role=bool(target.get("RoleArn")),
                          input=bool(target.get("Input") or target.get("InputPath")
                                     or target.get("InputTransformer")))


def _queues(sqs, found: Inventory) -> None:
    """Each queue with the attributes runbook converges, and one `sqs:message` per
    message it holds, visible or not: a run leaves both queues empty."""
    for url in _pages(sqs, "list_queues", "QueueUrls") if _has_queues(sqs) else ():
        attributes = sqs.get_queue_attributes(QueueUrl=url,
                                              AttributeNames=["All"])["Attributes"]
        name = attributes["QueueArn"].rsplit(":", 1)[-1]
        redrive = json.loads(attributes.get("RedrivePolicy") or "null")
        if redrive:
            redrive = {"dlq": _last(redrive.get("deadLetterTargetArn")),
                       "max_receives": int(redrive.get("maxReceiveCount", 0))}
        policy = json.loads(attributes.get("Policy") or "null")
        found.add("sqs:queue", name, visibility=attributes.get("VisibilityTimeout"),
                  retention=attributes.get("MessageRetentionPeriod"),
                  sse=attributes.get("SqsManagedSseEnabled"),
                  kms=attributes.get("KmsMasterKeyId"), redrive=redrive,
                  policy=[{"principal": st.get("Principal"), "action": st.get("Action"),
                           "resource": _last(st.get("Resource")),
                           "source": _last(next(iter((st.get("Condition") or {}).values()),
                                                {}).get("aws:SourceArn"))}
                          for st in (policy or {}).get("Statement", ())],
                  tags=_tags(sqs.list_queue_tags(QueueUrl=url).get("Tags")))
        held = sum(int(attributes.get(a, 0)) for a in (
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"))
        for _ in range(held):
            found.add("sqs:message", name)


def _token_pages(call, key: str, **kwargs) -> list:
    """Pages of an operation botocore has no paginator for (ListEventBuses)."""
    items, token = [], None
    while True:
        page = call(**kwargs, **({"NextToken": token} if token else {}))
        items += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return items


def _has_queues(sqs) -> bool:
    # ListQueues leaves QueueUrls out when there is none.
    return bool(sqs.list_queues().get("QueueUrls"))


def _alarms(cloudwatch, found: Inventory) -> None:
    for alarm in _pages(cloudwatch, "describe_alarms", "MetricAlarms"):
        found.add("cloudwatch:alarm", alarm["AlarmName"], namespace=alarm.get("Namespace"),
                  metric=alarm.get("MetricName"),
                  dimensions={d["Name"]: d["Value"] for d in alarm.get("Dimensions") or ()},
                  statistic=alarm.get("Statistic"), period=alarm.get("Period"),
                  evaluation_periods=alarm.get("EvaluationPeriods"),
                  threshold=alarm.get("Threshold"), comparison=alarm.get("ComparisonOperator"),
                  missing_data=alarm.get("TreatMissingData"),
                  description=alarm.get("AlarmDescription"),
                  actions=alarm.get("AlarmActions"), tags=_tags(
                      cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]))


def _postgres(dsn: str, config, found: Inventory) -> None:
    import psycopg

    from runbook.lambda_runtime import dbroles

    schemas = config.database.schemas
    with psycopg.connect(dsn) as conn:
        ledger = conn.execute("SELECT to_regclass('runbook.schema_migrations')").fetchone()[0]
        if ledger:
            for version, name, checksum in conn.execute(
                    "SELECT version, name, checksum FROM runbook.schema_migrations"):
                found.add("postgres:migration", f"{version:04d} {name}", checksum=checksum)
        # A run leaves no row: the tests delete their users' (a4: users, outbox and
        # audit rows too).
        for table in ("profiles", "private_profiles", "users", "registration_outbox",
                      "registrations"):
            name = f'"{schemas.of(table)}"."{table}"'
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0]:
                rows = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                for _ in range(rows):
                    found.add("postgres:row", table)
        # The declared roles, as fix-tables converges them: a run failed half-way through
        # a role's grants must leave it neither short of a privilege nor holding one more.
        for role in sorted(config.database.roles):
            state = dbroles.read_role(conn, role)
            if state.exists:
                found.add("postgres:role", role, login=state.login,
                          rds_iam=state.rds_iam_member,
                          privileges=sorted(p.label() for p in state.privileges))


# -- tags right after a create ----------------------------------------------------------

# Upserts that are the creates of a clean run: each makes its resource the first time.
CREATED_BY_PUT = frozenset({"events:PutRule", "events:PutTargets",
                            "cloudwatch:PutMetricAlarm"})


# Creates of an entry in a resource, not of a resource: nothing to tag or find by tags
# (a route is read back with its table).
NOT_A_RESOURCE = frozenset({"ec2:CreateRoute"})


def is_create(call: str) -> bool:
    """Whether `call` ("service:Operation") makes a resource in a clean run."""
    if call in NOT_A_RESOURCE:
        return False
    return call.split(":")[1].startswith(("Create", "Publish")) or call in CREATED_BY_PUT


def tags_of(account: Account, call: str, response: dict) -> dict | None:
    """The tags the resource a create (`call`, with its `response`) made carries now;
    None for the creates whose resources cannot carry tags. KeyError for a create this
    does not know, so that a new one is classified before it passes."""
    if call in ("cognito-idp:CreateUserPoolClient", "lambda:PublishLayerVersion",
                "lambda:CreateEventSourceMapping", "events:PutTargets", "kms:CreateAlias"):
        return None
    if call == "kms:CreateKey":
        return _tags({t["TagKey"]: t["TagValue"] for t in account.client("kms").list_resource_tags(
            KeyId=response["KeyMetadata"]["KeyId"])["Tags"]})
    if call == "dynamodb:CreateTable":
        return _tags(account.client("dynamodb").list_tags_of_resource(
            ResourceArn=response["TableDescription"]["TableArn"])["Tags"])
    if call == "kafka:CreateClusterV2":
        return _tags(account.client("kafka").list_tags_for_resource(
            ResourceArn=response["ClusterArn"])["Tags"])
    if call == "events:CreateEventBus":
        return _tags(account.client("events").list_tags_for_resource(
            ResourceARN=response["EventBusArn"])["Tags"])
    if call == "events:PutRule":
        return _tags(account.client("events").list_tags_for_resource(
            ResourceARN=response["RuleArn"])["Tags"])
    if call == "sqs:CreateQueue":
        return _tags(account.client("sqs").list_queue_tags(
            QueueUrl=response["QueueUrl"]).get("Tags"))
    if call == "cloudwatch:PutMetricAlarm":  # the answer names nothing: the least tagged
        cloudwatch = account.client("cloudwatch")
        return min((_tags(cloudwatch.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"])
                    for a in cloudwatch.describe_alarms()["MetricAlarms"]), key=len)
    service = call.split(":")[0]
    client = account.client(service)
    if service == "ec2":
        kind = call.split(":Create")[1]
        key = {"Vpc": ("Vpc", "VpcId"), "Subnet": ("Subnet", "SubnetId"),
               "RouteTable": ("RouteTable", "RouteTableId"), "SecurityGroup": (None, "GroupId"),
               "VpcEndpoint": ("VpcEndpoint", "VpcEndpointId"),
               "InternetGateway": ("InternetGateway", "InternetGatewayId")}[kind]
        resource = response[key[0]][key[1]] if key[0] else response[key[1]]
        found = client.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource]}])
        return _tags(found["Tags"])
    if service == "rds":
        member = {"rds:CreateDBSubnetGroup": ("DBSubnetGroup", "DBSubnetGroupArn"),
                  "rds:CreateDBClusterParameterGroup": ("DBClusterParameterGroup",
                                                        "DBClusterParameterGroupArn"),
                  "rds:CreateDBCluster": ("DBCluster", "DBClusterArn"),
                  "rds:CreateDBInstance": ("DBInstance", "DBInstanceArn"),
                  "rds:CreateDBProxy": ("DBProxy", "DBProxyArn")}[call]
        arn = response[member[0]][member[1]]
        return _tags(client.list_tags_for_resource(ResourceName=arn)["TagList"])
    if call == "secretsmanager:CreateSecret":
        return _tags(client.describe_secret(SecretId=response["ARN"]).get("Tags"))
    if call == "iam:CreateRole":
        return _tags(client.list_role_tags(RoleName=response["Role"]["RoleName"])["Tags"])
    if call == "logs:CreateLogGroup":  # the answer names nothing: the newest group
        newest = max(client.describe_log_groups()["logGroups"], key=lambda g: g["creationTime"])
        return _tags(client.list_tags_log_group(logGroupName=newest["logGroupName"])["tags"])
    if call == "lambda:CreateFunction":
        return _tags(client.list_tags(Resource=response["FunctionArn"])["Tags"])
    if call == "cognito-idp:CreateUserPool":
        pool = client.describe_user_pool(UserPoolId=response["UserPool"]["Id"])["UserPool"]
        return _tags(pool.get("UserPoolTags"))
    raise KeyError(call)


# -- comparing -------------------------------------------------------------------------

@dataclass
class Difference:
    """What a run's inventory has that a clean run's has not, and the reverse."""

    duplicates: list[str] = field(default_factory=list)   # a second one of a clean resource
    orphans: list[str] = field(default_factory=list)      # one the clean run does not have
    missing: list[str] = field(default_factory=list)      # a clean resource it lacks
    differs: list[str] = field(default_factory=list)      # same resource, other settings

    @property
    def none(self) -> bool:
        return not (self.duplicates or self.orphans or self.missing or self.differs)


def compare(clean: Inventory, found: Inventory) -> Difference:
    diff = Difference()
    for kind in sorted(set(clean) | set(found)):
        want, have = clean.get(kind, Counter()), found.get(kind, Counter())
        for name in sorted({n for n, _ in want} | {n for n, _ in have}):
            wanted = Counter({d: c for (n, d), c in want.items() if n == name})
            had = Counter({d: c for (n, d), c in have.items() if n == name})
            extra, lacking = had - wanted, wanted - had
            n_extra, n_lacking = sum(extra.values()), sum(lacking.values())
            paired = min(n_extra, n_lacking)
            label = f"{kind} {name}"
            for details in list(extra.elements())[:paired]:
                wanted_details = next(iter(lacking))
                diff.differs.append(f"{label}: {details} (a clean run: {wanted_details})")
            rest = n_extra - paired
            if rest:
                (diff.duplicates if wanted else diff.orphans).extend(
                    f"{label}: {d}" for d in list(extra.elements())[paired:])
            diff.missing.extend(f"{label}: {d}" for d in list(lacking.elements())[paired:])
    return diff


# -- untagged leftovers ------------------------------------------------------------------
# Each maker makes, with plain boto3 calls and no tag, the resource that the create it is
# named after would have made next in `step`, as the old shell scripts made it: the
# essential settings, none of runbook's tags. It returns what it made.

def _vpc_id(ec2, config) -> str:
    return next(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]
                if not v.get("IsDefault") and v["CidrBlock"] == config.network.cidr)


def _subnets(ec2, config) -> dict[str, dict]:
    """The VPC's subnets by CIDR."""
    found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [_vpc_id(ec2, config)]}])
    return {s["CidrBlock"]: s for s in found["Subnets"]}


def _group_id(ec2, config, name: str) -> str:
    return ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [_vpc_id(ec2, config)]},
        {"Name": "group-name", "Values": [name]}])["SecurityGroups"][0]["GroupId"]


def _function_key(step: str) -> str:
    """The function `step` deploys (runbook.functions.registry)."""
    from runbook.functions.registry import FUNCTIONS

    return next(f.key for f in FUNCTIONS.values() if f.step == step)


def _make_vpc(account: Account, config, step: str) -> str:
    account.client("ec2").create_vpc(CidrBlock=config.network.cidr)
    return f"vpc {config.network.cidr}"


def _make_subnet(account: Account, config, step: str) -> str:
    ec2 = account.client("ec2")
    have = _subnets(ec2, config)
    # In the step's order: the private subnets, then the public ones.
    wanted = next(s for s in [*config.network.subnets, *config.network.public_subnets]
                  if s.cidr not in have)
    ec2.create_subnet(VpcId=_vpc_id(ec2, config), CidrBlock=wanted.cidr,
                      AvailabilityZone=wanted.az)
    return f"subnet {wanted.cidr}"


def _make_route_table(account: Account, config, step: str) -> str:
    # An untagged table is runbook's only once it serves the subnet: the old scripts
    # associated theirs. An unassociated one could be anybody's and is left alone.
    ec2 = account.client("ec2")
    vpc_id = _vpc_id(ec2, config)
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    served = {a.get("SubnetId") for t in tables["RouteTables"] for a in t.get("Associations", ())}
    subnets = _subnets(ec2, config)
    wanted = next((s for s in config.network.subnets
                   if s.cidr in subnets and subnets[s.cidr]["SubnetId"] not in served), None)
    if wanted is None:  # the private ones are served: the public table was next
        return _make_public_route_table(account, config, vpc_id, subnets)
    table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnets[wanted.cidr]["SubnetId"])
    return f"route table of {wanted.cidr}"


def _make_public_route_table(account: Account, config, vpc_id: str, subnets: dict) -> str:
    # The old scripts' public table: the route to the gateway, one public subnet served.
    ec2 = account.client("ec2")
    [gateway] = ec2.describe_internet_gateways(Filters=[
        {"Name": "attachment.vpc-id", "Values": [vpc_id]}])["InternetGateways"]
    first = config.network.public_subnets[0]
    table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=gateway["InternetGatewayId"])
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnets[first.cidr]["SubnetId"])
    return f"public route table of {first.cidr}"


def _make_internet_gateway(account: Account, config, step: str) -> str:
    # As the old scripts made it: attached to the VPC, untagged.
    ec2 = account.client("ec2")
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=_vpc_id(ec2, config))
    return "internet gateway"


def _make_security_group(account: Account, config, step: str) -> str:

    ec2 = account.client("ec2")
    vpc_id = _vpc_id(ec2, config)
    names = ([config.database.security_group_name] if step == "database" else
             [naming.proxy_security_group_name(config)] if step == "db-proxy" else
             [f"{config.msk.cluster_name}-msk"] if step == "msk-cluster" else
             [naming.lambda_security_group_name(config),
              naming.endpoint_security_group_name(config)])
    existing = {g["GroupName"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]}
    name = next(n for n in names if n not in existing)
    ec2.create_security_group(GroupName=name, Description="made by hand", VpcId=vpc_id)
    return f"security group {name}"


def _make_vpc_endpoint(account: Account, config, step: str) -> str:

    ec2 = account.client("ec2")
    vpc_id = _vpc_id(ec2, config)
    have = {e["ServiceName"] for e in ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]}
    from runbook.steps.vpc_integrate import EVENT_SERVICES, SERVICES

    # In the step's order; `events` too, as the file has phase a4.
    service = next(f"com.amazonaws.{REGION}.{name}" for name in SERVICES + EVENT_SERVICES
                   if f"com.amazonaws.{REGION}.{name}" not in have)
    subnets = _subnets(ec2, config)
    ec2.create_vpc_endpoint(
        VpcEndpointType="Interface", VpcId=vpc_id, ServiceName=service,
        SubnetIds=[subnets[s.cidr]["SubnetId"] for s in config.network.subnets],
        SecurityGroupIds=[_group_id(ec2, config, naming.endpoint_security_group_name(config))],
        PrivateDnsEnabled=True)
    return f"vpc endpoint {service}"


def _make_subnet_group(account: Account, config, step: str) -> str:
    subnets = _subnets(account.client("ec2"), config)
    account.client("rds").create_db_subnet_group(
        DBSubnetGroupName=config.database.subnet_group_name, DBSubnetGroupDescription="by hand",
        SubnetIds=[subnets[s.cidr]["SubnetId"] for s in config.network.subnets])
    return f"db subnet group {config.database.subnet_group_name}"


def _make_cluster_parameter_group(account: Account, config, step: str) -> str:
    from runbook.steps.database import family

    name = config.database.parameter_group_name
    account.client("rds").create_db_cluster_parameter_group(
        DBClusterParameterGroupName=name, DBParameterGroupFamily=family(
            config.database.engine_version), Description="by hand")
    return f"db cluster parameter group {name}"


def _make_cluster(account: Account, config, step: str) -> str:
    db = config.database
    group = _group_id(account.client("ec2"), config, db.security_group_name)
    account.client("rds").create_db_cluster(
        DBClusterIdentifier=db.cluster_id, Engine="aurora-postgresql",
        EngineVersion=db.engine_version, DatabaseName=db.name, Port=db.port,
        MasterUsername=db.master_username, MasterUserPassword="made-by-hand-1234",
        DBSubnetGroupName=db.subnet_group_name, VpcSecurityGroupIds=[group],
        StorageEncrypted=True, EnableIAMDatabaseAuthentication=True,
        DeletionProtection=db.deletion_protection,
        ServerlessV2ScalingConfiguration={"MinCapacity": db.min_capacity,
                                          "MaxCapacity": db.max_capacity})
    return f"cluster {db.cluster_id}"


def _make_instance(account: Account, config, step: str) -> str:
    db = config.database
    name = f"{db.cluster_id}-1"
    account.client("rds").create_db_instance(
        DBInstanceIdentifier=name, DBClusterIdentifier=db.cluster_id,
        Engine="aurora-postgresql", DBInstanceClass=db.instance_class, PubliclyAccessible=False)
    return f"instance {name}"


def _make_secret(account: Account, config, step: str) -> str:
    sm = account.client("secretsmanager")
    have = {s["Name"] for s in sm.list_secrets()["SecretList"]}
    if config.secrets.db not in have:
        name, value = config.secrets.db, {"username": config.database.master_username}
    else:
        name, value = config.secrets.app_config, {"env": config.env}
    sm.create_secret(Name=name, SecretString=json.dumps(value))
    return f"secret {name}"


def _make_role(account: Account, config, step: str) -> str:
    """A function's execution role, or in step db-proxy the proxy's role: its trust,
    no policy."""
    from runbook.functions.deploy import LAMBDA_TRUST

    if step == "db-proxy":
        name, trust = naming.proxy_role_name(config), {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "rds.amazonaws.com"},
             "Action": "sts:AssumeRole"}]}
    else:
        name, trust = f"{config.function_name(_function_key(step))}-role", LAMBDA_TRUST
    account.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return f"role {name}"


def _make_db_proxy(account: Account, config, step: str) -> str:
    """The proxy as end-to-end IAM makes it (engine family, RequireTLS, IAM_AUTH, no
    Auth; ModifyDBProxy is not in the sandbox), in the subnets and group runbook gives
    it, without tags: runbook finds a proxy by name."""

    ec2 = account.client("ec2")
    subnets = _subnets(ec2, config)
    name = naming.db_proxy_name(config)
    role = account.client("iam").get_role(RoleName=naming.proxy_role_name(config))["Role"]
    account.client("rds").create_db_proxy(
        DBProxyName=name, EngineFamily="POSTGRESQL", RoleArn=role["Arn"], RequireTLS=True,
        DefaultAuthScheme="IAM_AUTH",
        VpcSubnetIds=[subnets[s.cidr]["SubnetId"] for s in config.network.subnets],
        VpcSecurityGroupIds=[_group_id(ec2, config, naming.proxy_security_group_name(config))])
    return f"db proxy {name}"


def _make_log_group(account: Account, config, step: str) -> str:
    name = f"/aws/lambda/{config.function_name(_function_key(step))}"
    account.client("logs").create_log_group(logGroupName=name)
    return f"log group {name}"


def _make_function(account: Account, config, step: str) -> str:
    from runbook.functions import package
    from runbook.functions.deploy import HANDLER

    key = _function_key(step)
    name = config.function_name(key)
    role = account.client("iam").get_role(RoleName=f"{name}-role")["Role"]["Arn"]
    account.client("lambda").create_function(
        FunctionName=name, Runtime=config.lambdas.runtime, Role=role, Handler=HANDLER,
        Code={"ZipFile": package.build_function(key).data})
    return f"function {name}"


def _make_user_pool(account: Account, config, step: str) -> str:
    account.client("cognito-idp").create_user_pool(
        PoolName=config.cognito.user_pool, UsernameAttributes=["email"],
        UsernameConfiguration={"CaseSensitive": False})
    return f"user pool {config.cognito.user_pool}"


def _make_app_client(account: Account, config, step: str) -> str:
    idp = account.client("cognito-idp")
    pool = next(p["Id"] for p in idp.list_user_pools(MaxResults=60)["UserPools"]
                if p["Name"] == config.cognito.user_pool)
    idp.create_user_pool_client(UserPoolId=pool, ClientName=config.cognito.client,
                                GenerateSecret=False)
    return f"app client {config.cognito.client}"


def _signup_queues(config) -> tuple[str, str]:
    """Step event-bus's DLQ and queue, in the order it makes them."""
    queue = f"{config.network.name}-user-signup"
    return f"{queue}-dlq", queue


def _make_event_bus(account: Account, config, step: str) -> str:

    name = naming.event_bus_name(config)
    account.client("events").create_event_bus(Name=name)
    return f"event bus {name}"


def _make_queue(account: Account, config, step: str) -> str:
    """The DLQ, or once it exists the queue, with SQS's defaults: no policy, no
    redrive, another visibility timeout and retention."""
    sqs = account.client("sqs")
    have = {url.rsplit("/", 1)[-1] for url in sqs.list_queues().get("QueueUrls", ())}
    name = next(n for n in _signup_queues(config) if n not in have)
    sqs.create_queue(QueueName=name)
    return f"queue {name}"


def _make_rule(account: Account, config, step: str) -> str:
    """event-bus's rule on the bus, or deploy-process-user-signup's relay schedule on
    the default bus; without a description."""
    from runbook.steps.deploy_process_user_signup import RELAY_SCHEDULE
    from runbook.steps.event_bus import DETAIL_TYPE, SOURCE

    events = account.client("events")
    if step == "event-bus":
        name, bus = f"{config.network.name}-user-registered", naming.event_bus_name(config)
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(
            {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}))
    else:
        name, bus = f"{config.network.name}-registration-relay", "default"
        events.put_rule(Name=name, ScheduleExpression=RELAY_SCHEDULE)
    return f"rule {name} on {bus}"


def _make_alarm(account: Account, config, step: str) -> str:
    """The DLQ-depth alarm, or once it exists the consumer's errors alarm: the metric,
    with CloudWatch's defaults for what the old scripts did not say."""
    cloudwatch = account.client("cloudwatch")
    dlq, queue = _signup_queues(config)
    consumer = config.function_name("process_user_signup")
    alarms = [(f"{queue}-dlq-depth", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
               {"QueueName": dlq}), (f"{consumer}-errors", "AWS/Lambda", "Errors",
                                     {"FunctionName": consumer})]
    have = {a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    name, namespace, metric, dimensions = next(a for a in alarms if a[0] not in have)
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace=namespace, MetricName=metric, Statistic="Sum",
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()], Period=300,
        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold")
    return f"alarm {name}"


# The creates an untagged leftover can stand in for. PublishLayerVersion has none:
# layer versions carry no tags, and one with the same content is adopted as it is.
# Neither have CreateEventSourceMapping and PutTargets: a mapping or a rule's target
# carries no tags (each is claimed through its function's or its rule's), and the one
# there is adopted as it is, its settings updated.
def _make_key(account: Account, config, step: str) -> str:
    """The hash table's key as a script makes one: KMS's default policy, no rotation,
    no tags, under the alias runbook looks for."""
    kms = account.client("kms")
    alias = f"alias/{config.legacy.hash_table}"
    key = kms.create_key(Description="made by hand")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    return f"kms key {alias}"


def _make_msk_cluster(account: Account, config, step: str) -> str:
    """The cluster with the settings runbook makes it with (runbook.resources.
    msk_cluster.provisioned), without tags: runbook finds a cluster by name."""
    from runbook.resources.msk_cluster import ClusterSpec, provisioned

    ec2, msk_config = account.client("ec2"), config.msk
    subnets = _subnets(ec2, config)
    subnet_ids = tuple(subnets[s.cidr]["SubnetId"] for s in config.network.public_subnets)
    group = _group_id(ec2, config, f"{msk_config.cluster_name}-msk")
    spec = ClusterSpec(msk_config.cluster_name, {}, "msk.cluster_name",
                       kafka_version=msk_config.kafka_version,
                       broker_type=msk_config.broker_type,
                       broker_count=msk_config.brokers_per_az * len(subnet_ids),
                       volume_gb=msk_config.volume_gb, subnet_ids=subnet_ids,
                       security_group_ids=(group,))
    account.client("kafka").create_cluster_v2(ClusterName=spec.name,
                                              Provisioned=provisioned(spec))
    return f"msk cluster {spec.name}"


LEFTOVERS: dict[str, Callable[[Account, object, str], str]] = {
    "ec2:CreateVpc": _make_vpc,
    "ec2:CreateSubnet": _make_subnet,
    "ec2:CreateRouteTable": _make_route_table,
    "ec2:CreateInternetGateway": _make_internet_gateway,
    "ec2:CreateSecurityGroup": _make_security_group,
    "ec2:CreateVpcEndpoint": _make_vpc_endpoint,
    "rds:CreateDBSubnetGroup": _make_subnet_group,
    "rds:CreateDBClusterParameterGroup": _make_cluster_parameter_group,
    "rds:CreateDBCluster": _make_cluster,
    "rds:CreateDBInstance": _make_instance,
    "rds:CreateDBProxy": _make_db_proxy,
    "secretsmanager:CreateSecret": _make_secret,
    "iam:CreateRole": _make_role,
    "logs:CreateLogGroup": _make_log_group,
    "lambda:CreateFunction": _make_function,
    "cognito-idp:CreateUserPool": _make_user_pool,
    "cognito-idp:CreateUserPoolClient": _make_app_client,
    "events:CreateEventBus": _make_event_bus,
    "sqs:CreateQueue": _make_queue,
    "events:PutRule": _make_rule,
    "cloudwatch:PutMetricAlarm": _make_alarm,
    "kms:CreateKey": _make_key,
    "kafka:CreateClusterV2": _make_msk_cluster,
    # Not dynamodb:CreateTable: moto ignores UpdateTable's SSESpecification, so a table
    # a script made with DynamoDB's own key cannot be moved to runbook's in the sandbox
    # (the move is tested as a plan: tests/plans/hash-table).
}


# -- the sweep -------------------------------------------------------------------------

@dataclass
class Baseline:
    """A clean run: its writes in order (the points to sweep) and what it left."""

    writes: list[Write]
    inventory: Inventory
    seconds: float

    def write(self, k: int) -> Write:
        """The k-th write of the run (the tests' writes, not swept, have numbers too)."""
        return next(w for w in self.writes if w.k == k)

    def per_step(self) -> dict[str, int]:
        return dict(Counter(w.step for w in self.writes))


def baseline(config, account: Account) -> Baseline:
    """Run a1..a5 once in an empty account, recording each provisioning write."""
    account.reset()
    recorder = Fault()
    started = time.monotonic()
    results = run(config, account, recorder)
    seconds = time.monotonic() - started
    failed = [f"{r.name}: {r.error}" for r in results if r.status != "ok"]
    if failed:
        raise RuntimeError("the clean run failed: " + "; ".join(failed))
    provisioning = [w for w in recorder.writes if w.step in PROVISIONING]
    found = inventory(account, config)
    left = [kind for kind in ("ssm:parameter", "cognito-idp:user", "postgres:row",
                              "sqs:message") if kind in found]
    if left:  # the run lock, the test users, their rows and messages: gone after any run
        raise RuntimeError(f"the clean run left {', '.join(left)} behind")
    return Baseline(provisioning, found, seconds)


@dataclass
class Outcome:
    point: Point
    write: Write
    fired: str | None
    first_run: str                 # "failed at <step>", or "ok" when the fault was absorbed
    second_run: str                # "ok", or the failing step and its error
    difference: Difference
    seconds: float

    @property
    def converged(self) -> bool:
        return self.fired is not None and self.second_run == "ok" and self.difference.none

    def describe(self) -> str:
        text = (f"{self.point} ({self.write.call} in {self.write.step}): first run "
                f"{self.first_run}; second run {self.second_run}")
        d = self.difference
        for label, items in (("duplicate", d.duplicates), ("orphan", d.orphans),
                             ("missing", d.missing), ("differs", d.differs)):
            text += "".join(f"\n    {label}: {item}" for item in items)
        if self.fired is None:
            text += "\n    the fault never fired"
        return text


def try_point(config, account: Account, clean: Baseline, point: Point) -> Outcome:
    """Fail the point's write in a fresh account, run again without the fault, compare."""
    started = time.monotonic()
    account.reset()
    fault = Fault(point)
    first = run(config, account, fault)
    failed = next((r for r in first if r.status != "ok"), None)
    first_text = f"failed at {failed.name}" if failed else "ok"
    write = clean.write(point.k)
    if point.kind == UNTAGGED:
        made = LEFTOVERS[write.call](account, config, write.step)
        first_text += f", then {made} appeared untagged"
    second = run(config, account, steps=recovery(first))
    broken = next((r for r in second if r.status != "ok"), None)
    second_text = "ok" if broken is None else f"failed at {broken.name}: {broken.error}"
    difference = compare(clean.inventory, inventory(account, config))
    return Outcome(point, write, fault.fired, first_text, second_text,
                   difference, time.monotonic() - started)


# -- drift: what the next run removes -------------------------------------------------

# The writes that remove what someone added beside runbook's resources. A clean run makes
# none of them, so `ci_points` and `every_point` cannot reach them: `try_drift_point`
# fails them in a run that follows `add_drift`, where they are writes 1 to 4, in order.
DRIFT_REMOVALS = ("ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
                  "iam:DeleteRolePolicy", "iam:DetachRolePolicy")


def add_drift(account: Account, config) -> None:
    """What another client adds to a converged account, one of each removal's kind: a
    0.0.0.0/0 rule on the DB group, an egress rule on the Lambda group, and an inline and
    a managed policy on Post-Confirmation's execution role."""

    ec2, iam = account.client("ec2"), account.client("iam")
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [_vpc_id(ec2, config)]}])["SecurityGroups"]}
    ec2.authorize_security_group_ingress(
        GroupId=groups[config.database.security_group_name], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_egress(
        GroupId=groups[naming.lambda_security_group_name(config)], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}])
    role = f"{config.function_name('post_confirmation')}-role"
    everything = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    iam.put_role_policy(RoleName=role, PolicyName="debugging", PolicyDocument=everything)
    arn = iam.create_policy(PolicyName="everything", PolicyDocument=everything)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)


def try_drift_point(config, account: Account, clean: Baseline, point: Point) -> Outcome:
    """A clean run, `add_drift`, then a run whose point.k-th write (a removal) fails as
    point.kind says, then a run without the fault: the account must hold what the
    clean run left."""
    started = time.monotonic()
    account.reset()
    converged = run(config, account)
    if any(r.status != "ok" for r in converged):
        raise RuntimeError("the clean run failed")
    add_drift(account, config)
    fault = Fault(point)
    first = run(config, account, fault)
    failed = next((r for r in first if r.status != "ok"), None)
    first_text = f"failed at {failed.name}" if failed else "ok"
    second = run(config, account)
    broken = next((r for r in second if r.status != "ok"), None)
    second_text = "ok" if broken is None else f"failed at {broken.name}: {broken.error}"
    write = fault.writes[point.k - 1] if len(fault.writes) >= point.k else \
        Write(point.k, "?", "?")
    return Outcome(point, write, fault.fired, first_text, second_text,
                   compare(clean.inventory, inventory(account, config)),
                   time.monotonic() - started)


def every_point(clean: Baseline) -> list[Point]:
    """The full sweep: each k once with a refused kind (rotating) and with each lost kind,
    and each create once with an untagged leftover."""
    points = []
    for write in clean.writes:
        points.append(Point(write.k, REFUSED[write.k % len(REFUSED)]))
        points.extend(Point(write.k, kind) for kind in LOST)
        if write.call in LEFTOVERS:
            points.append(Point(write.k, UNTAGGED))
    return points


def ci_points(clean: Baseline) -> list[Point]:
    """A deterministic sample for CI: in every step that writes, its first write with the
    answer lost and retried, its last with the answer lost, and a middle one refused (the
    refused kinds in turn); plus the first of each create that AWS would carry out twice
    (runbook.aws.clients.NOT_RETRIED_WHEN_UNCERTAIN), with the answer lost and retried."""
    from runbook.aws.clients import NOT_RETRIED_WHEN_UNCERTAIN

    by_step: dict[str, list[Write]] = {}
    for write in clean.writes:
        by_step.setdefault(write.step, []).append(write)
    points: list[Point] = []
    for index, writes in enumerate(by_step.values()):
        points.append(Point(writes[0].k, "response-lost-retried"))
        points.append(Point(writes[-1].k, "response-lost"))
        if len(writes) > 2:
            points.append(Point(writes[len(writes) // 2].k, REFUSED[index % len(REFUSED)]))
    repeatable = {f"{service}:{op}" for service, ops in NOT_RETRIED_WHEN_UNCERTAIN.items()
                  for op in ops}
    for call in sorted(repeatable):
        first = next((w for w in clean.writes if w.call == call), None)
        if first is not None:
            points.append(Point(first.k, "response-lost-retried"))
    return sorted(set(points), key=lambda p: (p.k, KINDS.index(p.kind)))


def sweep(config, account: Account, clean: Baseline, points: list[Point],
          on_point: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    outcomes = []
    for point in points:
        outcome = try_point(config, account, clean, point)
        on_point(outcome)
        outcomes.append(outcome)
    return outcomes


# -- the figures -----------------------------------------------------------------------

def figures(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    """Per fault kind and in all: points tried, converged, duplicates, orphans..."""
    rows: dict[str, dict[str, int]] = {}
    for key in [*KINDS, "all"]:
        chosen = [o for o in outcomes if key in ("all", o.point.kind)]
        if not chosen:
            continue
        rows[key] = {
            "tried": len(chosen),
            "converged": sum(o.converged for o in chosen),
            "duplicates": sum(len(o.difference.duplicates) for o in chosen),
            "orphans": sum(len(o.difference.orphans) for o in chosen),
            "missing": sum(len(o.difference.missing) for o in chosen),
            "differs": sum(len(o.difference.differs) for o in chosen),
            "second_run_failed": sum(o.second_run != "ok" for o in chosen),
        }
    return rows


def render(clean: Baseline, outcomes: list[Outcome], seconds: float) -> str:
    steps = ", ".join(f"{step} {n}" for step, n in clean.per_step().items())
    lines = [f"clean a1..a5 run: {len(clean.writes)} writes outside the tests "
             f"({steps}); {sum(clean.inventory.counts().values())} resources listed",
             f"{'fault kind':<22} {'tried':>6} {'converged':>10} {'duplicates':>11} "
             f"{'orphans':>8} {'missing':>8} {'differs':>8} {'2nd run failed':>15}"]
    for kind, row in figures(outcomes).items():
        lines.append(f"{kind:<22} {row['tried']:>6} {row['converged']:>10} "
                     f"{row['duplicates']:>11} {row['orphans']:>8} {row['missing']:>8} "
                     f"{row['differs']:>8} {row['second_run_failed']:>15}")
    lines.append(f"{len(outcomes)} points in {seconds:.0f} s "
                 f"({seconds / max(len(outcomes), 1):.1f} s a point)")
    for outcome in outcomes:
        if not outcome.converged:
            lines.append("NOT CONVERGED " + outcome.describe())
    return "\n".join(lines)
