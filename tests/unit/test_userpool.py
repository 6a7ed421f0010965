"""runbook.userpool: the UpdateUserPool / UpdateUserPoolClient requests that keep every
current setting, built from botocore's service model, and merge_triggers."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import botocore.session
import pytest
from botocore.validate import ParamValidator

from runbook.aws import userpool

MODEL = botocore.session.get_session().get_service_model("cognito-idp")
ARN = "arn:aws:lambda:eu-central-1:123456789012:function:"
NOW = datetime(2024, 5, 1, tzinfo=timezone.utc)

# What DescribeUserPool returns for a real, fully configured pool (values as AWS shows them).
DESCRIBED_POOL = {
    "Id": "eu-central-1_Ab12Cd34E",
    "Name": "matbakh-prod-users",
    "Arn": "arn:aws:cognito-idp:eu-central-1:123456789012:userpool/eu-central-1_Ab12Cd34E",
    "Status": "Enabled",
    "CreationDate": NOW,
    "LastModifiedDate": NOW,
    "EstimatedNumberOfUsers": 42,
    "Domain": "matbakh-login",
    "SchemaAttributes": [{"Name": "custom:role", "AttributeDataType": "String",
                          "DeveloperOnlyAttribute": False, "Mutable": True, "Required": False,
                          "StringAttributeConstraints": {"MinLength": "0", "MaxLength": "32"}}],
    "UsernameAttributes": ["email"],
    "UsernameConfiguration": {"CaseSensitive": False},
    "SmsConfigurationFailure": "SNSSandbox",
    "EmailConfigurationFailure": "",
    "Policies": {"PasswordPolicy": {"MinimumLength": 12, "RequireUppercase": True,
                                    "RequireLowercase": True, "RequireNumbers": True,
                                    "RequireSymbols": True, "TemporaryPasswordValidityDays": 3,
                                    "PasswordHistorySize": 5},
                 "SignInPolicy": {"AllowedFirstAuthFactors": ["PASSWORD"]}},
    "DeletionProtection": "ACTIVE",
    "LambdaConfig": {"PostAuthentication": ARN + "audit",
                     "CustomEmailSender": {"LambdaVersion": "V1_0", "LambdaArn": ARN + "mail"},
                     "KMSKeyID": "arn:aws:kms:eu-central-1:123456789012:key/1234"},
    "AutoVerifiedAttributes": ["email"],
    "SmsVerificationMessage": "Code {####}",
    "EmailVerificationMessage": "Your code is {####}",
    "EmailVerificationSubject": "Your code",
    "VerificationMessageTemplate": {"SmsMessage": "Code {####}",
                                    "EmailMessage": "Your code is {####}",
                                    "EmailSubject": "Your code",
                                    "DefaultEmailOption": "CONFIRM_WITH_CODE"},
    "SmsAuthenticationMessage": "Sign-in code {####}",
    "UserAttributeUpdateSettings": {"AttributesRequireVerificationBeforeUpdate": ["email"]},
    "MfaConfiguration": "OPTIONAL",
    "DeviceConfiguration": {"ChallengeRequiredOnNewDevice": True,
                            "DeviceOnlyRememberedOnUserPrompt": True},
    "EmailConfiguration": {"EmailSendingAccount": "DEVELOPER",
                           "SourceArn": "arn:aws:ses:eu-central-1:123456789012:identity/x.de",
                           "From": "no-reply@x.de"},
    "SmsConfiguration": {"SnsCallerArn": "arn:aws:iam::123456789012:role/sms",
                         "ExternalId": "ext", "SnsRegion": "eu-central-1"},
    "UserPoolTags": {"runbook:env": "prod", "owner": "team"},
    "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True, "UnusedAccountValidityDays": 3,
                              "InviteMessageTemplate": {"EmailSubject": "Welcome"}},
    "UserPoolAddOns": {"AdvancedSecurityMode": "AUDIT"},
    "AccountRecoverySetting": {"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
    "UserPoolTier": "PLUS",
}

READ_ONLY = {"Id", "Name", "Arn", "Status", "CreationDate", "LastModifiedDate",
             "EstimatedNumberOfUsers", "Domain", "SchemaAttributes", "UsernameAttributes",
             "UsernameConfiguration", "SmsConfigurationFailure", "EmailConfigurationFailure"}


def valid_for(operation: str, request: dict) -> None:
    """Raise unless botocore would send `request` (as boto3 validates before sending)."""
    report = ParamValidator().validate(request, MODEL.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def example(shape, depth=0):
    """A value of `shape` that botocore accepts, with every member of every structure."""
    kind = shape.type_name
    if kind == "structure":
        return {name: example(member, depth + 1) for name, member in shape.members.items()}
    if kind == "list":
        return [example(shape.member, depth + 1)]
    if kind == "map":
        return {"k": example(shape.value, depth + 1)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        return "x" * max(shape.metadata.get("min", 1), 1)
    if kind in ("integer", "long"):
        return max(shape.metadata.get("min", 1), 1)
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return NOW
    return b"x"


# -- update_request -------------------------------------------------------------------

def test_update_request_carries_every_member_update_user_pool_accepts_and_drops_the_rest():
    request = userpool.update_request(DESCRIBED_POOL)

    accepted = set(MODEL.operation_model("UpdateUserPool").input_shape.members)
    carried = {("UserPoolId" if k == "Id" else "PoolName" if k == "Name" else k)
               for k in DESCRIBED_POOL} & accepted
    assert set(request) == carried
    assert request["UserPoolId"] == "eu-central-1_Ab12Cd34E"
    assert request["PoolName"] == "matbakh-prod-users"
    for key in READ_ONLY - {"Id", "Name"}:
        assert key not in request
    for key, value in DESCRIBED_POOL.items():
        if key in request and key not in ("AdminCreateUserConfig", "Policies"):
            assert request[key] == value, key
    valid_for("UpdateUserPool", request)


def test_update_request_follows_the_model_not_a_hand_kept_list():
    """Every member DescribeUserPool can return that UpdateUserPool accepts is carried,
    including members added to the API after this was written."""
    described = example(MODEL.operation_model("DescribeUserPool").output_shape)["UserPool"]
    request = userpool.update_request(described)

    update_members = set(MODEL.operation_model("UpdateUserPool").input_shape.members)
    renamed = {"Id": "UserPoolId", "Name": "PoolName"}
    expected = {renamed.get(k, k) for k in described} & update_members
    assert set(request) == expected
    assert {"DcrConfiguration", "UserPoolTier", "KeyConfiguration"} & update_members <= set(request)


def test_changes_are_applied_on_top_and_none_leaves_a_setting_to_its_default():
    lambda_config = {"PreSignUp": ARN + "pre-signup"}
    request = userpool.update_request(DESCRIBED_POOL, LambdaConfig=lambda_config,
                                      SmsAuthenticationMessage=None)
    assert request["LambdaConfig"] == lambda_config
    assert "SmsAuthenticationMessage" not in request
    assert request["Policies"]["PasswordPolicy"]["MinimumLength"] == 12


def test_an_unknown_change_is_a_programming_error():
    with pytest.raises(TypeError, match="UsernameAttributes"):
        userpool.update_request(DESCRIBED_POOL, UsernameAttributes=["email"])


def test_update_request_does_not_modify_the_description():
    described = copy.deepcopy(DESCRIBED_POOL)
    userpool.update_request(described, LambdaConfig={})
    assert described == DESCRIBED_POOL


def test_the_deprecated_unused_account_validity_days_is_not_sent_back():
    # AWS: "Please use TemporaryPasswordValidityDays in PasswordPolicy instead of
    # UnusedAccountValidityDays", yet DescribeUserPool still returns it.
    request = userpool.update_request(DESCRIBED_POOL)
    assert "UnusedAccountValidityDays" not in request["AdminCreateUserConfig"]
    assert request["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert request["Policies"]["PasswordPolicy"]["TemporaryPasswordValidityDays"] == 3


def test_unused_account_validity_days_becomes_the_temporary_password_validity_it_means():
    described = copy.deepcopy(DESCRIBED_POOL)
    del described["Policies"]["PasswordPolicy"]["TemporaryPasswordValidityDays"]
    described["AdminCreateUserConfig"]["UnusedAccountValidityDays"] = 9
    request = userpool.update_request(described)
    assert request["Policies"]["PasswordPolicy"]["TemporaryPasswordValidityDays"] == 9
    assert "UnusedAccountValidityDays" not in request["AdminCreateUserConfig"]


def test_empty_values_botocore_would_refuse_are_dropped_meaningful_empty_ones_kept():
    described = {
        "Id": "eu-central-1_Ab12Cd34E",
        "EmailVerificationMessage": "",              # min length 6
        "UserPoolAddOns": {},                        # AdvancedSecurityMode is required
        "SmsAuthenticationMessage": None,
        "AutoVerifiedAttributes": [],                # "verify nothing" is a setting
        "LambdaConfig": {},                          # "no triggers" too
        "UserPoolTags": {},
    }
    request = userpool.update_request(described)
    assert request == {"UserPoolId": "eu-central-1_Ab12Cd34E", "AutoVerifiedAttributes": [],
                       "LambdaConfig": {}, "UserPoolTags": {}}
    valid_for("UpdateUserPool", request)


def test_a_description_without_the_pool_id_is_refused():
    with pytest.raises(ValueError, match="UserPoolId"):
        userpool.update_request({"Name": "x"})


# -- client_update_request ------------------------------------------------------------

DESCRIBED_CLIENT = {
    "UserPoolId": "eu-central-1_Ab12Cd34E",
    "ClientName": "matbakh-prod-web",
    "ClientId": "1example23456789",
    "ClientSecret": "do-not-send",
    "ClientType": "PUBLIC",
    "CreationDate": NOW,
    "LastModifiedDate": NOW,
    "RefreshTokenValidity": 10,
    "AccessTokenValidity": 60,
    "IdTokenValidity": 60,
    "TokenValidityUnits": {"AccessToken": "minutes", "IdToken": "minutes",
                           "RefreshToken": "days"},
    "ReadAttributes": ["email", "custom:role"],
    "WriteAttributes": ["email"],
    "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH"],
    "SupportedIdentityProviders": ["COGNITO"],
    "CallbackURLs": ["https://app.example.com/cb"],
    "LogoutURLs": ["https://app.example.com/out"],
    "AllowedOAuthFlows": ["code"],
    "AllowedOAuthScopes": ["openid"],
    "AllowedOAuthFlowsUserPoolClient": True,
    "PreventUserExistenceErrors": "LEGACY",
    "EnableTokenRevocation": True,
    "EnablePropagateAdditionalUserContextData": False,
    "AuthSessionValidity": 3,
}


def test_client_update_request_keeps_every_setting_and_never_sends_the_secret():
    flows = ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"]
    request = userpool.client_update_request(DESCRIBED_CLIENT, ExplicitAuthFlows=flows)

    for key in ("ClientSecret", "ClientType", "CreationDate", "LastModifiedDate"):
        assert key not in request
    expected = {k: v for k, v in DESCRIBED_CLIENT.items()
                if k not in ("ClientSecret", "ClientType", "CreationDate", "LastModifiedDate")}
    assert request == {**expected, "ExplicitAuthFlows": flows}
    valid_for("UpdateUserPoolClient", request)


def test_client_update_request_follows_the_model():
    described = example(MODEL.operation_model("DescribeUserPoolClient").output_shape)[
        "UserPoolClient"]
    request = userpool.client_update_request(described)
    accepted = set(MODEL.operation_model("UpdateUserPoolClient").input_shape.members)
    assert set(request) == set(described) & accepted
    assert "ClientSecret" not in request


# -- merge_triggers -------------------------------------------------------------------

def test_merge_triggers_sets_runbooks_triggers_and_keeps_everyone_elses():
    current = DESCRIBED_POOL["LambdaConfig"]
    merged = userpool.merge_triggers(current, {"PreSignUp": ARN + "pre-signup"})
    assert merged == {**current, "PreSignUp": ARN + "pre-signup"}
    assert "PreSignUp" not in current


def test_merge_triggers_replaces_runbooks_own_trigger():
    merged = userpool.merge_triggers({"PreSignUp": ARN + "old", "PostAuthentication": ARN + "a"},
                                     {"PreSignUp": ARN + "new"})
    assert merged == {"PreSignUp": ARN + "new", "PostAuthentication": ARN + "a"}


def test_merge_triggers_on_a_pool_without_triggers():
    assert userpool.merge_triggers(None, {"PostConfirmation": ARN + "pc"}) == {
        "PostConfirmation": ARN + "pc"}


def test_merge_triggers_keeps_the_versioned_pre_token_generation_in_step():
    current = {"PreTokenGeneration": ARN + "old",
               "PreTokenGenerationConfig": {"LambdaVersion": "V2_0", "LambdaArn": ARN + "old"}}
    merged = userpool.merge_triggers(current, {"PreTokenGeneration": ARN + "new"})
    assert merged["PreTokenGenerationConfig"] == {"LambdaVersion": "V2_0", "LambdaArn": ARN + "new"}


@pytest.mark.parametrize("desired, message", [
    ({"PreSignup": ARN + "x"}, "not a Cognito trigger"),      # misspelt
    ({"KMSKeyID": ARN + "x"}, "not a Cognito trigger"),
    ({"PreSignUp": "(known after apply)"}, "not a Lambda function ARN"),
])
def test_merge_triggers_refuses_what_is_not_a_trigger_arn(desired, message):
    with pytest.raises(ValueError, match=message):
        userpool.merge_triggers({}, desired)
