"""Step `cognito`: the user pool (e-mail is the username), its custom attributes, the
Pre-SignUp function and trigger, and the web app client.

The pool is found by `cognito.pool_id`, else by its name (pool names are not unique in
Cognito, so several pools of that name are refused rather than guessed between). A pool
made before runbook is adopted and tagged, never duplicated.

Every change to an existing pool or client goes through `runbook.userpool`, which sends
the resource's whole current configuration: UpdateUserPool and UpdateUserPoolClient reset
whatever a request omits. The pool is described again right before each update, so that
a setting changed since the plan (a trigger another step attached) is not lost. Tags are
added the same way, through UpdateUserPool's `UserPoolTags`, not TagResource: moto does
not implement TagResource, and one code path must serve the sandbox and AWS alike.

Sign-in with the e-mail address (`UsernameAttributes`) and case-insensitive usernames
(`UsernameConfiguration`) are fixed when a pool is created. A pool is checked for them
when it is adopted, i.e. while it does not yet carry this environment's tags: a pool
whose `UsernameAttributes` lack email (or are absent, which on AWS means users sign in
with a user name of their own) is a PlanError, as is one made explicitly case-sensitive.
A case sensitivity that was never set (pools made before Cognito had the setting) is
adopted and the plan says so; refusing it would force a user migration.
Once a pool carries this environment's tags, absent `UsernameAttributes` are not held
against it: runbook created it with them or adopted it after seeing them, and AWS never
changes them. moto does: it rebuilds a pool's settings from each UpdateUserPool request,
which cannot carry them, so after any trigger update the sandbox's pool describes
without them. Checking only at adoption keeps the dry run's verify pass green without
trusting the emulator's gap on AWS. A present list without email is always refused.

Custom attributes can be added but never changed or removed: missing ones are added,
a differing one is a PlanError naming it. An app client with a secret cannot lose it, so
one is refused too.

The Pre-SignUp function (lambdas/pre_signup) is deployed by this step through
`runbook.functions`: its execution role (logs on its own log group, nothing else: it
reads no database and no secret), its log group, the function (outside the VPC, with
the allowed and auto-confirmed domains in its environment) and the permission that lets
`cognito-idp.amazonaws.com` invoke it, bound to this pool's ARN and this account. The
pool's ARN is known only once the pool exists, so the permission is planned with it
unknown on a first run and bound when the pool has been created. The trigger is
attached after the function exists and is active.

Triggers come from `desired_triggers`. Its ARNs may be UNKNOWN while planning a
function not yet created; they are asked for again when the change is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from runbook.aws import naming
from runbook.aws import userpool
from runbook.engine import UNKNOWN, Change, Outputs, Step, diff_field, is_known
from runbook.errors import BadInput, PlanError, StepFailed
from runbook.functions.deploy import FunctionSpec, FunctionsMixin, FunctionState, Invoker
from runbook.aws.retry import error_code

STEP_NAME = "cognito"
PRE_SIGNUP = "pre_signup"                 # lambdas/pre_signup
PRE_SIGNUP_TRIGGER = "PreSignUp"
PRE_SIGNUP_STATEMENT = "runbook-cognito-pre-signup"
PAGE_SIZE = 60  # the largest MaxResults ListUserPools and ListUserPoolClients accept

EXPLICIT_AUTH_FLOWS = ("ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH",
                       "ALLOW_USER_SRP_AUTH")
PREVENT_USER_EXISTENCE_ERRORS = "ENABLED"
ACCOUNT_RECOVERY = ("verified_email",)
AUTO_VERIFIED = ("email",)

# config.cognito.password_policy field -> PasswordPolicy member
PASSWORD_FIELDS = (
    ("min_length", "MinimumLength"),
    ("require_uppercase", "RequireUppercase"),
    ("require_lowercase", "RequireLowercase"),
    ("require_numbers", "RequireNumbers"),
    ("require_symbols", "RequireSymbols"),
    ("temporary_password_validity_days", "TemporaryPasswordValidityDays"),
)

# The first part of a plan label -> the UpdateUserPool member that holds the setting.
SETTING_MEMBERS = {
    "password_policy": "Policies",
    "deletion_protection": "DeletionProtection",
    "auto_verified_attributes": "AutoVerifiedAttributes",
    "account_recovery": "AccountRecoverySetting",
}

CLIENT_MEMBERS = {
    "explicit_auth_flows": "ExplicitAuthFlows",
    "prevent_user_existence_errors": "PreventUserExistenceErrors",
}


@dataclass
class CognitoState:
    pool: dict | None = None        # DescribeUserPool's "UserPool"
    adopting: bool = False          # exists, but does not carry this environment's tags yet
    client: dict | None = None      # DescribeUserPoolClient's "UserPoolClient"
    functions: dict[str, FunctionState] = field(default_factory=dict)


@dataclass(frozen=True)
class CognitoOutputs(Outputs):
    user_pool_id: str
    user_pool_arn: str
    client_id: str
    user_pool_name: str
    pre_signup_function_arn: str


class CognitoStep(FunctionsMixin, Step):
    name = STEP_NAME

    @property
    def cognito(self):
        if self.config.cognito is None:
            raise BadInput("cognito: the environment file has no cognito section, which step "
                           "'cognito' needs (user_pool and client names at least).")
        return self.config.cognito

    def idp(self):
        return self.client("cognito-idp")

    # -- hooks ---------------------------------------------------------------------

    def desired_triggers(self, state: CognitoState) -> dict[str, str]:
        """Trigger name -> Lambda ARN runbook attaches ({"PreSignUp": arn}); an ARN may be
        UNKNOWN while planning. Other triggers on the pool are kept."""
        fn = state.functions.get(PRE_SIGNUP)
        return {PRE_SIGNUP_TRIGGER: fn.arn} if fn is not None else {}

    # -- read ----------------------------------------------------------------------

    def read(self) -> CognitoState:
        pool = self._find_pool()
        if pool is None:
            state = CognitoState()
        else:
            tags = pool.get("UserPoolTags") or {}
            ours = (tags.get(naming.ENV_TAG) == self.config.env
                    and tags.get(naming.STEP_TAG) == STEP_NAME)
            state = CognitoState(pool, adopting=not ours, client=self._find_client(pool["Id"]))
        self.functions = state.functions
        state.functions[PRE_SIGNUP] = self.read_function(
            self.pre_signup_spec(pool["Arn"] if pool else UNKNOWN))
        return state

    def pre_signup_spec(self, pool_arn: str) -> FunctionSpec:
        """The Pre-SignUp function: outside the VPC (it reaches nothing), no layer (it
        needs only the standard library), the domain rules in its environment."""
        cognito, lambdas = self.cognito, self.config.lambdas
        environment = {}
        if cognito.allowed_domains:
            environment["ALLOWED_EMAIL_DOMAINS"] = ",".join(cognito.allowed_domains)
        if cognito.auto_confirm_domains:
            environment["AUTO_CONFIRM_DOMAINS"] = ",".join(cognito.auto_confirm_domains)
        name = self.config.function_name(PRE_SIGNUP)
        return FunctionSpec(
            key=PRE_SIGNUP, name=name, runtime=lambdas.runtime,
            memory_mb=lambdas.pre_signup.memory_mb, timeout_s=lambdas.pre_signup.timeout_s,
            environment=environment,
            invoker=Invoker("cognito-idp.amazonaws.com", pool_arn, self.account(),
                            PRE_SIGNUP_STATEMENT),
            log_retention_days=lambdas.log_retention_days,
            tags=naming.tags(self.config, STEP_NAME, name))

    def _describe(self, pool_id: str) -> dict:
        return self.idp().describe_user_pool(UserPoolId=pool_id)["UserPool"]

    def _find_pool(self) -> dict | None:
        cognito = self.cognito
        if cognito.pool_id:
            try:
                pool = self._describe(cognito.pool_id)
            except Exception as exc:  # noqa: BLE001 - only NotFound is an input error
                if error_code(exc) == "ResourceNotFoundException":
                    raise PlanError(STEP_NAME, f"cognito.pool_id {cognito.pool_id}",
                                    f"no such user pool in this account and region "
                                    f"({self.ctx.aws.region}). Fix cognito.pool_id, or remove "
                                    "it to find the pool by name (or create it).") from None
                raise
            self.claim(f"cognito-idp:user-pool {pool.get('Name')} ({pool['Id']})",
                       pool.get("UserPoolTags"), "cognito.pool_id")
            return pool
        pages = self.idp().get_paginator("list_user_pools").paginate(MaxResults=PAGE_SIZE)
        named = [p["Id"] for page in pages for p in page["UserPools"]
                 if p.get("Name") == cognito.user_pool]
        if len(named) > 1:
            raise PlanError(STEP_NAME, f"cognito-idp:user-pool {cognito.user_pool}",
                            f"several user pools have this name ({', '.join(named)}). Set "
                            "cognito.pool_id to the one to use.")
        if not named:
            return None
        pool = self._describe(named[0])
        self.claim(f"cognito-idp:user-pool {cognito.user_pool} ({pool['Id']})",
                   pool.get("UserPoolTags"), "cognito.user_pool")
        return pool

    def _find_client(self, pool_id: str) -> dict | None:
        idp, name = self.idp(), self.cognito.client
        pages = idp.get_paginator("list_user_pool_clients").paginate(
            UserPoolId=pool_id, MaxResults=PAGE_SIZE)
        named = [c["ClientId"] for page in pages for c in page["UserPoolClients"]
                 if c.get("ClientName") == name]
        if len(named) > 1:
            raise PlanError(STEP_NAME, f"cognito-idp:app-client {name}",
                            f"user pool {pool_id} has several app clients with this name "
                            f"({', '.join(named)}). Delete the extra ones or set cognito.client "
                            "to a new name.")
        if not named:
            return None
        return idp.describe_user_pool_client(UserPoolId=pool_id,
                                             ClientId=named[0])["UserPoolClient"]

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: CognitoState) -> list[Change]:
        function = self.plan_function(state.functions[PRE_SIGNUP])
        if state.pool is None:
            # The function first, so that the pool is created with its trigger in one
            # call; the invoke permission names the pool's ARN, so it comes after.
            permission = [c for c in function if c.op == "set_permission"]
            function = [c for c in function if c.op != "set_permission"]
            return (function + self._plan_pool(state) + self._plan_custom_attributes(state)
                    + permission + self._plan_client(state))
        return (self._plan_pool(state) + self._plan_custom_attributes(state) + function
                + self._plan_triggers(state) + self._plan_client(state))

    def _pool_label(self, state: CognitoState) -> str:
        label = f"cognito-idp:user-pool {self.cognito.user_pool}"
        return f"{label} ({state.pool['Id']})" if state.pool else label

    def _plan_pool(self, state: CognitoState) -> list[Change]:
        desired = desired_settings(self.cognito)
        tags = naming.tags(self.config, STEP_NAME, self.cognito.user_pool)
        if state.pool is None:
            triggers = {f"trigger {name}": arn
                        for name, arn in sorted(self.desired_triggers(state).items())}
            return [Change("create", self._pool_label(state), "create_pool", {"tags": tags},
                           {"username": "email (case-insensitive)", **desired, **triggers})]
        notes = self._check_username(state)
        diff: dict = {}
        current = current_settings(state.pool)
        for label, value in desired.items():
            diff_field(diff, label, current[label], value)
        members = sorted({SETTING_MEMBERS[label.split(".")[0]] for label in diff})
        current_tags = state.pool.get("UserPoolTags") or {}
        add = naming.missing_tags(tags, current_tags)
        if add:
            diff["tags"] = naming.tag_diff(current_tags, add)
        if not diff:
            return []
        diff["other settings"] = "kept (the whole configuration is sent)"
        return [Change("update", self._pool_label(state), "update_pool",
                       {"members": members, "tags": add}, {**diff, **notes})]

    def _check_username(self, state: CognitoState) -> dict:
        """Refuse a pool whose users do not sign in with their e-mail address; these
        settings are fixed at creation (see the module docstring for when they are read)."""
        pool, label = state.pool, self._pool_label(state)
        attributes = pool.get("UsernameAttributes")
        fix = ("It cannot be changed after the pool was created: set cognito.user_pool to a "
               "new name (and remove cognito.pool_id) to have runbook create a pool, and "
               "move the users over.")
        if attributes is not None and "email" not in attributes:
            raise PlanError(STEP_NAME, label,
                            f"its users sign in with {', '.join(attributes) or 'a user name'}, "
                            f"not their e-mail address (UsernameAttributes). {fix}")
        if not state.adopting:
            return {}
        if attributes is None:
            raise PlanError(STEP_NAME, label,
                            "DescribeUserPool shows no UsernameAttributes: its users sign in "
                            "with a user name of their own, not their e-mail address. " + fix)
        case_sensitive = (pool.get("UsernameConfiguration") or {}).get("CaseSensitive")
        if case_sensitive:
            raise PlanError(STEP_NAME, label,
                            "its usernames are case-sensitive (UsernameConfiguration), so "
                            "Alice@example.com and alice@example.com would be two users. " + fix)
        if case_sensitive is None:
            return {"usernames": "case sensitivity never set (case-sensitive on AWS); fixed "
                                 "at creation, kept"}
        return {}

    def _plan_custom_attributes(self, state: CognitoState) -> list[Change]:
        existing = {a["Name"].removeprefix("custom:"): a
                    for a in (state.pool or {}).get("SchemaAttributes") or ()
                    if a.get("Name", "").startswith("custom:")}
        missing = {}
        for name, wanted in self.cognito.custom_attributes.items():
            current = existing.get(name)
            if current is None:
                missing[f"custom:{name}"] = {"from": None, "to": attribute_summary(wanted)}
                continue
            if described_attribute(current) != attribute_schema(name, wanted):
                raise PlanError(STEP_NAME, f"cognito.custom_attributes.{name}",
                                f"the pool's custom:{name} is "
                                f"{attribute_summary_described(current)}, the file says "
                                f"{attribute_summary(wanted)}. A custom attribute can never be "
                                "changed or removed: make the file match the pool, or use a "
                                "new attribute name.")
        if not missing:
            return []
        names = [key.removeprefix("custom:") for key in missing]
        return [Change("update", self._pool_label(state), "add_custom_attributes",
                       {"names": names}, missing)]

    def _plan_triggers(self, state: CognitoState) -> list[Change]:
        current = (state.pool or {}).get("LambdaConfig") or {}
        diff: dict = {}
        for trigger, arn in sorted(self.desired_triggers(state).items()):
            diff_field(diff, f"trigger {trigger}", current.get(trigger), arn)
        if not diff:
            return []
        diff["other settings"] = "kept (the whole configuration is sent)"
        return [Change("update", self._pool_label(state), "set_triggers", {}, diff)]

    def _plan_client(self, state: CognitoState) -> list[Change]:
        name = self.cognito.client
        desired = desired_client_settings()
        if state.client is None:
            return [Change("create", f"cognito-idp:app-client {name}", "create_client", {},
                           {"generate_secret": False, **desired})]
        client = state.client
        label = f"cognito-idp:app-client {name} ({client['ClientId']})"
        if client.get("ClientSecret"):
            raise PlanError(STEP_NAME, label,
                            "it has a client secret, which cannot be removed, and the web "
                            "client runbook provisions must have none (a browser cannot keep "
                            "it). Delete the client (aws cognito-idp delete-user-pool-client "
                            f"--user-pool-id {client['UserPoolId']} --client-id "
                            f"{client['ClientId']}) or set cognito.client to a new name.")
        diff: dict = {}
        current = current_client_settings(client)
        for key, value in desired.items():
            diff_field(diff, key, current[key], value)
        if not diff:
            return []
        members = sorted(CLIENT_MEMBERS[key] for key in diff)
        diff["other settings"] = "kept (the whole configuration is sent)"
        return [Change("update", label, "update_client", {"members": members}, diff)]

    # -- apply ---------------------------------------------------------------------

    def apply_create_pool(self, state: CognitoState, tags: dict) -> None:
        cognito = self.cognito
        triggers = self._known_triggers(state)
        created = self.idp().create_user_pool(
            PoolName=cognito.user_pool,
            UsernameAttributes=["email"],
            UsernameConfiguration={"CaseSensitive": False},
            UserPoolTags=tags,
            **({"LambdaConfig": triggers} if triggers else {}),
            **desired_members(cognito, SETTING_MEMBERS.values(), {}),
        )["UserPool"]
        state.pool, state.adopting = created, False
        # The invoke permission can now be bound to the pool's ARN.
        fn = state.functions[PRE_SIGNUP]
        fn.spec = replace(fn.spec, invoker=replace(fn.spec.invoker, source_arn=created["Arn"]))

    def apply_update_pool(self, state: CognitoState, members: list[str], tags: dict) -> None:
        described = self._describe(state.pool["Id"])
        changes = desired_members(self.cognito, members, described)
        if tags:
            changes["UserPoolTags"] = {**(described.get("UserPoolTags") or {}), **tags}
        self.idp().update_user_pool(**userpool.update_request(described, **changes))
        state.pool = {**described, **changes}

    def apply_add_custom_attributes(self, state: CognitoState, names: list[str]) -> None:
        wanted = self.cognito.custom_attributes
        schema = [attribute_schema(name, wanted[name]) for name in names]
        self.idp().add_custom_attributes(UserPoolId=state.pool["Id"], CustomAttributes=schema)
        state.pool = {**state.pool, "SchemaAttributes": [
            *(state.pool.get("SchemaAttributes") or ()),
            *({**item, "Name": f"custom:{item['Name']}"} for item in schema)]}

    def apply_set_triggers(self, state: CognitoState) -> None:
        triggers = self._known_triggers(state)
        described = self._describe(state.pool["Id"])
        lambda_config = userpool.merge_triggers(described.get("LambdaConfig"), triggers)
        self.idp().update_user_pool(**userpool.update_request(described,
                                                              LambdaConfig=lambda_config))
        state.pool = {**described, "LambdaConfig": lambda_config}

    def _known_triggers(self, state: CognitoState) -> dict[str, str]:
        """The desired triggers, once their functions exist and are active: Cognito
        calls a trigger from the moment it is attached."""
        triggers = self.desired_triggers(state)
        unknown = sorted(name for name, arn in triggers.items() if not is_known(arn))
        if unknown:
            raise StepFailed(STEP_NAME, self._pool_label(state),
                             f"the function of trigger {', '.join(unknown)} is still unknown")
        for fn in state.functions.values():
            if fn.changed:
                self.wait_active(fn)
        return triggers

    def apply_create_client(self, state: CognitoState) -> None:
        created = self.idp().create_user_pool_client(
            UserPoolId=state.pool["Id"], ClientName=self.cognito.client, GenerateSecret=False,
            **desired_client_members(CLIENT_MEMBERS.values()))
        state.client = created["UserPoolClient"]

    def apply_update_client(self, state: CognitoState, members: list[str]) -> None:
        idp = self.idp()
        described = idp.describe_user_pool_client(
            UserPoolId=state.pool["Id"], ClientId=state.client["ClientId"])["UserPoolClient"]
        changes = desired_client_members(members)
        idp.update_user_pool_client(**userpool.client_update_request(described, **changes))
        state.client = {**described, **changes}

    # -- settle and outputs ----------------------------------------------------------

    def settle(self, state: CognitoState) -> None:
        self.settle_functions(state.functions)

    def outputs(self, state: CognitoState) -> CognitoOutputs:
        pool, client = state.pool or {}, state.client or {}
        fn = state.functions[PRE_SIGNUP]
        return CognitoOutputs(
            user_pool_id=pool.get("Id", UNKNOWN),
            user_pool_arn=pool.get("Arn", UNKNOWN),
            client_id=client.get("ClientId", UNKNOWN),
            user_pool_name=pool.get("Name", self.cognito.user_pool),
            pre_signup_function_arn=fn.function["FunctionArn"] if fn.function else UNKNOWN)


# -- desired and current settings: pure functions of the config and a description ------

def desired_settings(cognito) -> dict[str, Any]:
    """The pool settings runbook manages, keyed as plans show them."""
    policy = cognito.password_policy
    out: dict[str, Any] = {f"password_policy.{field}": getattr(policy, field)
                           for field, _ in PASSWORD_FIELDS}
    out["deletion_protection"] = "ACTIVE" if cognito.deletion_protection else "INACTIVE"
    out["auto_verified_attributes"] = sorted(AUTO_VERIFIED)
    out["account_recovery"] = list(ACCOUNT_RECOVERY)
    return out


def current_settings(pool: dict) -> dict[str, Any]:
    policy = (pool.get("Policies") or {}).get("PasswordPolicy") or {}
    out: dict[str, Any] = {f"password_policy.{field}": policy.get(member)
                           for field, member in PASSWORD_FIELDS}
    # AWS describes every pool's deletion protection; moto only one that was given it.
    out["deletion_protection"] = pool.get("DeletionProtection") or "INACTIVE"
    out["auto_verified_attributes"] = sorted(pool.get("AutoVerifiedAttributes") or ())
    mechanisms = (pool.get("AccountRecoverySetting") or {}).get("RecoveryMechanisms") or ()
    out["account_recovery"] = [m["Name"] for m in sorted(mechanisms, key=lambda m: m["Priority"])]
    return out


def desired_members(cognito, members, described: dict) -> dict[str, Any]:
    """The UpdateUserPool/CreateUserPool values of `members`, merged into what `described`
    holds where a member carries more than runbook manages (Policies' SignInPolicy, a
    PasswordPolicy's PasswordHistorySize)."""
    out: dict[str, Any] = {}
    for member in members:
        if member == "Policies":
            policies = dict(described.get("Policies") or {})
            policies["PasswordPolicy"] = {
                **(policies.get("PasswordPolicy") or {}),
                **{key: getattr(cognito.password_policy, field) for field, key in PASSWORD_FIELDS}}
            out[member] = policies
        elif member == "DeletionProtection":
            out[member] = "ACTIVE" if cognito.deletion_protection else "INACTIVE"
        elif member == "AutoVerifiedAttributes":
            out[member] = list(AUTO_VERIFIED)
        elif member == "AccountRecoverySetting":
            out[member] = {"RecoveryMechanisms": [
                {"Priority": priority, "Name": name}
                for priority, name in enumerate(ACCOUNT_RECOVERY, start=1)]}
        else:
            raise KeyError(member)
    return out


def desired_client_settings() -> dict[str, Any]:
    return {"explicit_auth_flows": sorted(EXPLICIT_AUTH_FLOWS),
            "prevent_user_existence_errors": PREVENT_USER_EXISTENCE_ERRORS}


def current_client_settings(client: dict) -> dict[str, Any]:
    return {"explicit_auth_flows": sorted(client.get("ExplicitAuthFlows") or ()),
            "prevent_user_existence_errors": client.get("PreventUserExistenceErrors")}


def desired_client_members(members) -> dict[str, Any]:
    values = {"ExplicitAuthFlows": sorted(EXPLICIT_AUTH_FLOWS),
              "PreventUserExistenceErrors": PREVENT_USER_EXISTENCE_ERRORS}
    return {member: values[member] for member in members}


def attribute_schema(name: str, attribute) -> dict:
    """AddCustomAttributes' entry for config attribute `name` (without "custom:").

    `max_length` constrains String attributes only; a Number has no length.
    """
    schema = {"Name": name, "AttributeDataType": attribute.type, "Mutable": attribute.mutable}
    if attribute.type == "String":
        schema["StringAttributeConstraints"] = {"MaxLength": str(attribute.max_length)}
    return schema


def described_attribute(described: dict) -> dict:
    """A described custom attribute in attribute_schema's form, for comparison."""
    name = described["Name"].removeprefix("custom:")
    schema = {"Name": name, "AttributeDataType": described.get("AttributeDataType"),
              "Mutable": described.get("Mutable")}
    if described.get("AttributeDataType") == "String":
        max_length = (described.get("StringAttributeConstraints") or {}).get("MaxLength")
        schema["StringAttributeConstraints"] = {"MaxLength": max_length}
    return schema


def attribute_summary(attribute) -> str:
    return _summary(attribute.type, attribute.mutable,
                    attribute.max_length if attribute.type == "String" else None)


def attribute_summary_described(described: dict) -> str:
    constraints = described.get("StringAttributeConstraints") or {}
    return _summary(described.get("AttributeDataType"), described.get("Mutable"),
                    constraints.get("MaxLength") if described.get("AttributeDataType") == "String"
                    else None)


def _summary(kind, mutable, max_length) -> str:
    text = f"{kind}, {'mutable' if mutable else 'immutable'}"
    if kind == "String":
        text += f", max length {max_length if max_length is not None else 'unset'}"
    return text


STEP = CognitoStep
