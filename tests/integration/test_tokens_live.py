"""Live, the integration test talks to Cognito itself and fetches the pool's JWKS from
where AWS_ENDPOINT_URL points, against a moto server."""

from __future__ import annotations

from runbook.aws import tokens
from runbook.aws.clients import ClientFactory
from tests.conftest import REGION


def test_live_calls_and_the_jwks_work_through_aws_endpoint_url(moto_endpoint):
    """Live, runbook talks to Cognito itself and fetches the JWKS from where
    AWS_ENDPOINT_URL points (the moto server here), not from AWS's URL."""
    from runbook.sandbox.cognito import LiveCognito
    from runbook.steps.integration_test import cognito_endpoint, new_password

    aws = ClientFactory(REGION)  # endpoint from the environment, as boto3 resolves it
    idp = aws.client("cognito-idp")
    pool = idp.create_user_pool(PoolName="live", UsernameAttributes=["email"],
                                Schema=[{"Name": "role", "AttributeDataType": "String",
                                         "Mutable": True}])["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="web",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    )["UserPoolClient"]["ClientId"]
    users = LiveCognito(aws, pool_id=pool, client_id=client)
    password = new_password(12)
    users.sign_up("live.user@example.com", password, {"custom:role": "runbook-it"})
    users.admin_confirm_sign_up("live.user@example.com")
    result = users.sign_in("live.user@example.com", password)

    assert cognito_endpoint(aws) == moto_endpoint
    checked = tokens.verify(result["IdToken"], result["AccessToken"],
                            tokens.Pool(REGION, pool, client),
                            tokens.key_source(tokens.Pool(REGION, pool, client),
                                              cognito_endpoint(aws)),
                            {"custom:role": "runbook-it"})
    assert checked["kid"] == "dummy"  # moto's key id; AWS names its keys otherwise
    users.admin_delete_user("live.user@example.com")
    assert idp.list_users(UserPoolId=pool)["Users"] == []
