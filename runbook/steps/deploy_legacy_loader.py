"""Step `deploy-legacy-loader` (phase a5): the function that stores the legacy users'
password hashes, and the MSK event source mapping that feeds it.

The function (lambdas/legacy_loader) is not in the VPC: it only writes the hash table
(step hash-table), whose name it gets in HASH_TABLE. The mapping reads msk-cluster's
topic in the consumer group legacy.loader_consumer_group (default
<hash_table>-loader), from TRIM_HORIZON, in batches of legacy.loader_batch_size (100),
and invokes it; Lambda commits the group's offsets only after an invocation succeeded.

Why provisioned pollers (ProvisionedPollerConfig, legacy.loader_min_pollers and
loader_max_pollers): a Kafka mapping's pollers reach the brokers through network
interfaces in the cluster's subnets, with the cluster's security group (so that group
must let itself in on 9098, which step msk-cluster does). In the default on-demand
mode those pollers must also call Lambda and STS from there, which needs a NAT gateway
or VPC endpoints for both; in provisioned mode they need neither (Lambda developer
guide, with-msk-cluster-network and with-kafka-cluster-network). The cluster's subnets
here are public subnets whose only way out is the internet gateway, and an interface
Lambda makes there gets no public address: on-demand pollers would never reach Lambda
or STS, and the mapping would stay in PROBLEM. One provisioned poller handles the
staging's load; it is billed per event poller unit-hour while the mapping exists.

The role (one inline policy, runbook.functions.deploy):
- Logs: its own log group's streams;
- DescribeCluster: kafka:DescribeClusterV2 and GetBootstrapBrokers on the one cluster,
  which Lambda calls with the execution role to find the brokers (the describe part of
  AWSLambdaMSKExecutionRole, scoped);
- PollerNetwork: the EC2 actions the pollers' interfaces need in the cluster's subnets
  (the rest of AWSLambdaMSKExecutionRole), on "*", which AWS requires (see below);
- the data plane, IAM access control of the cluster (kafka-cluster:*, never a wildcard):
  Connect and DescribeClusterDynamicConfiguration on the cluster, DescribeTopic and
  ReadData on the one topic, DescribeGroup and AlterGroup (commit) on the one group;
- WriteHashes: dynamodb:BatchWriteItem on the one table (the handler makes no other
  call);
- DecryptTableKey: kms:Decrypt on the table's key, only through DynamoDB
  (kms:ViaService). The table is encrypted with a customer-managed key: DynamoDB
  decrypts the table key with KMS on behalf of the principal accessing the table (AWS
  KMS developer guide, "How Amazon DynamoDB uses AWS KMS"), so a writer needs Decrypt.
  It needs no GenerateDataKey, Encrypt or CreateGrant: DynamoDB made the table key and
  its grant when step hash-table created the table.
The mapping invokes the function with the execution role: no resource policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.functions import package, registry
from runbook.functions.deploy import (FUNCTION_KEY, FunctionSpec, FunctionsMixin,
                                      FunctionState, function_spec)
from runbook.resources.base import Inventory
from runbook.resources.event_source_mapping import EventSourceMapping, MappingSpec
from runbook.steps import hash_table
from runbook.steps.deploy_process_user_signup import WhenActive

STEP_NAME = "deploy-legacy-loader"
ENTRY = registry.LEGACY_LOADER
KEY = ENTRY.key
TABLE_VARIABLE = "HASH_TABLE"
STARTING_POSITION = "TRIM_HORIZON"
FIELD = "legacy.loader_consumer_group"
DESCRIBE_ACTIONS = ["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"]
# What the MSK mapping's pollers need to make, find and remove their network interfaces
# in the cluster's subnets (the EC2 actions of AWSLambdaMSKExecutionRole). AWS requires
# "Resource": "*" for them: the Describe actions work only on *, and Lambda makes the
# interfaces, so their ids are not known beforehand.
POLLER_NETWORK_ACTIONS = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                          "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
                          "ec2:DescribeSubnets", "ec2:DescribeVpcs"]
CLUSTER_ACTIONS = ["kafka-cluster:Connect", "kafka-cluster:DescribeClusterDynamicConfiguration"]
TOPIC_ACTIONS = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
GROUP_ACTIONS = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]

MAPPING = EventSourceMapping()
KEYS = ("mapping",)


@dataclass
class LoaderState(Inventory):
    """found: KEYS; the function is an inventory of its own."""

    functions: dict[str, FunctionState] = field(default_factory=dict)
    account: str = ""


@dataclass(frozen=True)
class LoaderOutputs(Outputs):
    function_name: str
    function_arn: Any
    role_arn: Any
    code_sha256: str
    mapping_uuid: Any
    consumer_group: str
    batch_size: int


def group_arn(msk, group: str):
    """The consumer group's ARN, as IAM access control names it (msk-cluster's
    group_arn_prefix, from the cluster's own ARN, and the group id); Unknown while the
    cluster is."""
    prefix = msk.group_arn_prefix
    return f"{prefix}{group}" if is_known(prefix) else UNKNOWN


class DeployLegacyLoader(FunctionsMixin, Step):
    name = STEP_NAME

    # -- what the step wants ---------------------------------------------------------

    @property
    def consumer_group(self) -> str:
        return self.config.legacy.consumer_group

    def statements(self, account: str) -> tuple[dict, ...]:
        msk, table = self.inputs.msk_cluster, self.inputs.hash_table
        cluster = msk.cluster_arn
        region = self.ctx.aws.region
        return (
            {"Sid": "DescribeCluster", "Effect": "Allow", "Action": DESCRIBE_ACTIONS,
             "Resource": cluster},
            {"Sid": "PollerNetwork", "Effect": "Allow", "Action": POLLER_NETWORK_ACTIONS,
             "Resource": "*"},
            {"Sid": "ConnectToCluster", "Effect": "Allow", "Action": CLUSTER_ACTIONS,
             "Resource": cluster},
            {"Sid": "ReadLegacyTopic", "Effect": "Allow", "Action": TOPIC_ACTIONS,
             "Resource": msk.topic_arn},
            {"Sid": "CommitInLoaderGroup", "Effect": "Allow", "Action": GROUP_ACTIONS,
             "Resource": group_arn(msk, self.consumer_group)},
            {"Sid": "WriteHashes", "Effect": "Allow", "Action": "dynamodb:BatchWriteItem",
             "Resource": table.table_arn},
            hash_table.decrypt_statement(table.key_arn, region),
        )

    def spec(self, account: str) -> FunctionSpec:
        base = function_spec(ENTRY, self.config, account=account, region=self.ctx.aws.region,
                             environment={TABLE_VARIABLE: self.inputs.hash_table.table_name})
        return dataclasses.replace(base, statements=base.statements + self.statements(account))

    def mapping_spec(self, fn: FunctionState) -> MappingSpec:
        msk, legacy, spec = self.inputs.msk_cluster, self.config.legacy, fn.spec
        return MappingSpec(
            f"{spec.name}/{msk.cluster_name}/{msk.topic}", spec.tags, FIELD,
            function=spec.name, source_arn=msk.cluster_arn,
            batch_size=legacy.loader_batch_size, response_types=(),
            topics=(msk.topic,), starting_position=STARTING_POSITION,
            consumer_group=self.consumer_group,
            pollers=(legacy.loader_min_pollers, legacy.loader_max_pollers))

    # -- read ------------------------------------------------------------------------

    def read(self) -> LoaderState:
        # The inputs first, so that a missing one is named before anything else is read.
        msk = self.inputs.msk_cluster
        self.inputs.hash_table
        account = self.account()
        spec = self.spec(account)
        artifact = package.build_function(KEY)
        function_found = self.find_function(spec)
        fn = FunctionState.of(spec, account, self.ctx.aws.region, artifact, function_found)
        mapping = (MAPPING.find(self.api, self.mapping_spec(fn))
                   if is_known(msk.cluster_arn) else None)
        return self.state(account, artifact, function_found, {"mapping": mapping})

    def state(self, account: str, artifact: package.Artifact, function_found: dict,
              found: dict) -> LoaderState:
        """What was read, claimed and keyed for the plan: pure, so that plans are tested
        from data."""
        fn = FunctionState.of(self.spec(account), account, self.ctx.aws.region, artifact,
                              function_found)
        return LoaderState(found={key: found.get(key) for key in KEYS},
                           functions={KEY: fn}, account=account)

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: LoaderState) -> list[Change]:
        fn = state.functions[KEY]
        changes = self.plan_function(fn)
        # Lambda's pollers invoke the function as soon as the mapping exists.
        changes += [dataclasses.replace(c, run=WhenActive(c.run, fn, self.wait_active))
                    for c in MAPPING.plan(self.mapping_spec(fn), state.found.get("mapping"),
                                          "mapping")]
        return changes

    def settle(self, state: LoaderState) -> None:
        self.settle_functions(state.functions)

    # -- outputs -----------------------------------------------------------------------

    def outputs(self, state: LoaderState) -> LoaderOutputs:
        fn = state.functions[KEY]
        mapping = state.found.get("mapping")
        return LoaderOutputs(
            function_name=fn.spec.name,
            function_arn=fn.found[FUNCTION_KEY].id if fn.found.get(FUNCTION_KEY) else UNKNOWN,
            role_arn=fn.role_arn if is_known(fn.role_arn) else UNKNOWN,
            code_sha256=fn.artifact.sha256,
            mapping_uuid=mapping.id if mapping else UNKNOWN,
            consumer_group=self.consumer_group,
            batch_size=self.config.legacy.loader_batch_size)


STEP = DeployLegacyLoader
