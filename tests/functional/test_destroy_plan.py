"""What a destroy deletes, keeps and changes (runbook.teardown), against in-process moto:
an adopted resource is kept and said so, a destroy from a phase on leaves the phases
before it, a pool that stays loses the triggers of the functions deleted, and the
dependency layer stays while a step that uses it stays."""

from __future__ import annotations

import io
import zipfile

import boto3
import pytest

from runbook import config as config_mod
from runbook import destroying, teardown
from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.errors import BadInput
from runbook.functions import package
from runbook.output import render
from runbook.output.progress import Progress
from runbook.resources.base import DeleteOptions
from tests.conftest import PROD_CONFIG, REGION, REPO
from tests.functional.conftest import run_steps

STAGING_CONFIG = REPO / "config" / "staging.yaml"


@pytest.fixture
def staging():
    return config_mod.load(STAGING_CONFIG)


def client(service):
    return boto3.client(service, region_name=REGION)


def plan(config, steps=None, *, whole=True):
    aws = ClientFactory(REGION)
    result = teardown.plan(Api(aws), config, steps or config.all_steps(), whole=whole,
                           options=DeleteOptions())
    assert aws.total("write") == 0
    return result


def destroy(result):
    aws = ClientFactory(REGION)
    destroyer = teardown.Destroyer(aws, Progress(quiet=True), sleep=lambda s: None)
    destroyer.run(result)
    return destroyer, aws


def test_an_adopted_vpc_is_kept_and_what_runbook_made_in_it_is_deleted(account, staging):
    ec2 = client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock=staging.network.cidr)["Vpc"]["VpcId"]  # the old scripts'
    results, _ = run_steps(staging, ["network"])
    assert results["network"].ok, results["network"].error

    result = plan(staging)

    kept = [i for i in result.items if i.action == "keep"]
    assert [(i.kind.kind, i.found.id) for i in kept] == [("ec2:vpc", vpc_id)]
    assert "adopted" in kept[0].why
    deleted = {i.kind.kind for i in result.items if i.action == "delete"}
    assert {"ec2:subnet", "ec2:route-table", "ec2:internet-gateway"} <= deleted
    data = render.teardown_data(result, account="123456789012", region=REGION, dry_run=False)
    assert data["summary"]["kept"] == 1
    assert data["steps"][-1]["kept"] == [{"resource": kept[0].title, "why": kept[0].why}]

    destroy(result)

    assert [v["VpcId"] for v in ec2.describe_vpcs(
        Filters=[{"Name": "tag:runbook:env", "Values": ["staging"]}])["Vpcs"]] == [vpc_id]
    assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"] == []
    assert plan(staging).deletes == 0


def test_a_destroy_from_a_phase_on_leaves_the_phases_before_it(account, staging):
    results, _ = run_steps(staging, ["network", "cognito"])
    assert all(r.ok for r in results.values()), [r.error for r in results.values()]
    network_before = client("ec2").describe_subnets(
        Filters=[{"Name": "tag:runbook:env", "Values": ["staging"]}])["Subnets"]

    target = destroying.scope(staging, "a2")
    result = plan(staging, target.steps, whole=False)

    assert {i.step for i in result.items} == {"cognito"}
    assert {i.kind.kind for i in result.items} >= {"cognito-idp:user-pool", "lambda:function",
                                                   "iam:role", "logs:log-group"}
    destroy(result)
    assert client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"] == []
    assert client("lambda").list_functions()["Functions"] == []
    assert client("ec2").describe_subnets(
        Filters=[{"Name": "tag:runbook:env", "Values": ["staging"]}])["Subnets"] == network_before


def test_a_pool_that_stays_loses_the_triggers_of_the_functions_deleted(account, staging):
    idp = client("cognito-idp")
    # A pool made by hand before runbook: the cognito step adopts it by name.
    pool_id = idp.create_user_pool(PoolName=staging.cognito.user_pool,
                                   UsernameAttributes=["email"])["UserPool"]["Id"]
    results, _ = run_steps(staging, ["cognito"])
    assert results["cognito"].ok, results["cognito"].error
    triggers = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    assert "PreSignUp" in triggers

    result = plan(staging, ["cognito"], whole=False)

    pool_items = [i for i in result.items if i.kind.kind == "cognito-idp:user-pool"]
    assert sorted(i.action for i in pool_items) == ["keep", "update"]
    update = next(i for i in pool_items if i.action == "update")
    assert update.diff == {"triggers": {"from": ["PreSignUp"], "to": []}}
    destroy(result)
    pool = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert "PreSignUp" not in (pool.get("LambdaConfig") or {})
    assert pool["Name"] == staging.cognito.user_pool
    assert plan(staging, ["cognito"], whole=False).deletes == 0


def _publish_layer(name: str) -> str:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("python/x.py", "")
    return client("lambda").publish_layer_version(
        LayerName=name, Description=package.layer_description("0" * 64),
        Content={"ZipFile": data.getvalue()}, CompatibleRuntimes=["python3.11"])["LayerVersionArn"]


def test_the_layer_stays_while_a_step_that_uses_it_stays(account, staging):
    arn = _publish_layer(staging.function_name("deps"))

    from_a4 = plan(staging, destroying.scope(staging, "a4").steps, whole=False)
    whole = plan(staging)

    [layer] = [i for i in from_a4.items if i.kind.kind == "lambda:layer-version"]
    assert layer.action == "keep" and "deploy-post-confirmation" in layer.why
    [layer] = [i for i in whole.items if i.kind.kind == "lambda:layer-version"]
    assert layer.action == "delete" and layer.found.id == arn


def test_a_protected_environment_is_refused_naming_the_fields(staging):
    prod = config_mod.load(PROD_CONFIG)

    with pytest.raises(BadInput) as refused:
        teardown.refuse_if_protected(prod, prod.all_steps(), "config/prod.yaml")

    message = str(refused.value)
    for field in ("database.deletion_protection", "cognito.deletion_protection",
                  "legacy.deletion_protection"):
        assert field in message
    assert refused.value.exit_code == 2
    teardown.refuse_if_protected(staging, staging.all_steps(), "config/staging.yaml")
    # Only the fields of what would be deleted count: a5 alone names the table's.
    assert teardown.protected(prod, destroying.scope(prod, "a5").steps) == [
        "legacy.deletion_protection"]


def test_a_phase_the_file_lacks_is_refused(staging):
    with pytest.raises(BadInput, match="--phase a9: the environment file has no such phase"):
        destroying.scope(staging, "a9")
    assert destroying.scope(staging, None).whole
    assert destroying.scope(staging, "a4").steps == (staging.phases["a4"] + staging.phases["a5"])
