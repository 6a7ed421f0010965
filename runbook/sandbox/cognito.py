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
                           when configured; USER_PASSWORD_AUTH, or with admin=True
                           ADMIN_USER_PASSWORD_AUTH.
  forgot_password          ForgotPassword.

UserMigration (moto stores it and never fires it): a password sign-in (either flow) or a
ForgotPassword for a user the pool does not have fires UserMigration_Authentication or
UserMigration_ForgotPassword, with the name as typed and, for a sign-in, the password.
Its response is checked as strictly as Cognito checks it (userAttributes required, every
value a string, a known finalUserStatus, messageAction and delivery medium); a failed
or malformed one refuses the call with UserNotFoundException, as Cognito does, and no
user is made. Otherwise the user is created with the returned attributes and status
(CONFIRMED: the password it signed in with is theirs; RESET_REQUIRED, or a forgot-password
migration: a reset is pending), without a message, and the call goes on as for any user:
the sign-in fires PreAuthentication and PostAuthentication and returns tokens, which is
what Cognito fires after a migration (no PostConfirmation: it fires on ConfirmSignUp,
AdminConfirmSignUp and ConfirmForgotPassword only).

The pool's usernames are case-insensitive (runbook creates it with CaseSensitive false);
moto matches them exactly, so the stand-in lower-cases the names it passes to moto.

