"""msk-cluster's outputs for a cluster a test made in moto directly (without the step,
which would need a broker and public subnets), for the tests of the steps that consume
them."""

from __future__ import annotations

from runbook.steps.msk_cluster import MskClusterOutputs

# The cluster's data plane in tests: moto's ARN is arn:aws:kafka:<region>:<account>:
# cluster/<uuid> (AWS's has the name before the uuid), so the uuid is read from its end.


def for_cluster(cluster_arn: str, cluster_name: str, *, region: str, account: str,
                topic: str = "legacy-users", bootstrap: str = "b-1.example:9198",
                subnet_ids: tuple = ("subnet-pub-a", "subnet-pub-b"),
                security_group_id: str = "sg-msk") -> MskClusterOutputs:
    """The outputs msk-cluster would give for the cluster `cluster_arn`."""
    uuid = cluster_arn.rsplit("/", 1)[-1]
    scope = f"{cluster_name}/{uuid}"
    return MskClusterOutputs(
        cluster_arn=cluster_arn, cluster_name=cluster_name, cluster_uuid=uuid,
        security_group_id=security_group_id, subnet_ids=tuple(subnet_ids),
        bootstrap_public=bootstrap, bootstrap_private=bootstrap.replace(":9198", ":9098"),
        topic=topic, topic_arn=f"arn:aws:kafka:{region}:{account}:topic/{scope}/{topic}",
        group_arn_prefix=f"arn:aws:kafka:{region}:{account}:group/{scope}/")
