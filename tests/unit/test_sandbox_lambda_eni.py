"""The sandbox's Lambda network interfaces and AWS's refusals around them
(runbook.sandbox.lambda_eni): what makes a dry run of `runbook destroy` prove its order,
since moto alone deletes a security group or subnet whatever uses it."""

from __future__ import annotations

import io
import json
import time
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from runbook.sandbox import lambda_eni
from tests.conftest import REGION


@pytest.fixture
def sandbox(monkeypatch):
    monkeypatch.setattr(lambda_eni, "RELEASE_S", 0.05)
    with mock_aws():
        lambda_eni.install()
        try:
            yield
        finally:
            lambda_eni.uninstall()


def _code() -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return data.getvalue()


def _function(name: str, subnet: str, group: str) -> None:
    iam = boto3.client("iam", region_name=REGION)
    try:
        role = iam.get_role(RoleName="fn-role")["Role"]["Arn"]
    except ClientError:
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}),
        )["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
        Code={"ZipFile": _code()}, VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})


def _network():
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24",
                               AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    return ec2, subnet, group


def _code_of(call) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return refused.value.response["Error"]["Code"]


def test_a_vpc_function_gets_one_shared_interface_that_blocks_its_group_and_subnet(sandbox):
    ec2, subnet, group = _network()
    _function("one", subnet, group)
    _function("two", subnet, group)          # the same subnet and groups: the same interface

    [eni] = ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"]
    assert eni["Description"].startswith("AWS Lambda VPC ENI-one-")
    assert eni["Status"] == "in-use" and eni["InterfaceType"] == "lambda"
    assert [g["GroupId"] for g in eni["Groups"]] == [group]
    assert _code_of(lambda: ec2.delete_security_group(GroupId=group)) == "DependencyViolation"
    assert _code_of(lambda: ec2.delete_subnet(SubnetId=subnet)) == "DependencyViolation"
    assert _code_of(lambda: ec2.delete_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"])) == "InvalidParameterValue"


def test_the_interface_is_left_available_after_its_last_function_and_then_may_go(sandbox):
    ec2, subnet, group = _network()
    lam = boto3.client("lambda", region_name=REGION)
    _function("one", subnet, group)
    _function("two", subnet, group)

    def status() -> str:
        [eni] = ec2.describe_network_interfaces(
            Filters=[{"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"]
        return eni["Status"], eni["NetworkInterfaceId"]

    lam.delete_function(FunctionName="one")
    time.sleep(0.2)
    assert status()[0] == "in-use"           # "two" still uses it
    lam.delete_function(FunctionName="two")
    deadline = time.monotonic() + 5
    while status()[0] != "available" and time.monotonic() < deadline:
        time.sleep(0.05)
    state, eni_id = status()
    assert state == "available"

    ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    ec2.delete_security_group(GroupId=group)
    ec2.delete_subnet(SubnetId=subnet)
    assert not [s for s in ec2.describe_subnets()["Subnets"] if s["SubnetId"] == subnet]


def test_a_group_another_groups_rule_names_cannot_be_deleted(sandbox):
    ec2, _, group = _network()
    vpc = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["VpcId"]
    other = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=other, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
        "UserIdGroupPairs": [{"GroupId": group}]}])

    assert _code_of(lambda: ec2.delete_security_group(GroupId=group)) == "DependencyViolation"
    ec2.revoke_security_group_ingress(GroupId=other, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
        "UserIdGroupPairs": [{"GroupId": group}]}])
    ec2.delete_security_group(GroupId=group)
    assert [g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
        if g["GroupName"] != "default"] == [other]
