"""runbook.preflight's reads against moto: a read the credentials may not make is an
input error that names it (exit 2), not an internal error."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from runbook import config as config_mod
from runbook import preflight
from runbook.aws.clients import ClientFactory
from runbook.errors import BadInput
from tests.conftest import PROD_CONFIG, REGION


def denied(operation_name: str):
    """An interceptor that refuses `operation_name` as IAM refuses an unpermitted call."""
    def deny(service, operation, write):
        if operation == operation_name:
            raise ClientError({"Error": {"Code": "UnauthorizedOperation",
                                         "Message": "You are not authorized to perform this "
                                                    "operation."}}, operation)
    return deny


@mock_aws
def test_a_read_the_credentials_may_not_make_is_refused_naming_it():
    config = config_mod.load(PROD_CONFIG)
    aws = ClientFactory(REGION, interceptors=[denied("DescribeAvailabilityZones")])

    with pytest.raises(BadInput) as refused:
        preflight.check(config, aws, ["network"])

    message = str(refused.value)
    assert refused.value.exit_code == 2
    assert "DescribeAvailabilityZones" in message and "UnauthorizedOperation" in message
    assert "Nothing was changed" in message and "permission" in message
    assert aws.total("write") == 0


@mock_aws
def test_a_read_that_fails_for_another_reason_is_a_failure_not_an_input_error():
    from runbook.errors import RunbookError

    def unavailable(service, operation, write):
        if operation == "DescribeAvailabilityZones":
            raise ClientError({"Error": {"Code": "ServiceUnavailable",
                                         "Message": "Service unavailable"}}, operation)

    config = config_mod.load(PROD_CONFIG)
    aws = ClientFactory(REGION, interceptors=[unavailable])

    with pytest.raises(RunbookError) as failed:
        preflight.check(config, aws, ["network"])

    assert not isinstance(failed.value, BadInput) and failed.value.exit_code == 1
    assert "DescribeAvailabilityZones" in str(failed.value) and "run again" in str(failed.value)


@mock_aws
def test_the_same_reads_pass_when_allowed():
    config = config_mod.load(PROD_CONFIG)
    aws = ClientFactory(REGION)
    preflight.check(config, aws, ["network"])
    assert aws.total("read") >= 1 and aws.total("write") == 0


def recording_factory() -> tuple[ClientFactory, list[str]]:
    sent: list[str] = []
    aws = ClientFactory(REGION, interceptors=[lambda s, operation, w: sent.append(operation)])
    return aws, sent


def run_network(config, aws):
    from runbook.output.progress import Progress
    from runbook.steps import new_runner

    [result] = new_runner(config, aws, Progress(quiet=True), sleep=lambda s: None).run(
        ["network"])
    assert result.status == "ok", result.error
    return result


@mock_aws
def test_the_zones_are_read_only_while_a_subnet_of_the_file_is_to_be_made():
    config = config_mod.load(PROD_CONFIG)
    aws, sent = recording_factory()
    preflight.check(config, aws, ["network"])
    run_network(config, aws)
    assert sent.count("DescribeAvailabilityZones") == 1   # the step reused the preflight's

    again, sent = recording_factory()
    preflight.check(config, again, ["network"])
    result = run_network(config, again)
    assert result.changes == [] and "DescribeAvailabilityZones" not in sent

    subnet = again.client("ec2").describe_subnets(Filters=[
        {"Name": "cidr-block", "Values": [config.network.subnets[0].cidr]}])["Subnets"][0]
    again.client("ec2").delete_subnet(SubnetId=subnet["SubnetId"])
    third, sent = recording_factory()
    preflight.check(config, third, ["network"])
    result = run_network(config, third)
    assert sent.count("DescribeAvailabilityZones") == 1
    assert [c.resource for c in result.changes if c.action == "create"][0].startswith(
        "ec2:subnet")


@mock_aws
def test_engine_versions_are_read_for_a_new_cluster_or_new_capacity_only(write_config):
    from runbook.sandbox import rds as sandbox_rds
    from tests.functional.conftest import run_steps

    sandbox_rds.install()  # DescribeDBEngineVersions, which moto 5.2.5 lacks
    config = config_mod.load(PROD_CONFIG)
    aws, sent = recording_factory()
    preflight.check(config, aws, ["database"])
    assert "DescribeDBEngineVersions" in sent   # no cluster yet: its version is checked

    results, _ = run_steps(config, ["network", "database"])
    assert results["database"].status == "ok", results["database"].error
    aws, sent = recording_factory()
    preflight.check(config, aws, ["database"])
    assert "DescribeDBEngineVersions" not in sent   # it runs the file's capacity

    bigger = config_mod.load(write_config(lambda d: d["database"].update(max_capacity=8)))
    aws, sent = recording_factory()
    preflight.check(bigger, aws, ["database"])
    assert "DescribeDBEngineVersions" in sent   # a new capacity is checked again
