"""Every policy runbook creates grants only what is justified, read back from the account.

Phases a1..a3 (all but integration-test, which makes a user and no policy), the
steps of a4 (event-bus, deploy-process-user-signup) and those of a5 that make policies
(hash-table, deploy-legacy-loader, deploy-user-migration) run in an empty in-process moto
account under three environment files that, between them, build every policy runbook
can make: db_migrate runs (`database.connect: lambda`), once with password login and no
database roles or RDS Proxy (the functions read the DB secret), once with IAM login
(db_migrate as master_username, Post-Confirmation and process-user-signup as their
trigger roles, straight to the cluster), and once as config/prod.yaml ships (step
db-proxy in a3: the functions log in through the proxy as their roles, and the proxy's
own role connects to the cluster as those users). Then the account is read
back, so that nothing runbook made is missed: every IAM role with its trust policy and
every inline and attached policy, every customer-managed policy, every function's and
layer's resource policy, every secret's resource policy and every VPC endpoint's policy.

Each statement must be in JUSTIFIED (by policy, owner and Sid, with exactly its actions,
resource, principal and condition), must not grant a wildcard action, may use
"Resource": "*" only for the network-interface actions of a function in a VPC (or of
the MSK mapping's pollers, for the legacy loader) and for BatchGetSecretValue in the
secrets endpoint's policy (which AWS authorizes on "*" only), and
"Principal": "*" only bound to the account; an invoke permission must bind SourceArn to
the user pool (Cognito) or the relay's schedule rule (EventBridge) and SourceAccount to
the account. docs/iam.md lists each statement
with its justification; the test renders it and fails when the file differs.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from runbook import config as config_mod
from runbook.functions import deploy as functions
from runbook.aws import policies
from runbook.functions.deploy import ENI_ACTIONS, FUNCTION_TAG
from runbook.steps import hash_table
from runbook.steps import deploy_legacy_loader as loader
from runbook.steps import vpc_integrate
from tests.conftest import REGION, REPO
from tests.functional.conftest import run_steps

DOCS = REPO / "docs" / "iam.md"
ACCOUNT = "123456789012"
FUNCTIONS = ("pre_signup", "post_confirmation", "db_migrate", "process_user_signup",
             "legacy_loader", "user_migration")
IN_VPC = ("post_confirmation", "db_migrate", "process_user_signup")
# The steps of phase a4 that make policies, run after a1..a3 (config/prod.yaml's phase a4 also
# has registration-test, which makes a user and no policy).
A4 = ["event-bus", "deploy-process-user-signup"]
# The steps of phase a5 that make policies; msk-cluster is not built in this version: a
# cluster made in moto stands for it (tests/msk_outputs.py).
A5 = ["hash-table", "deploy-legacy-loader", "deploy-user-migration"]
MSK_CLUSTER = "matbakh-prod-msk"
PRINCIPAL_ACCOUNT = {"StringEquals": {"aws:PrincipalAccount": "{account}"}}

# The environment files, as changes to config/prod.yaml's `database` section; those in
# WITHOUT_PROXY also leave step db-proxy out of phase a3 (the functions log in to the
# cluster directly). config/prod.yaml as shipped logs them in through the proxy.
CONFIGURATIONS = {
    "password login": {"connect": "lambda", "roles": {}},
    "IAM login": {"connect": "lambda", "auth": "iam",
                  "roles": {"matbakh_post_confirmation": {"trigger": "post-confirmation"},
                            "matbakh_signups": {"trigger": "process-user-signup"}}},
    "through the proxy": {"connect": "lambda"},
}
WITHOUT_PROXY = ("password login", "IAM login")
# The owner of the RDS Proxy's role (step db-proxy), as function keys own theirs.
PROXY = "rds_proxy"


@dataclass(frozen=True)
class Why:
    """One statement runbook may create, and why it needs it."""

    policy: str                     # execution role, trust, invoke permission, endpoint
    owners: tuple[str, ...]         # the function keys or endpoint services it is for
    sid: str | None
    actions: tuple[str, ...]
    resource: str | tuple | None    # with placeholders (see Facts.placeholders)
    reason: str
    principal: str | None = None
    condition: dict | None = None


JUSTIFIED = (
    Why("trust", FUNCTIONS, None, ("sts:AssumeRole",), None,
        "Only the Lambda service may assume an execution role, to run its function.",
        principal="lambda.amazonaws.com"),
    Why("execution role", FUNCTIONS, "Logs", ("logs:CreateLogStream", "logs:PutLogEvents"),
        "{its log group}:*",
        "Write the function's log lines, to streams of its own log group only. No "
        "logs:CreateLogGroup: runbook creates the group, with its retention."),
    Why("execution role", IN_VPC, "VpcNetworkInterfaces", tuple(ENI_ACTIONS), "*",
        "Run in the private subnets: Lambda creates, describes and deletes the function's "
        "network interfaces with its execution role. AWS requires \"Resource\": \"*\" "
        "(DescribeNetworkInterfaces works only on *, and the interfaces do not exist "
        "before Lambda makes them); the EC2 actions of AWSLambdaVPCAccessExecutionRole."),
    Why("execution role", ("legacy_loader",), "DescribeCluster", tuple(loader.DESCRIBE_ACTIONS),
        "{MSK cluster}",
        "Lambda's MSK pollers find the cluster's brokers with the execution role: the "
        "kafka describe actions of AWSLambdaMSKExecutionRole, on the one cluster."),
    Why("execution role", ("legacy_loader",), "PollerNetwork",
        tuple(loader.POLLER_NETWORK_ACTIONS), "*",
        "The MSK mapping's pollers make, find and remove their network interfaces in the "
        "cluster's subnets, with the cluster's security group, with the execution role "
        "(the EC2 actions of AWSLambdaMSKExecutionRole); the function itself is not in the "
        "VPC. AWS requires \"Resource\": \"*\" (the Describe actions work only on *, and "
        "the interfaces do not exist before Lambda makes them)."),
    Why("execution role", ("legacy_loader",), "ConnectToCluster",
        tuple(loader.CLUSTER_ACTIONS), "{MSK cluster}",
        "The pollers log in to the cluster by IAM (its data plane's access control) and "
        "read its dynamic configuration: on the one cluster."),
    Why("execution role", ("legacy_loader",), "ReadLegacyTopic", tuple(loader.TOPIC_ACTIONS),
        "arn:aws:kafka:{region}:{account}:topic/matbakh-prod-msk/{MSK cluster uuid}/legacy-users",
        "The pollers read the legacy users' topic: that one topic, no write."),
    Why("execution role", ("legacy_loader",), "CommitInLoaderGroup",
        tuple(loader.GROUP_ACTIONS),
        "arn:aws:kafka:{region}:{account}:group/matbakh-prod-msk/{MSK cluster uuid}/"
        "matbakh-prod-legacy-user-hashes-loader",
        "The pollers join the loader's consumer group and commit its offsets after each "
        "stored batch: that one group."),
    Why("execution role", ("legacy_loader",), "WriteHashes", ("dynamodb:BatchWriteItem",),
        "{hash table}",
        "Store the hashes, 25 distinct e-mails a call: BatchWriteItem on the one table; "
        "the loader makes no other DynamoDB call (no read, no delete)."),
    Why("execution role", ("legacy_loader",), "DecryptTableKey", ("kms:Decrypt",),
        "{hash table key}",
        "The table is encrypted with its own KMS key, and DynamoDB decrypts the table key "
        "on behalf of the principal writing: Decrypt on that key, only through DynamoDB "
        "(kms:ViaService). No Encrypt or GenerateDataKey: DynamoDB made the table key "
        "when the table was created.",
        condition={"StringEquals": {"kms:ViaService": "dynamodb.{region}.amazonaws.com"}}),
    Why("execution role", ("user_migration",), "ReadHashes", ("dynamodb:GetItem",),
        "{hash table}",
        "Read the signing-in user's staged hash and profile: GetItem on the one table; the "
        "UserMigration trigger makes no other DynamoDB call (no Scan or Query, no write)."),
    Why("execution role", ("user_migration",), "DecryptTableKey", ("kms:Decrypt",),
        "{hash table key}",
        "The table is encrypted with its own KMS key, and DynamoDB decrypts the table key "
        "on behalf of the principal reading: Decrypt on that key, only through DynamoDB "
        "(kms:ViaService), so the hashes cannot be decrypted outside a GetItem IAM allowed.",
        condition={"StringEquals": {"kms:ViaService": "dynamodb.{region}.amazonaws.com"}}),
    Why("trust", (PROXY,), None, ("sts:AssumeRole",), None,
        "Only the RDS service may assume the proxy's role, to log in to the cluster for "
        "the proxy.", principal="rds.amazonaws.com"),
    Why("proxy role", (PROXY,), "ConnectAsTheDatabaseUsers", ("rds-db:connect",),
        ("arn:aws:rds-db:{region}:{account}:dbuser:{cluster resource id}/lambda_writer",
         "arn:aws:rds-db:{region}:{account}:dbuser:{cluster resource id}/"
         "matbakh_post_confirmation"),
        "End-to-end IAM (DefaultAuthScheme IAM_AUTH): the proxy logs in to the cluster by "
        "IAM as the user a client logged in as, so it may connect as exactly the users of "
        "database.roles, on this cluster only; no secret, and never as the master user."),
    Why("execution role", ("post_confirmation",), "ConnectThroughProxy", ("rds-db:connect",),
        "arn:aws:rds-db:{region}:{account}:dbuser:{proxy resource id}/matbakh_post_confirmation",
        "Log in through the RDS Proxy by IAM as the trigger's database role (database.roles, "
        "trigger: post-confirmation): through this proxy (its prx- id) as that one user; "
        "no secret."),
    Why("execution role", ("process_user_signup",), "ConnectThroughProxy", ("rds-db:connect",),
        "arn:aws:rds-db:{region}:{account}:dbuser:{proxy resource id}/lambda_writer",
        "Log in through the RDS Proxy by IAM as the consumer's database role "
        "(database.roles, trigger: process-user-signup): through this proxy (its prx- id) "
        "as that one user; no secret."),
    Why("execution role", ("post_confirmation", "process_user_signup"), "ReadDbSecret",
        ("secretsmanager:GetSecretValue",), "{DB secret}",
        "Log in to the database with the DB secret, when no database role is declared for "
        "the function (trigger: <function>): that one secret, read only."),
    Why("execution role", ("process_user_signup",), "ConnectAsDbUser", ("rds-db:connect",),
        "arn:aws:rds-db:{region}:{account}:dbuser:{cluster resource id}/matbakh_signups",
        "Log in by IAM as the consumer's database role (database.roles, trigger: "
        "process-user-signup); no secret."),
    Why("execution role", ("process_user_signup",), "ConsumeSignupQueue",
        ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"),
        "{signup queue}",
        "Lambda's poller (the SQS event source mapping) receives batches from the signup "
        "queue, deletes the messages the function stored and reads the queue's attributes, "
        "with the function's execution role: the SQS actions of "
        "AWSLambdaSQSQueueExecutionRole, on that one queue. Not its DLQ, and no "
        "sqs:SendMessage."),
    Why("invoke permission", ("process_user_signup",), "runbook-relay-schedule",
        ("lambda:InvokeFunction",), "{this function}",
        "EventBridge invokes the consumer every 5 minutes to relay registrations left in "
        "the outbox when Post-Confirmation's PutEvents failed: from the relay's schedule "
        "rule only (SourceArn), in this account only (SourceAccount). The SQS mapping needs "
        "no permission (the poller uses the execution role).",
        principal="events.amazonaws.com"),
    Why("execution role", ("post_confirmation",), "PublishRegistrations", ("events:PutEvents",),
        "arn:aws:events:{region}:{account}:event-bus/matbakh-prod-events",
        "With phase a4 in the file, publish each sign-up's user.registered event: on the "
        "environment's own bus only, not the default bus or another's. The trigger never "
        "reads the bus, its rules or its targets."),
    Why("execution role", ("post_confirmation",), "ConnectAsDbUser", ("rds-db:connect",),
        "arn:aws:rds-db:{region}:{account}:dbuser:{cluster resource id}/matbakh_post_confirmation",
        "Log in by IAM as the trigger's database role (database.roles, trigger: "
        "post-confirmation), which holds only the upsert's column grants; no secret."),
    Why("execution role", ("db_migrate",), "ReadDbSecret", ("secretsmanager:GetSecretValue",),
        "{DB secret}",
        "Run the migrations as the master user with the DB secret (database.auth: "
        "password): that one secret, read only."),
    Why("execution role", ("db_migrate",), "ConnectAsDbUser", ("rds-db:connect",),
        "arn:aws:rds-db:{region}:{account}:dbuser:{cluster resource id}/postgres",
        "Run the migrations by IAM login as master_username (database.auth: iam); no "
        "secret."),
    Why("invoke permission", ("pre_signup",), "runbook-cognito-pre-signup",
        ("lambda:InvokeFunction",), "{this function}",
        "Cognito calls the Pre-SignUp trigger: for this user pool only (SourceArn), in this "
        "account only (SourceAccount).",
        principal="cognito-idp.amazonaws.com"),
    Why("invoke permission", ("post_confirmation",), "runbook-cognito-post-confirmation",
        ("lambda:InvokeFunction",), "{this function}",
        "Cognito calls the Post-Confirmation trigger, and the same function as the "
        "Post-Authentication trigger (phase a5: it links a migrated user's legacy profile "
        "after the migration sign-in, which fires no Post-Confirmation): for this user pool "
        "only (SourceArn), in this account only (SourceAccount).",
        principal="cognito-idp.amazonaws.com"),
    Why("invoke permission", ("user_migration",), "runbook-cognito-user-migration",
        ("lambda:InvokeFunction",), "{this function}",
        "Cognito calls the UserMigration trigger when an unknown user signs in with a "
        "password: for this user pool only (SourceArn), in this account only "
        "(SourceAccount).",
        principal="cognito-idp.amazonaws.com"),
    Why("endpoint", ("secretsmanager",), "ReadTheSecrets",
        ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"),
        ("arn:aws:secretsmanager:{region}:{account}:secret:matbakh-app-config-??????",
         "arn:aws:secretsmanager:{region}:{account}:secret:matbakh-db-postgres-??????"),
        "Read the environment's two secrets through the endpoint (with private DNS, every "
        "call from the VPC passes it): the functions read the DB secret, and runbook run "
        "inside the VPC reads both. Principals of this account only.",
        principal="*", condition=PRINCIPAL_ACCOUNT),
    Why("endpoint", ("secretsmanager",), "ReadTheSecretsInOneCall",
        vpc_integrate.BATCH_READ, "*",
        "store-secrets reads both secrets' values in one BatchGetSecretValue, through the "
        "endpoint for runbook run inside the VPC. AWS authorizes that action on \"*\" only "
        "and answers a secret's value only where GetSecretValue on that secret is allowed "
        "too (ReadTheSecrets: the environment's two), so it reads nothing more. Principals "
        "of this account only.",
        principal="*", condition=PRINCIPAL_ACCOUNT),
    Why("endpoint", ("secretsmanager",), "KeepTheSecrets",
        ("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
         "secretsmanager:RestoreSecret", "secretsmanager:TagResource"),
        ("arn:aws:secretsmanager:{region}:{account}:secret:matbakh-app-config-??????",
         "arn:aws:secretsmanager:{region}:{account}:secret:matbakh-db-postgres-??????"),
        "store-secrets' writes to the two secrets, for runbook run inside the VPC "
        "(database.connect: direct). Principals of this account only.",
        principal="*", condition=PRINCIPAL_ACCOUNT),
    Why("endpoint", ("rds-data",), "DataApiOnTheCluster",
        ("rds-data:BatchExecuteStatement", "rds-data:BeginTransaction",
         "rds-data:CommitTransaction", "rds-data:ExecuteStatement",
         "rds-data:RollbackTransaction"),
        "arn:aws:rds:{region}:{account}:cluster:matbakh-prod",
        "The RDS Data API endpoint of the A3 runbook: statements and transactions on the "
        "environment's cluster only. Principals of this account only.",
        principal="*", condition=PRINCIPAL_ACCOUNT),
    Why("endpoint", ("events",), "PublishRegistrations", ("events:PutEvents",),
        "arn:aws:events:{region}:{account}:event-bus/matbakh-prod-events",
        "Post-Confirmation publishes user.registered from the private subnets through the "
        "EventBridge endpoint: PutEvents on the environment's own bus only. Principals of "
        "this account only.",
        principal="*", condition=PRINCIPAL_ACCOUNT),
    Why("endpoint", ("events",), "KeepTheRouting",
        ("events:CreateEventBus", "events:DescribeEventBus", "events:DescribeRule",
         "events:ListTagsForResource", "events:ListTargetsByRule", "events:PutRule",
         "events:PutTargets", "events:TagResource"),
        ("arn:aws:events:{region}:{account}:event-bus/matbakh-prod-events",
         "arn:aws:events:{region}:{account}:rule/matbakh-prod-events/matbakh-prod-user-registered",
         "{relay rule}"),
        "event-bus's and deploy-process-user-signup's calls, and registration-test's "
        "read-back, for runbook run inside the VPC (database.connect: direct), where every "
        "EventBridge call passes the endpoint: on the environment's bus, its rule and the "
        "relay's schedule only; no delete, no other bus or rule. Principals of this account "
        "only.",
        principal="*", condition=PRINCIPAL_ACCOUNT),
    Why("key policy", ("hash table key",), "KeyAdministration", hash_table.KEY_ADMINISTRATION,
        "*",
        "The account administers the legacy users' hash table key: what runbook's hash-table "
        "step does to it (alias, rotation, tags, its policy, describe) and an operator's way "
        "out (disable, schedule or cancel deletion, revoke a grant). No Encrypt, Decrypt, "
        "GenerateDataKey or CreateGrant, and no DisableKeyRotation. The account as principal "
        "leaves who may do it to IAM, and keeps the key manageable (KMS's lockout check). "
        "In a key policy \"Resource\": \"*\" is the key itself.",
        principal='{"AWS": "arn:aws:iam::{account}:root"}'),
    Why("key policy", ("hash table key",), "UseThroughDynamoDB",
        hash_table.USE_THROUGH_DYNAMODB, "*",
        "The key encrypts and decrypts the hash table's data only through DynamoDB in this "
        "region (kms:ViaService), for callers of this account (kms:CallerAccount), whose IAM "
        "still decides: the actions of AWS's own aws/dynamodb key policy. Nobody encrypts or "
        "decrypts with it directly, so a hash leaves the table only through a DynamoDB read "
        "that IAM allowed.",
        principal='{"AWS": "arn:aws:iam::{account}:root"}',
        condition={"StringEquals": {"kms:CallerAccount": "{account}",
                                    "kms:ViaService": "dynamodb.{region}.amazonaws.com"}}),
)


# -- reading the account back ----------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    where: str                  # which policy of which resource
    policy: str                 # the kind of policy: a `Why.policy`, or what else it is
    owner: str                  # function key or endpoint service; "?" when not known
    body: dict


@dataclass
class Facts:
    """What a statement is judged against: the account's own ids."""

    account: str
    region: str
    placeholders: list[tuple[str, str]] = field(default_factory=list)   # (value, shown as)
    own: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # per owner: its ARN...
    pool_arn: str = ""
    relay_rule_arn: str = ""
    in_vpc: set[str] = field(default_factory=set)
    proxies: list[dict] = field(default_factory=list)   # DescribeDBProxies' records

    def shown(self, value, owner: str):
        """`value` (a string, or a list of them) with the account's ids as placeholders."""
        if value is None:
            return None
        if isinstance(value, list):
            shown = tuple(sorted(self.shown(v, owner) for v in value))
            return shown[0] if len(shown) == 1 else shown
        for actual, placeholder in self.own.get(owner, []) + self.placeholders:
            value = value.replace(actual, placeholder)
        return value.replace(self.account, "{account}").replace(self.region, "{region}")


