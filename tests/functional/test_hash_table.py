"""Step hash-table against in-process moto: what a first apply makes, read back from the
account (the key, its alias and rotation, the table encrypted with that key, PITR on,
deletion protection as the file says); that a second apply makes no mutating call; that
a table made by hand is adopted and converged; that one of another environment is
refused with nothing written; that a table encrypted with another key plans the move.

The step is in no phase of the shipped files yet: each test puts it in a phase a5 of
its own copy of the file."""

from __future__ import annotations

import json

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from runbook import config as config_mod
from runbook.aws import naming
from runbook.errors import OwnedElsewhere
from runbook.steps.hash_table import key_policy
from tests.conftest import PROD_CONFIG, REGION
from tests.functional.conftest import run_steps

STEP = "hash-table"
TABLE = "matbakh-prod-legacy-user-hashes"
ALIAS = f"alias/{TABLE}"


def with_step(path, tmp_path, **legacy):
    """The environment file at `path` with phase a5: [hash-table] (and `legacy` changes)."""
    data = yaml.safe_load(path.read_text())
    data["phases"]["a5"] = [STEP]
    data["legacy"].update(legacy)
    out = tmp_path / "config" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(out)


@pytest.fixture
def config(tmp_path):
    return with_step(PROD_CONFIG, tmp_path)


def dynamodb():
    return boto3.client("dynamodb", region_name=REGION)


def kms():
    return boto3.client("kms", region_name=REGION)


def apply(config):
    results, _ = run_steps(config, [STEP])
    result = results[STEP]
    assert result.status == "ok", result.error
    return result


def make_table(name=TABLE, **extra):
    """A table as the old scripts would have made it: provisioned, no PITR."""
    return dynamodb().create_table(
        TableName=name, AttributeDefinitions=[{"AttributeName": "email", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}], **extra)["TableDescription"]


def test_a_first_apply_makes_the_key_its_alias_and_the_table_encrypted_with_it(account, config):
    result = apply(config)
    out = result.outputs

    assert [(c.action, c.resource) for c in result.changes] == [
        ("create", f"kms:key {ALIAS}"), ("create", f"dynamodb:table {TABLE}")]
    key = kms().describe_key(KeyId=ALIAS)["KeyMetadata"]
    assert (key["KeySpec"], key["KeyUsage"], key["KeyManager"], key["KeyState"]) == (
        "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "CUSTOMER", "Enabled")
    assert kms().get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    policy = json.loads(kms().get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert policy == key_policy("123456789012", config.region)
    use = next(s for s in policy["Statement"] if s["Sid"] == "UseThroughDynamoDB")
    assert use["Condition"]["StringEquals"]["kms:ViaService"] == \
        f"dynamodb.{config.region}.amazonaws.com"
    administration = next(s for s in policy["Statement"] if s["Sid"] == "KeyAdministration")
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:CreateGrant", "kms:*"} & set(
        administration["Action"])
    key_tags = {t["TagKey"]: t["TagValue"]
                for t in kms().list_resource_tags(KeyId=key["KeyId"])["Tags"]}
    assert key_tags == {"project": "matbakh", "Name": TABLE, "runbook:env": "prod",
                        "runbook:step": STEP, "runbook:created": "true"}

    table = dynamodb().describe_table(TableName=TABLE)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "email", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "email", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["SSEType"] == "KMS"
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    assert table["DeletionProtectionEnabled"] is True
    backups = dynamodb().describe_continuous_backups(TableName=TABLE)
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
        "PointInTimeRecoveryStatus"] == "ENABLED"
    table_tags = {t["Key"]: t["Value"] for t in dynamodb().list_tags_of_resource(
        ResourceArn=table["TableArn"])["Tags"]}
    assert table_tags == key_tags

    assert out == {"table_name": TABLE, "table_arn": table["TableArn"], "partition_key": "email",
                   "key_arn": key["Arn"], "key_alias": ALIAS}


def test_a_second_apply_plans_nothing_and_makes_no_mutating_call(account, config):
    apply(config)
    again = apply(config)

    assert again.changes == []
    assert again.api_calls["write"] == 0
    assert again.api_calls["read"] > 0


def test_prods_table_is_deletion_protected_and_stagings_is_not(account, config, tmp_path):
    apply(config)
    with pytest.raises(ClientError, match="DeletionProtectionEnabled"):
        dynamodb().delete_table(TableName=TABLE)

    staging = with_step(PROD_CONFIG.with_name("staging.yaml"), tmp_path)
    result = apply(staging)

    name = "matbakh-staging-legacy-user-hashes"
    assert result.outputs["table_name"] == name
    assert dynamodb().describe_table(TableName=name)["Table"]["DeletionProtectionEnabled"] is False
    assert result.outputs["key_arn"] != kms().describe_key(KeyId=ALIAS)["KeyMetadata"]["Arn"]
    dynamodb().delete_table(TableName=name)  # staging can be thrown away


