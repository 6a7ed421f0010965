"""The sandbox's MSK control plane, on top of moto 5.2.5's.

moto keeps an MSK cluster's record, but leaves it CREATING forever, drops the client
authentication and encryption of a CreateClusterV2, accepts two clusters with one name
and any PublicAccess at creation, and has no GetBootstrapBrokers, UpdateConnectivity or
DescribeClusterOperation(V2). `install` teaches the moto running in this process (the
sandbox's server, or a test's mock) what step msk-cluster needs of AWS, and is strict
where moto is lax, so that what AWS would refuse fails in a dry run too:

- CreateClusterV2 refuses a second cluster with the name (ConflictException), a
  PublicAccess other than DISABLED (AWS's own message), subnets that share an
  availability zone, a broker count that is not a multiple of the subnets, and security
  groups that do not exist; it keeps ClientAuthentication and EncryptionInfo. Subnets
  EC2 does not know pass, as in moto (other steps' tests use placeholders), and are
  refused by UpdateConnectivity.
- The cluster reads CREATING for READS_WHILE_CREATING reads, then ACTIVE: time passes
  between a run's reads, so its wait, with progress, runs as on AWS.
- GetBootstrapBrokers answers once the cluster serves, with the sandbox's broker
  (`serve`) as the IAM listeners: BootstrapBrokerStringSaslIam, and
  BootstrapBrokerStringPublicSaslIam once public access is on.
- UpdateConnectivity checks what AWS checks (public-access.md): the cluster ACTIVE, the
  CurrentVersion current, Kafka 2.6.0 or later, IAM, SCRAM or mTLS on and
  unauthenticated access off, TLS only between clients and brokers, in-cluster
  encryption on, and every broker subnet public (0.0.0.0/0 routed to an internet
  gateway). It records a cluster operation, UPDATE_IN_PROGRESS for
  READS_WHILE_UPDATING reads of the cluster or the operation, then UPDATE_COMPLETE,
  with public access on and a new CurrentVersion.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote

SIMULATED = (
    "MSK control plane: moto keeps the cluster's record; the sandbox makes it ACTIVE "
    "after a few reads, keeps its client authentication and encryption (moto drops them), "
    "answers GetBootstrapBrokers with the sandbox's broker as the IAM listeners (public "
    "once public access is on), and takes UpdateConnectivity as AWS does: refused for a "
    "stale CurrentVersion, a cluster not ACTIVE, Kafka before 2.6.0, no IAM/SCRAM/mTLS, "
    "unauthenticated access on, plaintext or no in-cluster encryption, or a broker subnet "
    "without a route to an internet gateway; its operation completes after a few reads. "
    "Refused at creation as on AWS, though moto takes them: a second cluster with the "
    "name, PublicAccess other than DISABLED, missing security groups, subnets sharing an "
    "AZ, a broker count not a multiple of the subnets (subnets EC2 does not know pass, "
    "and UpdateConnectivity refuses them). Not emulated: the "
    "brokers' number, type and storage (one broker serves every cluster), the security "
    "group's rules (the broker listens on 127.0.0.1 only), Elastic IPs, MSK's cluster "
    "IAM policy checks (runbook.sandbox.kafka checks the token's signature, not what it "
    "allows)")

READS_WHILE_CREATING = 3
READS_WHILE_UPDATING = 2
PUBLIC, DISABLED = "SERVICE_PROVIDED_EIPS", "DISABLED"
MIN_PUBLIC_VERSION = (2, 6, 0)

# The broker behind every cluster's bootstrap strings ("127.0.0.1:<port>").
_broker: dict = {"bootstrap": None}


def serve(bootstrap: str | None) -> None:
    """Answer GetBootstrapBrokers with `bootstrap` (the sandbox's Tansu broker)."""
    _broker["bootstrap"] = bootstrap


def install() -> bool:
    """Patch the in-process moto's kafka service; False if it was patched already."""
    from moto.kafka import urls
    from moto.kafka.responses import KafkaResponse

    if getattr(KafkaResponse, "runbook_sandbox", False):
        return False
    # Routes moto lacks. Its server builds a service's routes at the service's first
    # request, and its in-process mock on every request, so this comes first.
    urls.url_paths.setdefault("{0}/v1/operations/(?P<clusterOperationArn>.+)$",
                              KafkaResponse.dispatch)
    urls.url_paths.setdefault("{0}/api/v2/operations/(?P<clusterOperationArn>.+)$",
                              KafkaResponse.dispatch)

    create_cluster_v2 = KafkaResponse.create_cluster_v2

    def create(self):
        provisioned = self._get_param("provisioned") or {}
        name = self._get_param("clusterName")
        _check_create(self.kafka_backend, name, provisioned)
        answer = create_cluster_v2(self)
        cluster = next(c for c in self.kafka_backend.clusters.values()
                       if c.cluster_name == name)
        if provisioned:
            cluster.client_authentication = provisioned.get("clientAuthentication") or {}
            cluster.encryption_info = _encryption(provisioned.get("encryptionInfo"), cluster)
        cluster.runbook_reads_left = READS_WHILE_CREATING
        cluster.runbook_pending = _activate
        return answer

    def reading(method):
        def read(self):
            for cluster in list(self.kafka_backend.clusters.values()):
                _tick(cluster)
            return method(self)
        return read

    def get_bootstrap_brokers(self):
        cluster = _cluster(self, self.parsed_url.path.split("/clusters/")[-1]
                           .removesuffix("/bootstrap-brokers"))
        if cluster.state in ("CREATING", "FAILED", "DELETING"):
            raise _bad(f"The cluster is in the {cluster.state} state; its bootstrap brokers "
                       "are not available.")
        bootstrap = _broker["bootstrap"]
        if not bootstrap:
            raise _bad("This sandbox runs no Kafka broker (runbook.sandbox.msk.serve).")
        answer = {"bootstrapBrokerStringSaslIam": bootstrap}
        if _public_access(cluster) == PUBLIC:
            answer["bootstrapBrokerStringPublicSaslIam"] = bootstrap
        return _json(answer)

    def update_connectivity(self):
        arn = self.parsed_url.path.split("/clusters/")[-1].removesuffix("/connectivity")
        cluster = _cluster(self, arn)
        _tick(cluster)
        wanted = ((self._get_param("connectivityInfo") or {}).get("publicAccess") or {}).get("type")
        _check_connectivity(self, cluster, self._get_param("currentVersion"), wanted)
        operation = _operation(cluster, wanted)
        _operations(self.kafka_backend)[operation["operationArn"]] = operation
        cluster.state = "UPDATING"
        cluster.runbook_reads_left = READS_WHILE_UPDATING
        cluster.runbook_pending = lambda c: _complete(c, operation, wanted)
        return _json({"clusterArn": cluster.arn, "clusterOperationArn": operation["operationArn"]})

    def describe_operation(version: int):
        def describe(self):
            arn = unquote(self.parsed_url.path.split("/operations/")[-1])
            operation = _operations(self.kafka_backend).get(arn)
            if operation is None:
                from moto.kafka.exceptions import NotFoundException

                raise NotFoundException(f"The cluster operation {arn} does not exist.")
            cluster = self.kafka_backend.clusters.get(operation["clusterArn"])
            if cluster is not None:
                _tick(cluster)
            return _json({"clusterOperationInfo": _operation_info(operation, cluster, version)})
        return describe

    KafkaResponse.create_cluster_v2 = create
    for name in ("describe_cluster_v2", "describe_cluster", "list_clusters_v2", "list_clusters"):
        setattr(KafkaResponse, name, reading(getattr(KafkaResponse, name)))
    KafkaResponse.get_bootstrap_brokers = get_bootstrap_brokers
    KafkaResponse.update_connectivity = update_connectivity
    KafkaResponse.describe_cluster_operation = describe_operation(1)
    KafkaResponse.describe_cluster_operation_v2 = describe_operation(2)
    KafkaResponse.runbook_sandbox = True
    return True


# -- errors ------------------------------------------------------------------------------

def _bad(message: str):
    from moto.kafka.exceptions import BadRequestException

    return BadRequestException(message)


def _conflict(message: str):
    from moto.kafka.exceptions import KafkaException

    class ConflictException(KafkaException):
        code = 409

    return ConflictException("ConflictException", message)


def _json(value: dict) -> str:
    import json

    return json.dumps(value)


# -- create ------------------------------------------------------------------------------

def _check_create(backend, name: str, provisioned: dict) -> None:
    if any(c.cluster_name == name for c in backend.clusters.values()):
        raise _conflict(f"A cluster with the name {name} already exists.")
    if not provisioned:
        return
    nodes = provisioned.get("brokerNodeGroupInfo") or {}
    public = ((nodes.get("connectivityInfo") or {}).get("publicAccess") or {}).get("type")
    if public not in (None, DISABLED):
        # AWS's answer (hashicorp/terraform-provider-aws#31271).
        raise _bad("When creating a cluster, the only valid value for the Type parameter "
                   "in PublicAccess is DISABLED.")
    ec2 = _ec2(backend)
    subnet_ids = list(nodes.get("clientSubnets") or ())
    # Subnets moto's EC2 does not know are let through, as moto lets them: tests of the
    # steps that consume a cluster make one with placeholder subnets. UpdateConnectivity
    # refuses them (a subnet that does not exist routes nowhere).
    subnets = [subnet for subnet in map(lambda i: _subnet(ec2, i), subnet_ids) if subnet]
    if not 2 <= len(subnet_ids) <= 3:
        raise _bad("Specify two or three subnets in the ClientSubnets parameter.")
    zones = [s.availability_zone for s in subnets]
    if len(set(zones)) != len(zones):
        raise _bad("The ClientSubnets must be in different Availability Zones.")
    brokers = int(provisioned.get("numberOfBrokerNodes") or 0)
    if brokers < 1 or brokers % len(subnet_ids):
        raise _bad("The number of broker nodes must be a multiple of Availability Zones in "
                   "the Client Subnets parameter.")
    for group_id in nodes.get("securityGroups") or ():
        group = ec2.get_security_group_from_id(group_id)
        if group is None:
            raise _bad(f"The security group {group_id} does not exist.")
        if subnets and group.vpc_id != subnets[0].vpc_id:
            raise _bad(f"The security group {group_id} is not in the subnets' VPC.")


def _encryption(info: dict | None, cluster) -> dict:
    """EncryptionInfo as DescribeClusterV2 gives it: in transit as asked (AWS's default is
    TLS and in-cluster on), at rest with the AWS managed key when none is named."""
    info = dict(info or {})
    info.setdefault("encryptionInTransit", {"clientBroker": "TLS", "inCluster": True})
    info.setdefault("encryptionAtRest", {"dataVolumeKMSKeyId": (
        f"arn:aws:kms:{cluster.region_name}:{cluster.account_id}:key/aws-kafka-managed")})
    return info


def _activate(cluster) -> None:
    cluster.state = "ACTIVE"


def _tick(cluster) -> None:
    """One read of `cluster` (or its operation): a pending change completes when its
    reads are used up."""
    pending = getattr(cluster, "runbook_pending", None)
    if pending is None:
        return
    cluster.runbook_reads_left -= 1
    if cluster.runbook_reads_left <= 0:
        cluster.runbook_pending = None
        pending(cluster)


def _cluster(response, arn: str):
    from moto.kafka.exceptions import NotFoundException

    cluster = response.kafka_backend.clusters.get(unquote(arn))
    if cluster is None:
        raise NotFoundException(f"The cluster {unquote(arn)} does not exist.")
    return cluster


def _ec2(backend):
    from moto.ec2.models import ec2_backends

    return ec2_backends[backend.account_id][backend.region_name]


# -- connectivity ------------------------------------------------------------------------

def _public_access(cluster) -> str:
    nodes = cluster.broker_node_group_info or {}
    return ((nodes.get("connectivityInfo") or {}).get("publicAccess") or {}).get("type") \
        or DISABLED


def _check_connectivity(response, cluster, version: str | None, wanted: str | None) -> None:
    if cluster.state != "ACTIVE":
        raise _bad(f"This operation cannot be performed because the cluster is in the "
                   f"{cluster.state} state.")
    if version != cluster.current_version:
        raise _bad(f"The version of the cluster you specified ({version}) is not the "
                   f"current version ({cluster.current_version}).")
    if wanted not in (PUBLIC, DISABLED):
        raise _bad(f"PublicAccess Type {wanted} is not valid: SERVICE_PROVIDED_EIPS or "
                   "DISABLED.")
    if wanted == DISABLED:
        return
    version_numbers = tuple(int(p) for p in str(cluster.kafka_version).split(".")[:3]
                            if p.isdigit())
    if version_numbers < MIN_PUBLIC_VERSION:
        raise _bad(f"Public access requires Apache Kafka 2.6.0 or later; the cluster runs "
                   f"{cluster.kafka_version}.")
    auth = cluster.client_authentication or {}
    sasl = auth.get("sasl") or {}
    if not any((part or {}).get("enabled") for part in (sasl.get("iam"), sasl.get("scram"),
                                                         auth.get("tls"))):
        raise _bad("Public access requires IAM, SASL/SCRAM or TLS client authentication.")
    if (auth.get("unauthenticated") or {}).get("enabled"):
        raise _bad("Public access requires unauthenticated access to be turned off.")
    transit = (cluster.encryption_info or {}).get("encryptionInTransit") or {}
    if transit.get("clientBroker", "TLS") != "TLS":
        raise _bad("Public access requires TLS-only encryption between clients and brokers.")
    if not transit.get("inCluster", True):
        raise _bad("Public access requires encryption within the cluster.")
    ec2 = _ec2(response.kafka_backend)
    for subnet_id in (cluster.broker_node_group_info or {}).get("clientSubnets") or ():
        if not _routes_to_internet(ec2, subnet_id):
            raise _bad(f"Public access requires public subnets: subnet {subnet_id} has no "
                       "route to an internet gateway.")


def _subnet(ec2, subnet_id: str):
    try:
        return ec2.get_subnet(subnet_id)
    except Exception:  # noqa: BLE001 - moto's InvalidSubnetID.NotFound
        return None


def _routes_to_internet(ec2, subnet_id: str) -> bool:
    """Whether the route table `subnet_id` uses (its own, else its VPC's main table)
    sends 0.0.0.0/0 to an internet gateway. A subnet that does not exist does not."""
    subnet = _subnet(ec2, subnet_id)
    if subnet is None:
        return False
    tables = [t for t in ec2.route_tables.values() if t.vpc_id == subnet.vpc_id]
    table = next((t for t in tables if subnet_id in t._associations.values()), None) \
        or next((t for t in tables if t.main_association_id is not None), None)
    if table is None:
        return False
    return any(route.destination_cidr_block
               and ipaddress.ip_network(route.destination_cidr_block).prefixlen == 0
               and (route.gateway_id or "").startswith("igw-") for route in table.routes)


def _operations(backend) -> dict:
    if not hasattr(backend, "runbook_operations"):
        backend.runbook_operations = {}
    return backend.runbook_operations


def _operation(cluster, wanted: str) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    arn = cluster.arn.replace(":cluster/", ":cluster-operation/", 1)
    return {"operationArn": f"{arn}/{uuid.uuid4()}", "clusterArn": cluster.arn,
            "operationType": "UPDATE_CONNECTIVITY", "operationState": "UPDATE_IN_PROGRESS",
            "creationTime": now,
            "source": {"connectivityInfo": {"publicAccess": {"type": _public_access(cluster)}}},
            "target": {"connectivityInfo": {"publicAccess": {"type": wanted}}}}


def _complete(cluster, operation: dict, wanted: str) -> None:
    nodes = dict(cluster.broker_node_group_info or {})
    nodes["connectivityInfo"] = {**(nodes.get("connectivityInfo") or {}),
                                 "publicAccess": {"type": wanted}}
    cluster.broker_node_group_info = nodes
    # AWS's versions look like K3AEGXETSR30VB; a new one after every update.
    cluster.current_version = "K" + secrets.token_hex(7).upper()[:13]
    cluster.state = "ACTIVE"
    operation["operationState"] = "UPDATE_COMPLETE"
    operation["endTime"] = datetime.now(timezone.utc).isoformat()


def _operation_info(operation: dict, cluster, version: int) -> dict:
    common = {"clusterArn": operation["clusterArn"], "operationArn": operation["operationArn"],
              "operationState": operation["operationState"],
              "operationType": operation["operationType"]}
    end = {"endTime": operation["endTime"]} if "endTime" in operation else {}
    if version == 1:
        return {**common, "creationTime": operation["creationTime"], **end,
                "sourceClusterInfo": operation["source"],
                "targetClusterInfo": operation["target"]}
    return {**common, "clusterType": getattr(cluster, "cluster_type", "PROVISIONED"),
            "startTime": operation["creationTime"], **end,
            "provisioned": {"sourceClusterInfo": operation["source"],
                            "targetClusterInfo": operation["target"]}}