def read_back(results: dict) -> tuple[list[Statement], Facts]:
    """Every policy statement in the (moto) account, and the facts to judge them by."""
    iam, lam = client("iam"), client("lambda")
    ec2, sm = client("ec2"), client("secretsmanager")
    outputs = {name: r.outputs for name, r in results.items()}
    facts = Facts(ACCOUNT, REGION, pool_arn=outputs["cognito"]["user_pool_arn"],
                  relay_rule_arn=outputs["deploy-process-user-signup"]["relay_rule_arn"])
    facts.placeholders = [
        (outputs["event-bus"]["queue_arn"], "{signup queue}"),
        (facts.relay_rule_arn, "{relay rule}"),
        (outputs["store-secrets"]["db_secret_arn"], "{DB secret}"),
        (outputs["store-secrets"]["app_config_secret_arn"], "{app-config secret}"),
        (outputs["cognito"]["user_pool_arn"], "{user pool}"),
        (outputs["database"]["cluster_resource_id"], "{cluster resource id}"),
        (outputs["hash-table"]["table_arn"], "{hash table}"),
        (outputs["hash-table"]["key_arn"], "{hash table key}")]
    for cluster in client("kafka").list_clusters_v2()["ClusterInfoList"]:
        facts.placeholders += [(cluster["ClusterArn"], "{MSK cluster}"),
                               (cluster["ClusterArn"].rsplit("/", 1)[-1], "{MSK cluster uuid}")]
    statements: list[Statement] = []

    owner_of_role = {}
    rds = client("rds")
    facts.proxies = [p for page in rds.get_paginator("describe_db_proxies").paginate()
                     for p in page["DBProxies"]]
    for proxy in facts.proxies:
        # Its prx- id, the last segment of its ARN, as read from the account.
        facts.placeholders.append((proxy["DBProxyArn"].rsplit(":", 1)[-1],
                                   "{proxy resource id}"))
        owner_of_role[proxy["RoleArn"]] = PROXY
    for page in lam.get_paginator("list_functions").paginate():
        for fn in page["Functions"]:
            key = lam.list_tags(Resource=fn["FunctionArn"])["Tags"].get(FUNCTION_TAG, "?")
            owner_of_role[fn["Role"]] = key
            if (fn.get("VpcConfig") or {}).get("SubnetIds"):
                facts.in_vpc.add(key)
            log_group = (f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
                         f"/aws/lambda/{fn['FunctionName']}")
            facts.own[key] = [(fn["FunctionArn"], "{this function}"),
                              (log_group, "{its log group}")]
            try:
                policy = json.loads(lam.get_policy(FunctionName=fn["FunctionName"])["Policy"])
            except lam.exceptions.ResourceNotFoundException:
                policy = {"Statement": []}
            statements += _each(f"function {fn['FunctionName']}: resource policy",
                                "invoke permission", key, policy)

    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            name, owner = role["RoleName"], owner_of_role.get(role["Arn"], "?")
            statements += _each(f"role {name}: trust policy", "trust", owner,
                                policies.document(role["AssumeRolePolicyDocument"]))
            for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)
                statements += _each(f"role {name}: inline policy {policy_name}",
                                    "proxy role" if owner == PROXY else "execution role", owner,
                                    policies.document(document["PolicyDocument"]))
            for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                statements += _each(f"role {name}: attached {attached['PolicyArn']}",
                                    "attached policy", owner, _managed(iam, attached["PolicyArn"]))
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for managed in page["Policies"]:
            statements += _each(f"managed policy {managed['PolicyName']}", "managed policy", "?",
                                _managed(iam, managed["Arn"]))

    for page in lam.get_paginator("list_layers").paginate():
        for layer in page["Layers"]:
            for version in lam.list_layer_versions(LayerName=layer["LayerName"])["LayerVersions"]:
                try:
                    policy = json.loads(lam.get_layer_version_policy(
                        LayerName=layer["LayerName"], VersionNumber=version["Version"])["Policy"])
                except lam.exceptions.ResourceNotFoundException:
                    continue
                statements += _each(f"layer {layer['LayerName']}:{version['Version']}",
                                    "layer policy", "?", policy)

    for page in sm.get_paginator("list_secrets").paginate():
        for secret in page["SecretList"]:
            policy = sm.get_resource_policy(SecretId=secret["ARN"]).get("ResourcePolicy")
            if policy:
                statements += _each(f"secret {secret['Name']}: resource policy",
                                    "secret policy", "?", json.loads(policy))

    kms = client("kms")
    for page in kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            if meta.get("KeyManager") != "CUSTOMER":
                continue
            aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]]
            owner = "hash table key" if meta["Arn"] == outputs["hash-table"]["key_arn"] else "?"
            statements += _each(f"KMS key {', '.join(aliases) or key['KeyId']}: key policy",
                                "key policy", owner, json.loads(kms.get_key_policy(
                                    KeyId=key["KeyId"], PolicyName="default")["Policy"]))

    for page in ec2.get_paginator("describe_vpc_endpoints").paginate():
        for endpoint in page["VpcEndpoints"]:
            service = endpoint["ServiceName"].removeprefix(f"com.amazonaws.{REGION}.")
            statements += _each(f"VPC endpoint {service} ({endpoint['VpcEndpointId']}): policy",
                                "endpoint", service, json.loads(endpoint["PolicyDocument"]))
    return statements, facts


