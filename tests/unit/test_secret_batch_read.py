"""Secret.find_all against in-process moto: each secret described by name and claimed,
then the values of the live ones read in one BatchGetSecretValue, and never the value of
a secret another environment owns."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from runbook.aws import naming
from runbook.errors import OwnedElsewhere, PlanError
from runbook.resources.secret import Secret, SecretSpec


def spec(name: str, env: str = "prod") -> SecretSpec:
    return SecretSpec(name, {naming.ENV_TAG: env, naming.STEP_TAG: "store-secrets"},
                      "secrets.db", fields={"engine": "postgres"})


def make(aws, name: str, value: dict, env: str = "prod") -> None:
    aws.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps(value),
        Tags=naming.as_aws({naming.ENV_TAG: env, naming.STEP_TAG: "store-secrets"}))


def calls(aws) -> list[str]:
    """Record the operations sent from now on."""
    sent: list[str] = []
    aws.interceptors.append(lambda service, operation, write: sent.append(operation))
    return sent


def test_two_secrets_are_described_and_their_values_read_in_one_call(aws, api):
    make(aws, "db", {"password": "fake-1"})
    make(aws, "app", {"jwt_secret": "fake-2"})
    sent = calls(aws)

    db, app = Secret().find_all(api, [spec("db"), spec("app")])

    assert (db.value, app.value) == ({"password": "fake-1"}, {"jwt_secret": "fake-2"})
    assert sent == ["DescribeSecret", "DescribeSecret", "BatchGetSecretValue"]


def test_a_missing_secret_and_one_scheduled_for_deletion_have_no_value_to_read(aws, api):
    make(aws, "db", {"password": "fake-1"})
    make(aws, "app", {"jwt_secret": "fake-2"})
    aws.client("secretsmanager").delete_secret(SecretId="app", RecoveryWindowInDays=7)
    sent = calls(aws)

    db, app, missing = Secret().find_all(api, [spec("db"), spec("app"), spec("none")])

    assert db.value == {"password": "fake-1"}
    assert app.deleted_on is not None and app.value is None and missing is None
    assert sent == ["DescribeSecret", "DescribeSecret", "DescribeSecret", "GetSecretValue"]


def test_the_value_of_another_environments_secret_is_never_read(aws, api):
    make(aws, "db", {"password": "fake-1"})
    make(aws, "app", {"jwt_secret": "staging's"}, env="staging")
    sent = calls(aws)

    with pytest.raises(OwnedElsewhere):
        Secret().find_all(api, [spec("db"), spec("app")])

    assert "BatchGetSecretValue" not in sent and "GetSecretValue" not in sent


def test_credentials_that_may_not_batch_read_get_each_value_on_its_own(aws, api):
    make(aws, "db", {"password": "fake-1"})
    make(aws, "app", {"jwt_secret": "fake-2"})

    def deny(service, operation, write):
        if operation == "BatchGetSecretValue":
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": "no VPC endpoint policy allows it"}},
                              operation)

    aws.interceptors.append(deny)
    sent = calls(aws)

    db, app = Secret().find_all(api, [spec("db"), spec("app")])

    assert (db.value, app.value) == ({"password": "fake-1"}, {"jwt_secret": "fake-2"})
    assert sent[-2:] == ["GetSecretValue", "GetSecretValue"]


def test_a_secret_the_batch_could_not_read_fails_as_its_own_read_would(aws, api):
    make(aws, "db", {"password": "fake-1"})
    make(aws, "app", {"jwt_secret": "fake-2"})
    found = [Secret().by_name(api, spec(name))[0] for name in ("db", "app")]
    aws.client("secretsmanager").delete_secret(SecretId="app", RecoveryWindowInDays=7)

    with pytest.raises(ClientError) as failed:
        Secret.read_values(api, found)

    assert failed.value.response["Error"]["Code"] == "InvalidRequestException"
    assert failed.value.operation_name == "BatchGetSecretValue"


def test_a_value_that_is_not_a_json_object_is_refused_without_showing_it(aws, api):
    make(aws, "db", {"password": "fake-1"})
    aws.client("secretsmanager").create_secret(
        Name="app", SecretString="not-json-fake-value",
        Tags=naming.as_aws({naming.ENV_TAG: "prod", naming.STEP_TAG: "store-secrets"}))

    with pytest.raises(PlanError) as refused:
        Secret().find_all(api, [spec("db"), spec("app")])

    assert "not a JSON object" in str(refused.value)
    assert "not-json-fake-value" not in str(refused.value)