Cognito gives a trigger 5 seconds; the invoker enforces it.
"""

from __future__ import annotations

import copy
import secrets
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


class FlowNotEnabled(RunbookError):
    """What Cognito answers a sign-in in a flow the app client does not allow."""

    code = "InvalidParameterException"

    def __init__(self, flow: str):
        super().__init__(f"Auth flow not enabled for this client ({flow} is not among the "
                         "client's ExplicitAuthFlows)")


class MigrationFailed(RunbookError):
    """What Cognito answers when the UserMigration trigger fails or answers what it cannot
    use: UserNotFoundException, whatever the reason."""

    code = "UserNotFoundException"

    def __init__(self, client_id: str, invocation=None):
        self.invocation = invocation
        super().__init__(f"Exception migrating user in app client {client_id}")


MIGRATION = "UserMigration"
MIGRATION_ON_SIGN_IN = "UserMigration_Authentication"
MIGRATION_ON_FORGOT_PASSWORD = "UserMigration_ForgotPassword"
FINAL_STATUSES = ("CONFIRMED", "RESET_REQUIRED")
MESSAGE_ACTIONS = ("SUPPRESS", "RESEND")
DELIVERY_MEDIUMS = ("EMAIL", "SMS")


class SandboxCognito:
    def __init__(self, aws, invoker, *, pool_id: str, client_id: str):
        self.aws = aws
        self.invoker = invoker
        self.pool_id = pool_id
        self.client_id = client_id
        self.invocations: list = []
        self.fired: list[tuple[str, object]] = []   # (trigger, invocation), in order
        self._case_sensitive: bool | None = None
        self._pool_arn = ""

    @property
    def idp(self):
        return self.aws.client("cognito-idp")

    def _name(self, email: str) -> str:
        """The username moto is given: lower-cased unless the pool is case-sensitive."""
        if self._case_sensitive is None:
            pool = self.idp.describe_user_pool(UserPoolId=self.pool_id)["UserPool"]
            configured = (pool.get("UsernameConfiguration") or {}).get("CaseSensitive")
            self._case_sensitive = configured is not False
            self._pool_arn = pool["Arn"]
        return email if self._case_sensitive else email.lower()

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
            ClientId=self.client_id, Username=self._name(email), Password=password,
            UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()
                            if k != "email"] + [{"Name": "email", "Value": email}])
        confirmed = bool(created.get("UserConfirmed"))
        if response.get("autoConfirmUser") and not confirmed:
            # Cognito confirms the user itself: no PostConfirmation on AWS either.
            self.idp.admin_confirm_sign_up(UserPoolId=self.pool_id, Username=self._name(email))
            confirmed = True
        if response.get("autoVerifyEmail"):
            self.idp.admin_update_user_attributes(
                UserPoolId=self.pool_id, Username=self._name(email),
                UserAttributes=[{"Name": "email_verified", "Value": "true"}])
        return {"UserSub": created["UserSub"], "UserConfirmed": confirmed}

    def confirm_sign_up(self, email: str, code: str = "123456") -> None:
        self.idp.confirm_sign_up(ClientId=self.client_id, Username=self._name(email),
                                 ConfirmationCode=code)
        self._post_confirmation(email, "PostConfirmation_ConfirmSignUp")

    def admin_confirm_sign_up(self, email: str) -> None:
        """AdminConfirmSignUp: on AWS it fires PostConfirmation_ConfirmSignUp too."""
        self.idp.admin_confirm_sign_up(UserPoolId=self.pool_id, Username=self._name(email))
        self._post_confirmation(email, "PostConfirmation_ConfirmSignUp")

    def admin_delete_user(self, email: str) -> None:
        self.idp.admin_delete_user(UserPoolId=self.pool_id, Username=self._name(email))

    def admin_get_user(self, email: str) -> dict:
        return self.idp.admin_get_user(UserPoolId=self.pool_id, Username=self._name(email))

    def forgot_password(self, email: str) -> dict:
        """ForgotPassword; for a user the pool does not have, UserMigration first."""
        if not self._exists(email):
            self._migrate(email, MIGRATION_ON_FORGOT_PASSWORD, None)
        return self.idp.forgot_password(ClientId=self.client_id, Username=self._name(email))

    def confirm_forgot_password(self, email: str, new_password: str, code: str = "123456") -> None:
        self.idp.confirm_forgot_password(ClientId=self.client_id, Username=self._name(email),
                                         ConfirmationCode=code, Password=new_password)
        self._post_confirmation(email, "PostConfirmation_ConfirmForgotPassword")

    def sign_in(self, email: str, password: str, *, admin: bool = False) -> dict:
        """USER_PASSWORD_AUTH (admin: ADMIN_USER_PASSWORD_AUTH), with `email` as typed."""
        self._check_flow("ALLOW_ADMIN_USER_PASSWORD_AUTH" if admin else "ALLOW_USER_PASSWORD_AUTH")
        if not self._exists(email):
            self._migrate(email, MIGRATION_ON_SIGN_IN, password)
        attributes = self._attributes(email)
        self._fire("PreAuthentication", "PreAuthentication_Authentication", email,
                   {"userAttributes": attributes, "validationData": {}}, {})
        parameters = {"USERNAME": self._name(email), "PASSWORD": password}
        if admin:
            result = self.idp.admin_initiate_auth(
                UserPoolId=self.pool_id, ClientId=self.client_id,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH", AuthParameters=parameters)
        else:
            result = self.idp.initiate_auth(ClientId=self.client_id,
                                            AuthFlow="USER_PASSWORD_AUTH",
                                            AuthParameters=parameters)
        self._fire("PostAuthentication", "PostAuthentication_Authentication", email,
                   {"userAttributes": attributes, "newDeviceUsed": False, "clientMetadata": {}},
                   {})
        return result["AuthenticationResult"]

    def _check_flow(self, flow: str) -> None:
        """Cognito refuses a flow the app client does not allow; moto does not check."""
        client = self.idp.describe_user_pool_client(UserPoolId=self.pool_id,
                                                    ClientId=self.client_id)["UserPoolClient"]
        if flow not in (client.get("ExplicitAuthFlows") or ()):
            raise FlowNotEnabled(flow)

    # -- UserMigration -----------------------------------------------------------------

    def _exists(self, email: str) -> bool:
        try:
            self.admin_get_user(email)
        except self.idp.exceptions.UserNotFoundException:
            return False
        return True

    def _migrate(self, email: str, source: str, password: str | None) -> None:
        """Fire UserMigration for a user the pool does not have and create the user from
        its answer. Without the trigger, nothing: the call that follows fails as Cognito
        fails it for an unknown user."""
        if not self.triggers().get(MIGRATION):
            return
        request = {"validationData": {}, "clientMetadata": {}}
        if password is not None:
            request["password"] = password
        empty = {"userAttributes": None, "forceAliasCreation": None, "enableSMSMFA": None,
                 "finalUserStatus": None, "messageAction": None,
                 "desiredDeliveryMediums": None}
        try:
            result = self._fire(MIGRATION, source, email, request, empty, user_name=email)
        except TriggerFailed as exc:
            raise MigrationFailed(self.client_id, exc.invocation) from None
        response = (result or {}).get("response")
        attributes = _migrated_attributes(response)
        if attributes is None:
            raise MigrationFailed(self.client_id, self.fired[-1][1])
        status = response.get("finalUserStatus")
        self.idp.admin_create_user(
            UserPoolId=self.pool_id, Username=self._name(email), MessageAction="SUPPRESS",
            UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()])
        if source == MIGRATION_ON_SIGN_IN and status == "CONFIRMED":
            try:
                self.idp.admin_set_user_password(UserPoolId=self.pool_id,
                                                 Username=self._name(email),
                                                 Password=password, Permanent=True)
            except self.idp.exceptions.InvalidPasswordException:
                # Cognito does not hold a migrated password to the pool's policy: a
                # legacy password may be shorter or plainer than it asks of new ones.
                from runbook.sandbox.cognito_pool import set_password_unchecked

                set_password_unchecked(self._pool_arn, self._name(email), password)
        else:
            # A reset is pending: no password of theirs is known. moto resets only a
            # confirmed user, so a throwaway password confirms it first.
            self.idp.admin_set_user_password(UserPoolId=self.pool_id,
                                             Username=self._name(email),
                                             Password=_throwaway_password(), Permanent=True)
            self.idp.admin_reset_user_password(UserPoolId=self.pool_id,
                                               Username=self._name(email))

    # -- triggers ---------------------------------------------------------------------

    def _post_confirmation(self, email: str, source: str) -> None:
        attributes = self._attributes(email)
        attributes["cognito:user_status"] = "CONFIRMED"
        self._fire("PostConfirmation", source, email,
                   {"userAttributes": attributes, "clientMetadata": {}}, {})

    def _attributes(self, email: str) -> dict:
        user = self.admin_get_user(email)
        attributes = {a["Name"]: a["Value"] for a in user.get("UserAttributes", ())}
        attributes.setdefault("cognito:email_alias", attributes.get("email", email))
        return attributes

    def triggers(self) -> dict:
        pool = self.idp.describe_user_pool(UserPoolId=self.pool_id)["UserPool"]
        return pool.get("LambdaConfig") or {}

    def _fire(self, trigger: str, source: str, email: str, request: dict, response: dict,
              *, user_name: str | None = None):
        """Invoke the function configured for `trigger`, if any; its result, or None."""
        arn = self.triggers().get(trigger)
        if not arn:
            return None
        event = {
            "version": "1", "region": self.aws.region, "userPoolId": self.pool_id,
            "userName": user_name or self._user_name(email, request),
            "callerContext": {"awsSdkVersion": SDK_VERSION, "clientId": self.client_id},
            "triggerSource": source, "request": request, "response": copy.deepcopy(response),
        }
        invocation = self.invoker.invoke(arn.rsplit(":", 1)[-1], event, trigger=True)
        self.invocations.append(invocation)
        self.fired.append((trigger, invocation))
        if not invocation.ok:
            raise TriggerFailed(trigger, invocation)
        return invocation.result if isinstance(invocation.result, dict) else None

    @staticmethod
    def _user_name(email: str, request: dict) -> str:
        # A pool whose username is the e-mail address names a user by a UUID, its sub;
        # before sign-up (PreSignUp) moto has not made it yet, so a fresh one stands in.
        return (request.get("userAttributes") or {}).get("sub") or str(uuid.uuid4())


def _migrated_attributes(response) -> dict | None:
    """The attributes of a UserMigration answer, or None where Cognito would refuse it:
    no userAttributes, a value that is not a string, an unknown finalUserStatus,
    messageAction or delivery medium."""
    if not isinstance(response, dict):
        return None
    attributes = response.get("userAttributes")
    if not isinstance(attributes, dict) or not attributes:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
        return None
    if response.get("finalUserStatus") not in (None, *FINAL_STATUSES):
        return None
    if response.get("messageAction") not in (None, *MESSAGE_ACTIONS):
        return None
    mediums = response.get("desiredDeliveryMediums")
    if mediums is not None and (not isinstance(mediums, list)
                                or not set(mediums) <= set(DELIVERY_MEDIUMS)):
        return None
    return attributes


def _throwaway_password() -> str:
    return "Aa1!" + secrets.token_urlsafe(24)


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

    def sign_in(self, email: str, password: str, *, admin: bool = False) -> dict:
        parameters = {"USERNAME": email, "PASSWORD": password}
        if admin:
            return self.idp.admin_initiate_auth(
                UserPoolId=self.pool_id, ClientId=self.client_id,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters=parameters)["AuthenticationResult"]
        return self.idp.initiate_auth(ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                      AuthParameters=parameters)["AuthenticationResult"]

    def admin_get_user(self, email: str) -> dict:
        return self.idp.admin_get_user(UserPoolId=self.pool_id, Username=email)

    def forgot_password(self, email: str) -> dict:
        return self.idp.forgot_password(ClientId=self.client_id, Username=email)

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