def _each(where: str, policy: str, owner: str, document: dict) -> list[Statement]:
    found = document.get("Statement", [])
    return [Statement(where, policy, owner, s)
            for s in (found if isinstance(found, list) else [found])]


def _managed(iam, arn: str) -> dict:
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return policies.document(iam.get_policy_version(
        PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])


def client(service):
    return boto3.client(service, region_name=REGION)


# -- judging a statement ------------------------------------------------------------------------

def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def principal_of(body: dict) -> str | None:
    value = body.get("Principal")
    if isinstance(value, dict) and list(value) == ["Service"]:
        return value["Service"]
    return value if value is None or isinstance(value, str) else json.dumps(value, sort_keys=True)


def justification(statement: Statement, facts: Facts) -> tuple[Why | None, str]:
    """The entry of JUSTIFIED that covers `statement`, or None and why none does."""
    body = statement.body
    candidates = [w for w in JUSTIFIED if w.policy == statement.policy
                  and statement.owner in w.owners and w.sid == body.get("Sid")]
    if not candidates:
        return None, "no justification for this policy, owner and Sid"
    [why] = candidates
    if sorted(as_list(body.get("Action"))) != sorted(why.actions):
        return None, "its actions differ from the justified ones"
    if facts.shown(body.get("Resource"), statement.owner) != why.resource:
        return None, "its resource differs from the justified one"
    if facts.shown(principal_of(body), statement.owner) != why.principal:
        return None, "its principal differs from the justified one"
    condition = _shown_condition(body.get("Condition"), statement.owner, facts)
    if why.condition is not None and condition != why.condition:
        return None, "its condition differs from the justified one"
    return why, ""


