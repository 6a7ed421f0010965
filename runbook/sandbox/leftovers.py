"""What an account holds of one environment, listed service by service with plain boto3
clients: how a destroy is proved, never with runbook's own `owned` listings.

A resource is the environment's when it carries the environment's runbook:env tag; the
three kinds without tags are matched by name (the dependency layer and the functions'
event source mappings, by lambdas.prefix) or through their parent (a pool's clients go
with it). What a destroy keeps on purpose is left out, and `retained` lists it: a
secret in its recovery window (ListSecrets shows none by default), a KMS key scheduled
for deletion, a final cluster snapshot.
"""

from __future__ import annotations

from collections import defaultdict

from runbook.aws import naming


def _tags(raw) -> dict:
    if isinstance(raw, dict):
        return dict(raw)
    return {t.get("Key", t.get("TagKey")): t.get("Value", t.get("TagValue")) for t in raw or ()}


def _pages(client, operation: str, key: str, **kwargs) -> list:
    return [item for page in client.get_paginator(operation).paginate(**kwargs)
            for item in page.get(key, ())]


def of_env(client_of, env: str, prefix: str) -> dict[str, list[str]]:
    """{kind: [name or id, ...]} of every live resource of `env` in the account.
    `client_of(service)` gives a plain boto3 client; `prefix` is the environment's
    lambdas.prefix (Config.function_name(""))."""
    found: dict[str, list[str]] = defaultdict(list)

    def mine(tags) -> bool:
        return _tags(tags).get(naming.ENV_TAG) == env

    ec2 = client_of("ec2")
    env_filter = naming.env_filter(env)
    for kind, operation, key, ident in (
            ("ec2:vpc", "describe_vpcs", "Vpcs", "VpcId"),
            ("ec2:subnet", "describe_subnets", "Subnets", "SubnetId"),
            ("ec2:route-table", "describe_route_tables", "RouteTables", "RouteTableId"),
            ("ec2:security-group", "describe_security_groups", "SecurityGroups", "GroupId"),
            ("ec2:internet-gateway", "describe_internet_gateways", "InternetGateways",
             "InternetGatewayId"),
            ("ec2:security-group-rule", "describe_security_group_rules",
             "SecurityGroupRules", "SecurityGroupRuleId")):
        found[kind] += [item[ident] for item in _pages(ec2, operation, key, Filters=env_filter)]
    found["ec2:vpc-endpoint"] += [
        e["VpcEndpointId"] for e in _pages(ec2, "describe_vpc_endpoints", "VpcEndpoints",
                                           Filters=env_filter)
        if e.get("State", "").lower() not in ("deleted", "deleting")]
    groups = set(found["ec2:security-group"])
    subnets = set(found["ec2:subnet"])
    found["ec2:network-interface"] += [
        i["NetworkInterfaceId"] for i in _pages(ec2, "describe_network_interfaces",
                                                "NetworkInterfaces")
        if i.get("SubnetId") in subnets or groups & {g["GroupId"] for g in i.get("Groups", ())}]

    rds = client_of("rds")
    for kind, operation, key, ident, arn in (
            ("rds:cluster", "describe_db_clusters", "DBClusters", "DBClusterIdentifier",
             "DBClusterArn"),
            ("rds:instance", "describe_db_instances", "DBInstances", "DBInstanceIdentifier",
             "DBInstanceArn"),
            ("rds:subnet-group", "describe_db_subnet_groups", "DBSubnetGroups",
             "DBSubnetGroupName", "DBSubnetGroupArn"),
            ("rds:cluster-parameter-group", "describe_db_cluster_parameter_groups",
             "DBClusterParameterGroups", "DBClusterParameterGroupName",
             "DBClusterParameterGroupArn"),
            ("rds:db-proxy", "describe_db_proxies", "DBProxies", "DBProxyName", "DBProxyArn")):
        for item in _pages(rds, operation, key):
            tags = item.get("TagList")
            if tags is None:
                tags = rds.list_tags_for_resource(ResourceName=item[arn])["TagList"]
            if mine(tags):
                found[kind].append(item[ident])

    lam = client_of("lambda")
    for function in _pages(lam, "list_functions", "Functions"):
        if mine(lam.list_tags(Resource=function["FunctionArn"]).get("Tags")):
            found["lambda:function"].append(function["FunctionName"])
    for mapping in _pages(lam, "list_event_source_mappings", "EventSourceMappings"):
        function = mapping.get("FunctionArn", "").rsplit(":", 1)[-1]
        if function.startswith(prefix) and mapping.get("State") != "Deleting":
            found["lambda:event-source-mapping"].append(mapping["UUID"])
    for layer in _pages(lam, "list_layers", "Layers"):
        if layer["LayerName"].startswith(prefix):
            found["lambda:layer-version"] += [
                v["LayerVersionArn"] for v in _pages(lam, "list_layer_versions",
                                                     "LayerVersions",
                                                     LayerName=layer["LayerName"])]

    iam = client_of("iam")
    for role in _pages(iam, "list_roles", "Roles"):
        if mine(iam.list_role_tags(RoleName=role["RoleName"]).get("Tags")):
            found["iam:role"].append(role["RoleName"])

    logs = client_of("logs")
    for group in _pages(logs, "describe_log_groups", "logGroups"):
        if mine(logs.list_tags_log_group(logGroupName=group["logGroupName"]).get("tags")):
            found["logs:log-group"].append(group["logGroupName"])

    cloudwatch = client_of("cloudwatch")
    for alarm in _pages(cloudwatch, "describe_alarms", "MetricAlarms"):
        if mine(cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags")):
            found["cloudwatch:alarm"].append(alarm["AlarmName"])

    sqs = client_of("sqs")
    for url in sqs.list_queues().get("QueueUrls", ()):
        if mine(sqs.list_queue_tags(QueueUrl=url).get("Tags")):
            found["sqs:queue"].append(url.rsplit("/", 1)[-1])

    events = client_of("events")
    for bus in events.list_event_buses().get("EventBuses", ()):
        if bus["Name"] != "default" and mine(
                events.list_tags_for_resource(ResourceARN=bus["Arn"]).get("Tags")):
            found["events:event-bus"].append(bus["Name"])
        for rule in events.list_rules(EventBusName=bus["Name"]).get("Rules", ()):
            if mine(events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags")):
                found["events:rule"].append(rule["Name"])

    idp = client_of("cognito-idp")
    for pool in _pages(idp, "list_user_pools", "UserPools", MaxResults=60):
        described = idp.describe_user_pool(UserPoolId=pool["Id"])["UserPool"]
        if mine(described.get("UserPoolTags")):
            found["cognito-idp:user-pool"].append(pool["Name"])

    sm = client_of("secretsmanager")
    for secret in _pages(sm, "list_secrets", "SecretList"):
        if mine(secret.get("Tags")) and not secret.get("DeletedDate"):
            found["secretsmanager:secret"].append(secret["Name"])

    ddb = client_of("dynamodb")
    for table in _pages(ddb, "list_tables", "TableNames"):
        arn = ddb.describe_table(TableName=table)["Table"]["TableArn"]
        if mine(ddb.list_tags_of_resource(ResourceArn=arn).get("Tags")):
            found["dynamodb:table"].append(table)

    kms = client_of("kms")
    for key in _pages(kms, "list_keys", "Keys"):
        state = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"]
        if state != "PendingDeletion" and mine(kms.list_resource_tags(
                KeyId=key["KeyId"]).get("Tags")):
            found["kms:key"].append(key["KeyId"])

    kafka = client_of("kafka")
    for cluster in _pages(kafka, "list_clusters_v2", "ClusterInfoList"):
        if mine(cluster.get("Tags")) and cluster.get("State") != "DELETING":
            found["kafka:cluster"].append(cluster["ClusterName"])

    ssm = client_of("ssm")
    for parameter in _pages(ssm, "describe_parameters", "Parameters"):
        if parameter["Name"].startswith(f"/runbook/{env}/"):
            found["ssm:parameter"].append(parameter["Name"])
    return {kind: sorted(names) for kind, names in found.items() if names}


def retained(client_of, env: str, cluster_id: str) -> dict[str, list[str]]:
    """What a destroy of `env` keeps on purpose: secrets pending deletion, keys scheduled
    for deletion, and the final snapshots of the cluster `cluster_id`."""
    out: dict[str, list[str]] = defaultdict(list)
    sm = client_of("secretsmanager")
    for secret in _pages(sm, "list_secrets", "SecretList", IncludePlannedDeletion=True):
        if secret.get("DeletedDate") and _tags(secret.get("Tags")).get(naming.ENV_TAG) == env:
            out["secretsmanager:secret (pending deletion)"].append(secret["Name"])
    kms = client_of("kms")
    for key in _pages(kms, "list_keys", "Keys"):
        meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        tags = _tags(kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags"))
        if meta["KeyState"] == "PendingDeletion" and tags.get(naming.ENV_TAG) == env:
            out["kms:key (pending deletion)"].append(key["KeyId"])
    rds = client_of("rds")
    for snapshot in _pages(rds, "describe_db_cluster_snapshots", "DBClusterSnapshots"):
        if snapshot.get("DBClusterIdentifier") == cluster_id and \
                snapshot.get("SnapshotType") == "manual":
            out["rds:cluster-snapshot"].append(snapshot["DBClusterSnapshotIdentifier"])
    return {kind: sorted(names) for kind, names in out.items()}