def test_a_hand_made_table_is_adopted_tagged_and_given_the_settings_it_lacks(account, config):
    """Its move to the key is planned and sent, but not read back here: moto 5.2.5
    ignores UpdateTable's SSESpecification (see runbook.resources.dynamodb_table)."""
    made = make_table(ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                      Tags=[{"Key": "Name", "Value": "hashes-by-hand"}])

    first = apply(config)
    assert [(c.action, c.resource) for c in first.changes] == [
        ("create", f"kms:key {ALIAS}"), ("update", f"dynamodb:table {TABLE}"),
        ("update", f"dynamodb:table {TABLE}")]

    table = dynamodb().describe_table(TableName=TABLE)["Table"]
    assert table["TableArn"] == made["TableArn"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionProtectionEnabled"] is True
    tags = {t["Key"]: t["Value"] for t in dynamodb().list_tags_of_resource(
        ResourceArn=made["TableArn"])["Tags"]}
    assert tags["Name"] == "hashes-by-hand" and tags["runbook:env"] == "prod"
    assert dynamodb().describe_continuous_backups(TableName=TABLE)[
        "ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
        "PointInTimeRecoveryStatus"] == "ENABLED"


def test_a_table_of_another_environment_is_refused_and_nothing_is_written(account, config):
    make_table(BillingMode="PAY_PER_REQUEST",
               Tags=[{"Key": "runbook:env", "Value": "staging"}])

    results, _ = run_steps(config, [STEP])

    result = results[STEP]
    assert result.status != "ok"
    assert isinstance(result.exception, OwnedElsewhere)
    assert "legacy.hash_table" in str(result.exception)
    assert result.api_calls["write"] == 0
    assert ALIAS not in {a["AliasName"] for a in kms().list_aliases()["Aliases"]}


def test_a_table_encrypted_with_another_key_plans_the_move_to_its_own(account, config):
    other = kms().create_key()["KeyMetadata"]["Arn"]
    apply(config)
    dynamodb().update_table(TableName=TABLE, DeletionProtectionEnabled=False)
    dynamodb().delete_table(TableName=TABLE)
    make_table(BillingMode="PAY_PER_REQUEST", DeletionProtectionEnabled=True,
               SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": other},
               Tags=naming.as_aws(naming.tags(config, STEP, TABLE)))
    dynamodb().update_continuous_backups(
        TableName=TABLE, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})

    results, _ = run_steps(config, [STEP], plan_only=True)

    [change] = results[STEP].changes
    own = kms().describe_key(KeyId=ALIAS)["KeyMetadata"]["Arn"]
    assert (change.action, change.resource) == ("update", f"dynamodb:table {TABLE}")
    assert change.diff == {"kms_key": {"from": other, "to": own}}


def test_a_key_left_without_its_alias_is_given_it_and_no_second_key_is_made(account, config):
    """A create cut short (CreateKey's answer lost, or a stop before CreateAlias) leaves
    the key, tagged in that call, under no alias: the next run finds it by its tags and
    gives it the alias, rather than making a second key. A key of this environment that
    another alias names, and one scheduled for deletion, are left alone."""
    tags = [{"TagKey": k, "TagValue": v}
            for k, v in naming.tags(config, STEP, TABLE).items()]
    left = kms().create_key(Description="cut short", Tags=tags)["KeyMetadata"]
    named_otherwise = kms().create_key(Tags=tags)["KeyMetadata"]
    kms().create_alias(AliasName="alias/something-else", TargetKeyId=named_otherwise["KeyId"])
    going = kms().create_key(Tags=tags)["KeyMetadata"]
    kms().schedule_key_deletion(KeyId=going["KeyId"], PendingWindowInDays=7)
    before = {k["KeyId"] for k in kms().list_keys()["Keys"]}

    result = apply(config)

    assert [(c.action, c.resource) for c in result.changes][0] == ("update", f"kms:key {ALIAS}")
    assert result.changes[0].diff["alias"] == {"from": None, "to": ALIAS}
    assert result.changes[0].diff["rotation"] == {"from": False, "to": True}
    # Made here without a policy (KMS's default); a cut-short create of runbook's has it.
    assert set(result.changes[0].diff) == {"alias", "rotation", "policy"}
    assert {k["KeyId"] for k in kms().list_keys()["Keys"]} == before
    assert kms().describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyId"] == left["KeyId"]
    table = dynamodb().describe_table(TableName=TABLE)["Table"]
    assert table["SSEDescription"]["KMSMasterKeyArn"] == left["Arn"]
    again, _ = run_steps(config, [STEP])
    assert again[STEP].changes == [] and again[STEP].api_calls["write"] == 0


def test_a_key_policy_widened_by_hand_is_put_back_and_then_left_alone(account, config):
    """A statement added to the key policy (here KMS's default: anyone the account's IAM
    allows may decrypt directly) is drift: the next run puts runbook's policy back."""
    apply(config)
    key_id = kms().describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyId"]
    widened = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*",
         "Resource": "*"}]}
    kms().put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(widened))

    result = apply(config)

    assert [(c.action, c.resource, sorted(c.diff)) for c in result.changes] == [
        ("update", f"kms:key {ALIAS}", ["policy"])]
    assert json.loads(kms().get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]) == \
        key_policy("123456789012", config.region)
    again, _ = run_steps(config, [STEP])
    assert again[STEP].changes == [] and again[STEP].api_calls["write"] == 0