def _shown_condition(condition: dict | None, owner: str, facts: Facts) -> dict | None:
    if condition is None:
        return None
    return {op: {key: facts.shown(value, owner) for key, value in pairs.items()}
            for op, pairs in condition.items()}


def problems(statements: list[Statement], facts: Facts) -> list[str]:
    """What is wrong with `statements`, one line each; [] when all is justified."""
    found = []
    for statement in statements:
        body = statement.body
        label = f"{statement.where} [{body.get('Sid') or 'no Sid'}]"
        actions = as_list(body.get("Action"))
        for key in ("NotAction", "NotResource", "NotPrincipal"):
            if key in body:
                found.append(f"{label}: {key} grants everything but what it names")
        wildcards = [a for a in actions if "*" in a]
        if wildcards:
            found.append(f"{label}: wildcard action {', '.join(wildcards)}")
        if "*" in as_list(body.get("Resource")) and not (
                statement.policy == "execution role" and statement.owner in facts.in_vpc
                and set(actions) <= set(ENI_ACTIONS)) and not (
                statement.policy == "execution role" and statement.owner == "legacy_loader"
                and set(actions) <= set(loader.POLLER_NETWORK_ACTIONS)) and not (
                statement.policy == "endpoint"
                and set(actions) <= set(vpc_integrate.BATCH_READ)) and not (
                statement.policy == "key policy"):  # a key policy's "*" is the key itself
            found.append(f'{label}: "Resource": "*" for actions AWS does not require it for')
        if statement.policy == "invoke permission":
            found += _unbound_invoke(label, body, facts)
        account = (body.get("Condition") or {}).get("StringEquals", {}).get(
            "aws:PrincipalAccount")
        if principal_of(body) == "*" and account != facts.account:
            found.append(f'{label}: "Principal": "*" is not bound to the account')
        why, mismatch = justification(statement, facts)
        if why is None:
            found.append(f"{label}: {mismatch}: {', '.join(actions)} on "
                         f"{facts.shown(body.get('Resource'), statement.owner)}")
    return found


