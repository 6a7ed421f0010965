"""The `runbook` command in live mode against a moto server (AWS_ENDPOINT_URL), which
must behave exactly as against AWS."""

from __future__ import annotations

import json

import boto3
import jsonschema
import pytest
import yaml

from runbook.output.report import load_schema
from tests.conftest import REGION, read_report, run_cli


def client(service, endpoint):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


def our_vpcs(endpoint):
    return [v for v in client("ec2", endpoint).describe_vpcs()["Vpcs"]
            if v["CidrBlock"] == "10.0.0.0/16"]


@pytest.mark.slow
def test_second_run_in_a_separate_process_makes_no_writes(moto_endpoint, workdir):
    first = run_cli("run", "--phase", "a1", cwd=workdir, env={"AWS_ENDPOINT_URL": moto_endpoint})
    assert first.exit_code == 0, first.output
    report = read_report(workdir, "a1")
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok"]
    assert all(s["changed"] for s in report["steps"])

    second = run_cli("run", "--phase", "a1", cwd=workdir, env={"AWS_ENDPOINT_URL": moto_endpoint})

    assert second.exit_code == 0, second.output
    report = read_report(workdir, "a1")
    jsonschema.validate(report, load_schema())
    assert report["dry_run"] is False and report["account"] == "123456789012"
    for step in report["steps"]:
        assert step["status"] == "ok"
        assert step["changed"] is False and step["changes"] == []
        assert step["api_calls"]["write"] == 0
    assert second.stdout.count("unchanged") == 3
    assert len(our_vpcs(moto_endpoint)) == 1
    history = sorted((workdir / "reports" / "prod" / "history").glob("a1-*.json"))
    assert len(history) == 2


