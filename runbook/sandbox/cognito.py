"""Cognito's Lambda triggers, fired in the sandbox as Cognito fires them on AWS.

moto's user pools keep users but call no trigger. `SandboxCognito` wraps the user-facing
calls the integration test and `runbook invoke` need, and around each one runs the
triggers configured on the pool (read back from the pool's LambdaConfig, so a trigger
that deploy steps failed to attach does not fire) through the local invoker, with
events shaped like the ones AWS sends (see ../shared/fixtures/events/):

  sign_up                  PreSignUp_SignUp before the user is created; a failure
                           refuses the sign-up (UserLambdaValidationException) and no
                           user is created. A response with autoConfirmUser confirms
                           the user, and as on AWS that fires no PostConfirmation.
  confirm_sign_up          PostConfirmation_ConfirmSignUp after the confirmation.
  admin_confirm_sign_up    the same, for a confirmation by an administrator.
  confirm_forgot_password  PostConfirmation_ConfirmForgotPassword after the reset.
  sign_in                  PreAuthentication / PostAuthentication around the sign-in,
                           when configured.

Cognito gives a trigger 5 seconds; the invoker enforces it.
"""

from __future__ import annotations

import copy
import uuid

from runbook.errors import RunbookError

SDK_VERSION = "aws-sdk-unknown-unknown"


class TriggerFailed(RunbookError):
    """What Cognito answers when a trigger fails: UserLambdaValidationException."""

    code = "UserLambdaValidationException"

    def __init__(self, trigger: str, invocation):
        self.trigger = trigger
        self.invocation = invocation
        message = invocation.error_message or invocation.error_type or "failed"
        super().__init__(f"{trigger} failed with error {message}.")


class SandboxCognito:
    def __init__(self, aws, invoker, *, pool_id: str, client_id: str):
        self.aws = aws
        self.invoker = invoker
        self.pool_id = pool_id
        self.client_id = client_id
        self.invocations: list = []

    @property
    def idp(self):
        return self.aws.client("cognito-idp")

    # -- the user-facing calls --------------------------------------------------------

    def sign_up(self, email: str, password: str, attributes: dict | None = None) -> dict:
        attributes = {"email": email, **(attributes or {})}
        response = {"autoConfirmUser": False, "autoVerifyEmail": False, "autoVerifyPhone": False}
        result = self._fire("PreSignUp", "PreSignUp_SignUp", email, {
            "userAttributes": dict(attributes), "validationData": None, "clientMetadata": {}},
            response)
        if result is not None:
            response = result.get("response") or response
        created = self.idp.sign_up(
            ClientId=self.client_id, Username=email, Password=password,
            UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()
                            if k != "email"] + [{"Name": "email", "Value": email}])
        confirmed = bool(created.get("UserConfirmed"))
        if response.get("autoConfirmUser") and not confirmed:
            # Cognito confirms the user itself: no PostConfirmation on AWS either.
            self.idp.admin_confirm_sign_up(UserPoolId=self.pool_id, Username=email)
            confirmed = True
        if response.get("autoVerifyEmail"):
            self.idp.admin_update_user_attributes(
                UserPoolId=self.pool_id, Username=email,
                UserAttributes=[{"Name": "email_verified", "Value": "true"}])
        return {"UserSub": created["UserSub"], "UserConfirmed": confirmed}

    def confirm_sign_up(self, email: str, code: str = "123456") -> None:
        self.idp.confirm_sign_up(ClientId=self.client_id, Username=email, ConfirmationCode=code)
        self._post_confirmation(email, "PostConfirmation_ConfirmSignUp")

    def admin_confirm_sign_up(self, email: str) -> None:
        """AdminConfirmSignUp: on AWS it fires PostConfirmation_ConfirmSignUp too."""
        self.idp.admin_confirm_sign_up(UserPoolId=self.pool_id, Username=email)
        self._post_confirmation(email, "PostConfirmation_ConfirmSignUp")

    def admin_delete_user(self, email: str) -> None:
        self.idp.admin_delete_user(UserPoolId=self.pool_id, Username=email)

    def confirm_forgot_password(self, email: str, new_password: str, code: str = "123456") -> None:
        self.idp.confirm_forgot_password(ClientId=self.client_id, Username=email,
                                         ConfirmationCode=code, Password=new_password)
        self._post_confirmation(email, "PostConfirmation_ConfirmForgotPassword")

    def sign_in(self, email: str, password: str) -> dict:
        attributes = self._attributes(email)
        self._fire("PreAuthentication", "PreAuthentication_Authentication", email,
                   {"userAttributes": attributes, "validationData": {}}, {})
        result = self.idp.initiate_auth(ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                        AuthParameters={"USERNAME": email, "PASSWORD": password})
        self._fire("PostAuthentication", "PostAuthentication_Authentication", email,
                   {"userAttributes": attributes, "newDeviceUsed": False, "clientMetadata": {}},
                   {})
        return result["AuthenticationResult"]

    # -- triggers ---------------------------------------------------------------------

    def _post_confirmation(self, email: str, source: str) -> None:
        attributes = self._attributes(email)
        attributes["cognito:user_status"] = "CONFIRMED"
        self._fire("PostConfirmation", source, email,
                   {"userAttributes": attributes, "clientMetadata": {}}, {})

    def _attributes(self, email: str) -> dict:
        user = self.idp.admin_get_user(UserPoolId=self.pool_id, Username=email)
        attributes = {a["Name"]: a["Value"] for a in user.get("UserAttributes", ())}
        attributes.setdefault("cognito:email_alias", attributes.get("email", email))
        return attributes

    def triggers(self) -> dict:
        pool = self.idp.describe_user_pool(UserPoolId=self.pool_id)["UserPool"]
        return pool.get("LambdaConfig") or {}

    def _fire(self, trigger: str, source: str, email: str, request: dict, response: dict):
        """Invoke the function configured for `trigger`, if any; its result, or None."""
        arn = self.triggers().get(trigger)
        if not arn:
            return None
        event = {
            "version": "1", "region": self.aws.region, "userPoolId": self.pool_id,
            "userName": self._user_name(email, request),
            "callerContext": {"awsSdkVersion": SDK_VERSION, "clientId": self.client_id},
            "triggerSource": source, "request": request, "response": copy.deepcopy(response),
        }
        invocation = self.invoker.invoke(arn.rsplit(":", 1)[-1], event, trigger=True)
        self.invocations.append(invocation)
        if not invocation.ok:
            raise TriggerFailed(trigger, invocation)
        return invocation.result if isinstance(invocation.result, dict) else None

    @staticmethod
    def _user_name(email: str, request: dict) -> str:
        # A pool whose username is the e-mail address names a user by a UUID, its sub;
        # before sign-up (PreSignUp) moto has not made it yet, so a fresh one stands in.
        return (request.get("userAttributes") or {}).get("sub") or str(uuid.uuid4())