def _unbound_invoke(label: str, body: dict, facts: Facts) -> list[str]:
    """A service may invoke a function only from our pool, or EventBridge from our relay
    rule (SourceArn, exactly), in our account (SourceAccount): else any account's pool or
    rule could call it (confused deputy)."""
    condition = body.get("Condition") or {}
    source_arn = {**condition.get("ArnLike", {}), **condition.get("ArnEquals", {})}.get(
        "AWS:SourceArn")
    account = condition.get("StringEquals", {}).get("AWS:SourceAccount")
    found = []
    if principal_of(body) == "events.amazonaws.com":
        if not facts.relay_rule_arn or source_arn != facts.relay_rule_arn:
            found.append(f"{label}: SourceArn is not bound to the relay rule")
    elif source_arn != facts.pool_arn:
        found.append(f"{label}: SourceArn is not bound to the user pool")
    if account != facts.account:
        found.append(f"{label}: SourceAccount is not bound to the account")
    return found


# -- the report ---------------------------------------------------------------------------------

def render(seen: dict[str, list[tuple[Statement, Facts]]]) -> str:
    """docs/iam.md: every statement with its justification, and where it was seen."""
    rows: dict[tuple, list[str]] = {}
    for configuration, statements in seen.items():
        for statement, facts in statements:
            why, _ = justification(statement, facts)
            body = statement.body
            condition = _shown_condition(body.get("Condition"), statement.owner, facts)
            row = (statement.policy, statement.owner, body.get("Sid") or "",
                   ", ".join(sorted(as_list(body.get("Action")))),
                   _cell(facts.shown(body.get("Resource"), statement.owner)),
                   facts.shown(principal_of(body), statement.owner) or "",
                   json.dumps(condition, sort_keys=True) if condition else "",
                   why.reason if why else "**UNJUSTIFIED**")
            configurations = rows.setdefault(row, [])
            if configuration not in configurations:
                configurations.append(configuration)
    lines = [
        "# IAM policies runbook creates",
        "",
        "Generated by `tests/functional/test_least_privilege.py`, which runs phases a1-a3, "
        "a4's steps and a5's",
        "(hash-table, deploy-legacy-loader, deploy-user-migration) in an empty moto account "
        "under three",
        "environment files and reads back every role, inline and attached policy, function, "
        "layer and",
        "secret resource policy, VPC endpoint policy and KMS key policy. Ids are shown as",
        "placeholders. The test fails when this file differs from what it renders; "
        "regenerate it with",
        "`RUNBOOK_UPDATE_DOCS=1 pytest tests/functional/test_least_privilege.py`.",
        "",
        "These are the only grants runbook leaves: any other inline policy or attached "
        "managed policy",
        "that allows something, any other statement in runbook's policy on an execution "
        "role, and any",
        "other endpoint policy, is drift that `runbook status --live` shows and `runbook "
        "run` removes.",
        "An inline or managed policy whose statements all deny (a guardrail on every role) "
        "grants",
        "nothing and stays: removing it would widen what the function may do. Of a managed "
        "policy,",
        "runbook reads the default version.",
        "",
        "Environment files: " + "; ".join(
            f"**{name}** (database: {json.dumps(change, sort_keys=True)}"
            f"{'; without step db-proxy' if name in WITHOUT_PROXY else ''})"
            for name, change in CONFIGURATIONS.items()) + ".",
        "",
        "| policy | of | Sid | actions | resource | principal | condition | seen with "
        "| why |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, configurations in sorted(rows.items()):
        cells = [*row[:7], ", ".join(configurations), row[7]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(resource) -> str:
    if resource is None:
        return ""
    return ", ".join(resource) if isinstance(resource, tuple) else resource


# -- the tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seen(session_postgres, tmp_path_factory) -> dict[str, list[tuple[Statement, Facts]]]:
    """{configuration: [(statement, facts)]}: each environment file applied to an empty
    account and a fresh database, and the account read back."""
    import secrets

    import psycopg
    import yaml
    from psycopg.conninfo import make_conninfo

    from tests.conftest import PROD_CONFIG, no_real_aws

    out = {}
    pg_server = session_postgres.ensure()
    with pytest.MonkeyPatch.context() as mp:
        no_real_aws(mp)
        for name, change in CONFIGURATIONS.items():
            data = yaml.safe_load(PROD_CONFIG.read_text())
            data["database"].update(change)
            data["phases"]["a4"] = A4
            data["phases"]["a5"] = ["hash-table", "msk-cluster", "deploy-legacy-loader",
                                    "deploy-user-migration"]
            if name in WITHOUT_PROXY:
                data["phases"]["a3"].remove("db-proxy")
            path = tmp_path_factory.mktemp("config") / "prod.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            config = config_mod.load(path)
            database = f"rbtest_{secrets.token_hex(4)}"
            with psycopg.connect(pg_server, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {database}")
            try:
                steps = [s for s in config.steps_through("a4") if s != "integration-test"]
                with mock_aws():
                    results, _ = run_steps(config, steps + A5,
                                           make_conninfo(pg_server, dbname=database),
                                           upstream={"msk-cluster": msk_cluster()})
                    failed = {n: r.error for n, r in results.items() if r.status != "ok"}
                    assert not failed, failed
                    statements, facts = read_back(results)
            finally:
                with psycopg.connect(pg_server, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            out[name] = [(s, facts) for s in statements]
    return out


def msk_cluster():
    """msk-cluster's outputs for a cluster made in moto (the step is not built yet)."""
    from tests.msk_outputs import for_cluster

    arn = client("kafka").create_cluster_v2(ClusterName=MSK_CLUSTER, Provisioned={
        "BrokerNodeGroupInfo": {"InstanceType": "kafka.m5.large",
                                "ClientSubnets": ["subnet-pub-a", "subnet-pub-b"]},
        "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2})["ClusterArn"]
    return for_cluster(arn, MSK_CLUSTER, region=REGION, account=ACCOUNT)


def test_every_role_and_function_runbook_makes_is_read_back(seen):
    for name, statements in seen.items():
        wheres = {s.where for s, _ in statements}
        for fn in ("pre-signup", "post-confirmation", "db-migrate", "process-user-signup",
                   "legacy-loader", "user-migration"):
            assert f"role matbakh-cognito-{fn}-role: trust policy" in wheres, (name, fn)
            assert f"role matbakh-cognito-{fn}-role: inline policy runbook" in wheres, (name, fn)
        owners = {(s.policy, s.owner) for s, _ in statements}
        assert {("invoke permission", "pre_signup"),
                ("invoke permission", "post_confirmation"),
                ("invoke permission", "process_user_signup"),
                ("invoke permission", "user_migration")} <= owners, name
        assert ("invoke permission", "db_migrate") not in owners  # only runbook invokes it
        assert all(s.owner != "?" for s, _ in statements), name


def test_no_statement_grants_a_wildcard_or_goes_unjustified(seen):
    found = [line for statements in seen.values()
             for line in problems([s for s, _ in statements], statements[0][1])]
    table = render(seen)
    print("\n" + table)
    assert found == [], "\n".join(found)


def test_docs_iam_md_lists_every_statement_with_its_justification(seen):
    table = render(seen)
    assert "**UNJUSTIFIED**" not in table
    if os.environ.get("RUNBOOK_UPDATE_DOCS"):
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(table)
    assert DOCS.exists() and DOCS.read_text() == table, (
        "docs/iam.md differs from the policies runbook creates; regenerate it with "
        "RUNBOOK_UPDATE_DOCS=1 pytest tests/functional/test_least_privilege.py")


def test_through_the_proxy_no_function_reads_the_master_secret_and_each_connects_as_itself(
        seen):
    statements = seen["through the proxy"]
    facts = statements[0][1]
    [proxy] = facts.proxies
    assert proxy["RequireTLS"] is True
    assert proxy.get("DefaultAuthScheme") == "IAM_AUTH"
    reads_secret = {s.owner for s, _ in statements if s.policy == "execution role"
                    and any(a.startswith("secretsmanager:") for a in as_list(s.body.get("Action")))}
    assert reads_secret == {"db_migrate"}          # the master login: migrations only
    prx = proxy["DBProxyArn"].rsplit(":", 1)[-1]
    assert prx.startswith("prx-")
    for function, user in (("post_confirmation", "matbakh_post_confirmation"),
                           ("process_user_signup", "lambda_writer")):
        connects = [s.body for s, _ in statements if s.owner == function
                    and "rds-db:connect" in as_list(s.body.get("Action"))]
        assert [c["Resource"] for c in connects] == [
            f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{prx}/{user}"], function


def test_each_justification_is_used(seen):
    used = {id(justification(s, f)[0]) for statements in seen.values() for s, f in statements}
    unused = [f"{w.policy} {w.owners} {w.sid}" for w in JUSTIFIED if id(w) not in used]
    assert unused == [], "JUSTIFIED lists statements runbook no longer makes"


def test_the_one_resource_star_statement_says_aws_requires_it():
    """The code that grants "Resource": "*" is the ENI statement, and says why."""
    root = Path(functions.__file__).parents[1]
    code = {p.relative_to(root).as_posix(): [line for line in p.read_text().splitlines()
                                             if not line.lstrip().startswith("#")]
            for p in root.rglob("*.py")
            # The sandbox's own code makes nothing in an AWS account: the crash sweep plants
            # stand-ins in moto (a role to adopt, say).
            if p.relative_to(root).parts[0] != "sandbox"}
    granting = {name: sum('"Resource": "*"' in line for line in lines)
                for name, lines in code.items() if any('"Resource": "*"' in x for x in lines)}
    assert granting == {"functions/deploy.py": 1, "steps/deploy_legacy_loader.py": 1,
                        "steps/hash_table.py": 2}  # its key policy: "*" is the key itself
    assert 'a key policy the resource "*" is\n    the key itself' in inspect.getsource(
        hash_table.key_policy)
    assert '"Action": ENI_ACTIONS, "Resource": "*"' in inspect.getsource(
        functions.FunctionState.policy)
    assert 'POLLER_NETWORK_ACTIONS,\n             "Resource": "*"' in inspect.getsource(
        loader.DeployLegacyLoader.statements)
    for module, constant in ((functions, "ENI_ACTIONS ="), (loader, "POLLER_NETWORK_ACTIONS =")):
        lines = Path(module.__file__).read_text().splitlines()
        above = lines[:next(i for i, line in enumerate(lines) if line.startswith(constant))]
        comment = []
        while above and above[-1].startswith("#"):
            comment.insert(0, above.pop())
        text = " ".join(comment)
        assert '"Resource": "*"' in text and "AWS requires" in text, constant


# -- the checks find what they are for ------------------------------------------------------------

FACTS = Facts(ACCOUNT, REGION, pool_arn=f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/p",
              in_vpc={"post_confirmation"},
              own={"post_confirmation": [(f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
                                          "/aws/lambda/f", "{its log group}")]})


@pytest.mark.parametrize("body, expected", [
    ({"Sid": "Logs", "Effect": "Allow", "Action": "*", "Resource": "*"},
     "wildcard action *"),
    ({"Sid": "Logs", "Effect": "Allow", "Action": ["logs:*"],
      "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f:*"},
     "wildcard action logs:*"),
    ({"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
      "Resource": "*"},
     '"Resource": "*" for actions AWS does not require it for'),
    ({"Sid": "ReadDbSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
      "Resource": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:other"},
     "its resource differs from the justified one"),
    ({"Sid": "Extra", "Effect": "Allow", "Action": "s3:GetObject",
      "Resource": "arn:aws:s3:::bucket/key"},
     "no justification for this policy, owner and Sid"),
    ({"Sid": "Logs", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
     "NotAction grants everything but what it names"),
], ids=["action-star", "service-star", "resource-star", "other-resource", "unjustified",
        "not-action"])
def test_an_over_broad_or_unjustified_statement_is_found(body, expected):
    statement = Statement("role f-role: inline policy runbook", "execution role",
                          "post_confirmation", body)
    assert any(expected in line for line in problems([statement], FACTS)), expected


def test_an_invoke_permission_without_source_account_is_found():
    body = {"Sid": "runbook-cognito-post-confirmation", "Effect": "Allow",
            "Principal": {"Service": "cognito-idp.amazonaws.com"},
            "Action": "lambda:InvokeFunction", "Resource": "{this function}",
            "Condition": {"ArnLike": {"AWS:SourceArn": FACTS.pool_arn}}}
    statement = Statement("function f: resource policy", "invoke permission",
                          "post_confirmation", body)
    assert problems([statement], FACTS) == [
        "function f: resource policy [runbook-cognito-post-confirmation]: SourceAccount is "
        "not bound to the account"]


def test_an_events_invoke_permission_bound_to_another_rule_is_found():
    relay = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/matbakh-prod-registration-relay"
    facts = Facts(ACCOUNT, REGION, pool_arn=FACTS.pool_arn, relay_rule_arn=relay)
    body = {"Sid": "runbook-relay-schedule", "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "lambda:InvokeFunction", "Resource": "{this function}",
            "Condition": {"ArnLike": {"AWS:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/x"},
                          "StringEquals": {"AWS:SourceAccount": ACCOUNT}}}
    statement = Statement("function f: resource policy", "invoke permission",
                          "process_user_signup", body)
    assert problems([statement], facts) == [
        "function f: resource policy [runbook-relay-schedule]: SourceArn is not bound to the "
        "relay rule"]