def test_plan_where_only_the_vpc_exists_lists_exactly_the_missing_resources(
        moto_endpoint, workdir, cli):
    ec2 = client("ec2", moto_endpoint)
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[{
        "ResourceType": "vpc", "Tags": [
            {"Key": "Name", "Value": "matbakh-prod-vpc"}, {"Key": "project", "Value": "matbakh"},
            {"Key": "runbook:env", "Value": "prod"}, {"Key": "runbook:step", "Value": "network"}]}],
    )["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})

    result = cli("plan", "--phase", "a1", "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    changes = [(c["action"], c["resource"]) for s in plan["steps"] for c in s["changes"]]
    expected = [("create", f"ec2:subnet matbakh-prod-private-{REGION}{z}") for z in "abc"] + \
               [("create", f"ec2:route-table matbakh-prod-private-rt-{REGION}{z}") for z in "abc"] + \
               [("create", f"ec2:subnet matbakh-prod-public-{REGION}{z}") for z in "ab"] + \
               [("create", "ec2:internet-gateway matbakh-prod-igw"),
                ("create", "ec2:route-table matbakh-prod-public")] + \
               [("create", "ec2:security-group matbakh-prod-db"),
                ("create", "rds:subnet-group matbakh-prod-subnets"),
                ("create", "rds:cluster-parameter-group matbakh-prod-params"),
                ("create", "rds:cluster matbakh-prod"),
                ("create", "rds:instance matbakh-prod-1"),
                ("create", "secretsmanager:secret matbakh-db-postgres"),
                ("create", "secretsmanager:secret matbakh-app-config")]
    # No password set afterwards: the cluster is created with the one the secret keeps.
    assert sorted(changes) == sorted(expected)
    # Nothing was written: the account still holds only the VPC.
    assert [v["VpcId"] for v in our_vpcs(moto_endpoint)] == [vpc_id]
    assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"] == []
    assert client("rds", moto_endpoint).describe_db_clusters()["DBClusters"] == []
    assert client("secretsmanager", moto_endpoint).list_secrets()["SecretList"] == []


def test_plan_prints_a_summary_a_person_reads(moto_endpoint, workdir, cli):
    result = cli("plan", "--phase", "a1")
    assert result.exit_code == 0, result.output
    assert "+ ec2:vpc matbakh-prod-vpc" in result.stdout
    assert "Plan: 18 to add, 0 to change, 0 to destroy. 0 steps unchanged." in result.stdout


def test_account_guard_refuses_before_any_write(moto_endpoint, write_config, cli):
    path = write_config(lambda d: d.update(account_id="999999999999"))
    result = cli("run", "--phase", "a1", "--config", str(path))
    assert result.exit_code == 2
    assert "account_id" in result.stderr
    assert "999999999999" in result.stderr and "123456789012" in result.stderr
    assert "Traceback" not in result.output
    assert our_vpcs(moto_endpoint) == []


def test_matching_account_guard_lets_the_run_proceed(moto_endpoint, write_config, cli, tmp_path):
    path = write_config(lambda d: d.update(account_id="123456789012"))
    result = cli("run", "--step", "network", "--config", str(path),
                 "--report-dir", str(tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    assert len(our_vpcs(moto_endpoint)) == 1


def test_step_run_without_its_prerequisite_exits_2_naming_the_phase(moto_endpoint, workdir, cli):
    result = cli("run", "--step", "store-secrets")
    assert result.exit_code == 2
    assert "runbook run --phase a1" in result.stderr
    report = read_report(workdir, "store-secrets")
    assert report["status"] == "failed" and report["journal"] == []


def test_a_design_step_not_built_yet_is_refused_with_exit_2(moto_endpoint, workdir, cli):
    # process-user-signup is phase a4's consumer in the design; this version has no such
    # step, whether it is asked for on the command line or named in the environment file.
    result = cli("run", "--step", "process-user-signup")
    assert result.exit_code == 2
    assert "--step process-user-signup: not a step of any phase" in result.stderr
    assert "integration-test" in result.stderr  # the steps there are
    assert "Traceback" not in result.output

    config = workdir / "config" / "prod.yaml"
    data = yaml.safe_load(config.read_text())
    data["phases"]["a4"] = ["process-user-signup"]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = cli("run", "--phase", "a4")
    assert result.exit_code == 2
    assert "phases.a4" in result.stderr and "unknown step 'process-user-signup'" in result.stderr
    assert "Traceback" not in result.output
    assert our_vpcs(moto_endpoint) == []
    assert list(workdir.glob("reports/**/*.json")) == []  # refused before the run began


def test_the_integration_test_without_the_pool_exits_2_naming_the_phase(moto_endpoint, workdir,
                                                                      cli):
    result = cli("run", "--step", "integration-test")
    assert result.exit_code == 2
    assert "runbook run --phase a2" in result.stderr and "Traceback" not in result.output


def test_failed_run_report_carries_the_journal_of_what_was_made(moto_endpoint, workdir, cli):
    # A subnet group named like runbook's, in another VPC: the database step must stop.
    ec2 = client("ec2", moto_endpoint)
    other = ec2.create_vpc(CidrBlock="192.168.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=other, CidrBlock=f"192.168.{i}.0/24",
                                 AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
               for i, z in ((1, "a"), (2, "b"))]
    client("rds", moto_endpoint).create_db_subnet_group(
        DBSubnetGroupName="matbakh-prod-subnets", DBSubnetGroupDescription="old", SubnetIds=subnets)

    result = cli("run", "--phase", "a1")

    assert result.exit_code == 2, result.output
    assert "database.subnet_group" in result.stderr
    report = read_report(workdir, "a1")
    jsonschema.validate(report, load_schema())
    assert [s["status"] for s in report["steps"]] == ["ok", "failed", "not_run"]
    calls = [entry["call"] for entry in report["journal"]]
    assert calls[0] == "ec2:CreateVpc" and calls.count("ec2:CreateSubnet") == 5  # 3 private, 2 public
    assert all(entry["step"] == "network" for entry in report["journal"])
    journal_lines = open(report["journal_file"]).read().splitlines()
    assert [json.loads(line)["call"] for line in journal_lines] == calls


def test_status_lists_the_last_run_of_each_step(moto_endpoint, workdir, cli):
    assert cli("run", "--phase", "a1").exit_code == 0
    assert cli("run", "--step", "network").exit_code == 0
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["steps"]
    assert [(r["mode"], r["step"]) for r in rows] == [
        ("live", "network"), ("live", "database"), ("live", "store-secrets")]
    network = rows[0]
    assert network["changed"] is False and "/history/network-" in network["report"]
    assert network["run"] == "network" and rows[1]["run"] == "a1"
    table = cli("status")
    assert "store-secrets" in table.stdout and "live" in table.stdout


def test_no_generated_secret_appears_in_output_reports_or_journal(moto_endpoint, workdir, cli):
    first = cli("run", "--phase", "a1")
    second = cli("run", "--phase", "a1")
    assert first.exit_code == second.exit_code == 0
    sm = client("secretsmanager", moto_endpoint)
    db = json.loads(sm.get_secret_value(SecretId="matbakh-db-postgres")["SecretString"])
    app = json.loads(sm.get_secret_value(SecretId="matbakh-app-config")["SecretString"])
    secrets = [db["password"], app["jwt_secret"]]
    written = [p.read_text() for p in (workdir / "reports").rglob("*") if p.is_file()]
    assert written, "the runs wrote reports and a journal"
    for text in [first.output, second.output, *written]:
        for value in secrets:
            assert value not in text
