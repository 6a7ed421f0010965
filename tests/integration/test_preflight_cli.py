"""The preflights through the `runbook` command, live against a moto server: `plan` and
`run` refuse, with exit code 2 and before any write, what AWS would refuse minutes into a
run. The offered engine versions are what the server's DescribeDBEngineVersions answers
(moto 5.2.5 lacks the call; runbook.sandbox.rds answers it in this process)."""

from __future__ import annotations

import boto3
import yaml

from tests.conftest import REGION


def client(service, endpoint):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


def edit_config(workdir, change) -> None:
    path = workdir / "config" / "prod.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def offered(endpoint) -> list[str]:
    versions = client("rds", endpoint).describe_db_engine_versions(
        Engine="aurora-postgresql")["DBEngineVersions"]
    return [v["EngineVersion"] for v in versions]


def nothing_made(endpoint) -> bool:
    ours = [v for v in client("ec2", endpoint).describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
    return ours == [] and client("rds", endpoint).describe_db_clusters()["DBClusters"] == []


def version(value):
    def change(data):
        data["database"]["engine_version"] = value
    return change


def test_plan_with_an_engine_version_aws_does_not_offer_exits_2_listing_the_offered_ones(
        moto_endpoint, workdir, cli):
    listed = offered(moto_endpoint)
    assert listed and "15.4" not in listed
    edit_config(workdir, version("15.4"))

    result = cli("plan", "--phase", "a1")

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "database.engine_version: aurora-postgresql 15.4 is not offered" in result.stderr
    assert f"Offered there: {', '.join(listed)}." in result.stderr
    assert nothing_made(moto_endpoint)


def test_run_with_an_engine_version_aws_does_not_offer_stops_before_its_first_write(
        moto_endpoint, workdir, cli):
    edit_config(workdir, version("15.4"))

    result = cli("run", "--phase", "a1")

    assert result.exit_code == 2, result.output
    assert "database.engine_version" in result.stderr and "preflight" in result.stderr
    assert nothing_made(moto_endpoint)


def test_an_existing_cluster_on_a_version_no_longer_offered_is_planned_not_refused(
        moto_endpoint, workdir, cli):
    assert cli("run", "--phase", "a1").exit_code == 0
    edit_config(workdir, version("15.4"))

    result = cli("plan", "--phase", "a1")

    assert result.exit_code == 0, result.output
    assert "not offered" not in result.output


def test_a_zone_the_region_lacks_stops_plan_and_run_naming_the_subnet(moto_endpoint, workdir,
                                                                     cli):
    zones = {z["ZoneName"] for z in client("ec2", moto_endpoint).describe_availability_zones()[
        "AvailabilityZones"]}
    assert "eu-central-1d" not in zones

    def zone_d(data):
        data["network"]["subnets"][2]["az"] = "eu-central-1d"
    edit_config(workdir, zone_d)

    for command in ("plan", "run"):
        result = cli(command, "--phase", "a1")
        assert result.exit_code == 2, result.output
        assert "network.subnets[2].az: eu-central-1d is not an availability zone" in result.stderr
    assert nothing_made(moto_endpoint)


def test_a_runtime_lambda_no_longer_accepts_stops_the_plan_of_the_steps_that_deploy(
        moto_endpoint, workdir, cli):
    def old_runtime(data):
        data["lambdas"]["runtime"] = "python3.7"
    edit_config(workdir, old_runtime)

    assert cli("plan", "--phase", "a1").exit_code == 0   # a1 deploys no function
    result = cli("plan", "--phase", "a2")

    assert result.exit_code == 2, result.output
    assert ("lambdas.runtime: Lambda stopped accepting python3.7 for new functions on "
            "2024-01-09") in result.stderr