class LiveCognito:
    """The same calls as SandboxCognito against a real pool, where Cognito fires the
    triggers itself: a failed trigger surfaces as the call's UserLambdaValidationException."""

    def __init__(self, aws, *, pool_id: str, client_id: str):
        self.aws = aws
        self.pool_id = pool_id
        self.client_id = client_id
        self.invocations: list = []  # Cognito's own invocations are not seen from here

    @property
    def idp(self):
        return self.aws.client("cognito-idp")

    def sign_up(self, email: str, password: str, attributes: dict | None = None) -> dict:
        attributes = {"email": email, **(attributes or {})}
        created = self.idp.sign_up(
            ClientId=self.client_id, Username=email, Password=password,
            UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()])
        return {"UserSub": created["UserSub"], "UserConfirmed": bool(created.get("UserConfirmed"))}

    def admin_confirm_sign_up(self, email: str) -> None:
        self.idp.admin_confirm_sign_up(UserPoolId=self.pool_id, Username=email)

    def sign_in(self, email: str, password: str) -> dict:
        return self.idp.initiate_auth(
            ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": email, "PASSWORD": password})["AuthenticationResult"]

    def admin_delete_user(self, email: str) -> None:
        self.idp.admin_delete_user(UserPoolId=self.pool_id, Username=email)


def users(ctx, *, pool_id: str, client_id: str):
    """The user calls a step makes: in a dry run through SandboxCognito, which fires the
    pool's triggers with the local invoker; live, straight to Cognito."""
    if not ctx.dry_run:
        return LiveCognito(ctx.aws, pool_id=pool_id, client_id=client_id)
    from runbook.functions.invoke import sandbox_invoker

    return SandboxCognito(ctx.aws, sandbox_invoker(ctx.aws, ctx.database_dsn, ctx.database_tls),
                          pool_id=pool_id, client_id=client_id)
