"""A Cognito user pool and its app client (step `cognito`).

The pool is found by its id when the environment file gives one, else by its name. Pool
names are not unique in Cognito, so several pools of that name are refused rather than
guessed between. A pool made before runbook is adopted and tagged, never duplicated.

Every change to an existing pool or client goes through `runbook.aws.userpool`, which
sends the resource's whole current configuration: UpdateUserPool and UpdateUserPoolClient
reset whatever a request omits. The pool is described again right before each update, so
that a setting changed since the plan (a trigger another step attached) is not lost. Tags
are added the same way, through UpdateUserPool's `UserPoolTags`, not TagResource: moto
does not implement TagResource, and one code path must serve the sandbox and AWS alike.

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

A plan makes up to three updates of a pool, each its own change (one request each):
its settings and tags, its custom attributes, its triggers. `UserPool.update` tells them
apart by the fields of the change's diff.

Teardown goes through the same whole-configuration update. A pool's deletion
protection makes DeleteUserPool fail (InvalidParameterException; moto does not enforce
it), and so does a domain: `delete` turns protection off and deletes the domain first.
A pool teardown keeps (adopted) loses the triggers that invoke the functions it
deletes (`detach_triggers`): Cognito would otherwise fail every sign-up and sign-in
that calls one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, userpool
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import Change, diff_field
from runbook.errors import PlanError
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec

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

OTHER_SETTINGS, KEPT = "other settings", "kept (the whole configuration is sent)"


# -- the pool ------------------------------------------------------------------------------

@dataclass(frozen=True)
class UserPoolSpec(Spec):
    password_policy: dict = field(default_factory=dict)     # PASSWORD_FIELDS' names -> value
    deletion_protection: bool = True
    custom_attributes: dict = field(default_factory=dict)   # name -> attribute_schema(...)
    triggers: dict = field(default_factory=dict)            # trigger -> function ARN


@dataclass
class UserPoolFound(Found):
    """What plans compare, parsed from DescribeUserPool (`parse`). `tags` are UserPoolTags."""

    name: str = ""
    arn: str = ""
    settings: dict = field(default_factory=dict)            # current_settings()
    username_attributes: list | None = None
    case_sensitive: bool | None = None
    custom_attributes: dict = field(default_factory=dict)   # name (no "custom:") -> described
    triggers: dict = field(default_factory=dict)            # LambdaConfig

    @classmethod
    def parse(cls, described: dict) -> "UserPoolFound":
        return cls(described["Id"], dict(described.get("UserPoolTags") or {}),
                   described.get("Name", ""), described.get("Arn", ""),
                   current_settings(described), described.get("UsernameAttributes"),
                   (described.get("UsernameConfiguration") or {}).get("CaseSensitive"),
                   {a["Name"].removeprefix("custom:"): a
                    for a in described.get("SchemaAttributes") or ()
                    if a.get("Name", "").startswith("custom:")},
                   dict(described.get("LambdaConfig") or {}))


class UserPool(Resource[UserPoolSpec, UserPoolFound]):
    kind, service, plural = "cognito-idp:user-pool", "cognito-idp", "user pools"
    tags_in_update = True

    # -- read --------------------------------------------------------------------------

    def by_id(self, api: Api, spec: UserPoolSpec) -> UserPoolFound:
        described = or_none(lambda: self.describe(api, spec.id))
        if described is None:
            raise PlanError(spec.step, f"cognito.pool_id {spec.id}",
                            f"no such user pool in this account and region "
                            f"({api.region}). Fix cognito.pool_id, or remove it to find "
                            "the pool by name (or create it).")
        return UserPoolFound.parse(described)

    def by_name(self, api: Api, spec: UserPoolSpec) -> list[UserPoolFound]:
        """The pools with the spec's name: described when there is one, as ListUserPools
        shows them when there are several (which `choose` refuses, so they are not
        described). Pools are not found by tags: ListUserPools shows none, and a pool's
        name is what an operator knows it by."""
        named = [p for p in pages(api.client("cognito-idp"), "list_user_pools", "UserPools",
                                  MaxResults=PAGE_SIZE)
                 if p.get("Name") == spec.name]
        if len(named) == 1:
            return [UserPoolFound.parse(self.describe(api, named[0]["Id"]))]
        return [UserPoolFound.parse(p) for p in named]

    def several(self, spec: UserPoolSpec, candidates: list[UserPoolFound],
                how: str) -> PlanError:
        """Pool names are not unique: the file must say which one by id."""
        return PlanError(spec.step, self.label(spec),
                         f"several user pools have this name "
                         f"({', '.join(c.id for c in candidates)}). "
                         "Set cognito.pool_id to the one to use.")

    @staticmethod
    def describe(api: Api, pool_id: str) -> dict:
        return api.client("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]

    def claim(self, spec: UserPoolSpec, found: UserPoolFound, label: str | None = None) -> None:
        super().claim(spec, found, label or f"{self.kind} {found.name} ({found.id})")

    # -- plan (pure) -------------------------------------------------------------------

    def plan(self, spec: UserPoolSpec, found: UserPoolFound | None, key: str) -> list[Change]:
        """The pool made, or its settings and tags updated in one UpdateUserPool."""
        if found is None:
            triggers = {f"trigger {name}": arn for name, arn in sorted(spec.triggers.items())}
            return [Change("create", self.label(spec), "create_pool", {"spec": spec},
                           {"username": "email (case-insensitive)", **desired_settings(spec),
                            **triggers}, run=Apply(self, key, "create"))]
        notes = self.check_username(spec, found)
        diff: dict = {}
        for label, value in desired_settings(spec).items():
            diff_field(diff, label, found.settings[label], value)
        add = naming.missing_tags(spec.tags, found.tags)
        if add:
            diff["tags"] = naming.tag_diff(found.tags, add)
        if not diff:
            return []
        diff[OTHER_SETTINGS] = KEPT
        return [Change("update", self.label(spec, found), "update_pool",
                       {"spec": spec, "diff": diff, "tags": add}, {**diff, **notes},
                       run=Apply(self, key, "update"))]

    def check_username(self, spec: UserPoolSpec, found: UserPoolFound) -> dict:
        """Refuse a pool whose users do not sign in with their e-mail address; these
        settings are fixed at creation (see the module docstring for when they are read).
        Returns what the plan notes about an adopted pool."""
        label, attributes = self.label(spec, found), found.username_attributes
        fix = ("It cannot be changed after the pool was created: set cognito.user_pool to a "
               "new name (and remove cognito.pool_id) to have runbook create a pool, and "
               "move the users over.")
        if attributes is not None and "email" not in attributes:
            raise PlanError(spec.step, label,
                            f"its users sign in with {', '.join(attributes) or 'a user name'}, "
                            f"not their e-mail address (UsernameAttributes). {fix}")
        ours = (found.tags.get(naming.ENV_TAG) == spec.env
                and found.tags.get(naming.STEP_TAG) == spec.step)
        if ours:
            return {}
        if attributes is None:
            raise PlanError(spec.step, label,
                            "DescribeUserPool shows no UsernameAttributes: its users sign in "
                            "with a user name of their own, not their e-mail address. " + fix)
        if found.case_sensitive:
            raise PlanError(spec.step, label,
                            "its usernames are case-sensitive (UsernameConfiguration), so "
                            "Alice@example.com and alice@example.com would be two users. " + fix)
        if found.case_sensitive is None:
            return {"usernames": "case sensitivity never set (case-sensitive on AWS); fixed "
                                 "at creation, kept"}
        return {}

    def plan_custom_attributes(self, spec: UserPoolSpec, found: UserPoolFound | None,
                               key: str) -> list[Change]:
        """The missing custom attributes added (AddCustomAttributes); one that differs is
        refused: a custom attribute can never be changed or removed."""
        existing = found.custom_attributes if found is not None else {}
        missing = {}
        for name, wanted in spec.custom_attributes.items():
            current = existing.get(name)
            if current is None:
                missing[f"custom:{name}"] = {"from": None, "to": attribute_summary(wanted)}
                continue
            if described_attribute(current) != wanted:
                raise PlanError(spec.step, f"cognito.custom_attributes.{name}",
                                f"the pool's custom:{name} is {attribute_summary(current)}, "
                                f"the file says {attribute_summary(wanted)}. A custom "
                                "attribute can never be changed or removed: make the file "
                                "match the pool, or use a new attribute name.")
        if not missing:
            return []
        return [Change("update", self.label(spec, found), "add_custom_attributes",
                       {"spec": spec, "diff": missing}, missing, run=Apply(self, key, "update"))]

    def plan_triggers(self, spec: UserPoolSpec, found: UserPoolFound, key: str) -> list[Change]:
        """An existing pool's triggers set (a new pool is created with them); other
        triggers on the pool are kept."""
        diff: dict = {}
        for trigger, arn in sorted(spec.triggers.items()):
            diff_field(diff, f"trigger {trigger}", found.triggers.get(trigger), arn)
        if not diff:
            return []
        diff[OTHER_SETTINGS] = KEPT
        return [Change("update", self.label(spec, found), "set_triggers",
                       {"spec": spec, "diff": diff}, diff, run=Apply(self, key, "update"))]

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: UserPoolSpec) -> UserPoolFound:
        created = api.client("cognito-idp").create_user_pool(
            PoolName=spec.name,
            UsernameAttributes=["email"],
            UsernameConfiguration={"CaseSensitive": False},
            UserPoolTags=spec.tags,
            **({"LambdaConfig": spec.triggers} if spec.triggers else {}),
            **desired_members(spec, SETTING_MEMBERS.values(), {}),
        )["UserPool"]
        return UserPoolFound.parse(created)

    def update(self, api: Api, spec: UserPoolSpec, found: UserPoolFound, diff: dict,
               tags: dict) -> UserPoolFound:
        """The update the diff is of: custom attributes ("custom:<name>"), triggers
        ("trigger <name>"), or settings and tags."""
        added = [key.removeprefix("custom:") for key in diff if key.startswith("custom:")]
        if added:
            return self.add_custom_attributes(api, spec, found, added)
        if any(key.startswith("trigger ") for key in diff):
            return self.set_triggers(api, found, spec.triggers)
        members = sorted({SETTING_MEMBERS[key.split(".")[0]] for key in diff
                          if key.split(".")[0] in SETTING_MEMBERS})
        return self._update(api, spec, found, members, tags)

    def tag(self, api: Api, found: UserPoolFound, tags: dict) -> UserPoolFound:
        return self._update(api, None, found, [], tags)

    def _update(self, api: Api, spec: UserPoolSpec | None, found: UserPoolFound,
                members: list[str], tags: dict) -> UserPoolFound:
        described = self.describe(api, found.id)
        changes = desired_members(spec, members, described)
        if tags:
            changes["UserPoolTags"] = {**(described.get("UserPoolTags") or {}), **tags}
        api.client("cognito-idp").update_user_pool(**userpool.update_request(described, **changes))
        return UserPoolFound.parse({**described, **changes})

    def add_custom_attributes(self, api: Api, spec: UserPoolSpec, found: UserPoolFound,
                              names: list[str]) -> UserPoolFound:
        schema = [spec.custom_attributes[name] for name in names]
        api.client("cognito-idp").add_custom_attributes(UserPoolId=found.id,
                                                        CustomAttributes=schema)
        found.custom_attributes.update(
            {item["Name"]: {**item, "Name": f"custom:{item['Name']}"} for item in schema})
        return found

    def set_triggers(self, api: Api, found: UserPoolFound, triggers: dict) -> UserPoolFound:
        described = self.describe(api, found.id)
        lambda_config = userpool.merge_triggers(described.get("LambdaConfig"), triggers)
        api.client("cognito-idp").update_user_pool(**userpool.update_request(
            described, LambdaConfig=lambda_config))
        return UserPoolFound.parse({**described, "LambdaConfig": lambda_config})

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[UserPoolFound]:
        """Every pool whose UserPoolTags name `env`: ListUserPools shows no tags, so
        each pool is described."""
        idp = api.client("cognito-idp")
        owned = []
        for pool in pages(idp, "list_user_pools", "UserPools", MaxResults=PAGE_SIZE):
            described = or_none(lambda: self.describe(api, pool["Id"]))
            if described is not None and \
                    (described.get("UserPoolTags") or {}).get(naming.ENV_TAG) == env:
                owned.append(UserPoolFound.parse(described))
        return owned

    def delete(self, api: Api, found: UserPoolFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Deletion protection turned off, in an UpdateUserPool that sends the whole
        current configuration back; its domains (prefix and custom) deleted; then
        DeleteUserPool, with its users and app clients. Each is read afresh, so that a
        delete interrupted halfway is finished by the next. A pool already gone is done,
        and costs no write."""
        idp = api.client("cognito-idp")
        described = or_none(lambda: self.describe(api, found.id))
        if described is None:
            return
        if described.get("DeletionProtection") == "ACTIVE":
            idp.update_user_pool(**userpool.update_request(
                described, DeletionProtection="INACTIVE"))
        domains = {described.get("Domain"), described.get("CustomDomain")} - {None}
        for domain in sorted(domains):
            or_none(lambda: idp.delete_user_pool_domain(Domain=domain, UserPoolId=found.id))
        or_none(lambda: idp.delete_user_pool(UserPoolId=found.id))

    def detach_triggers(self, api: Api, pool: UserPoolFound | str,
                        arns: set[str]) -> dict[str, str]:
        """For a pool teardown keeps: every trigger of its LambdaConfig that invokes one
        of the functions `arns` (a function's ARN, or a version or alias of it) removed,
        in one UpdateUserPool that sends the whole current configuration back, the
        other triggers included (as `set_triggers` does). `pool` is the pool or its id.
        Returns {trigger: ARN} of those removed; {} without any call beyond the read
        when none invokes them, or when the pool is gone."""
        pool_id = pool if isinstance(pool, str) else pool.id
        described = or_none(lambda: self.describe(api, pool_id))
        if described is None:
            return {}
        kept, removed = without_triggers(described.get("LambdaConfig"), set(arns))
        if removed:
            api.client("cognito-idp").update_user_pool(**userpool.update_request(
                described, LambdaConfig=kept))
        return removed


def without_triggers(lambda_config: dict | None, functions: set[str]) -> tuple[dict, dict]:
    """(`lambda_config` without the triggers that invoke one of `functions`, {trigger:
    ARN} of those), pure. A trigger names its function by ARN (PreSignUp...) or in a
    structure's LambdaArn (PreTokenGenerationConfig, CustomSMSSender,
    CustomEmailSender); KMSKeyID names a key, never a function."""
    kept, removed = {}, {}
    for name, value in (lambda_config or {}).items():
        arn = value.get("LambdaArn") if isinstance(value, dict) else value
        if isinstance(arn, str) and (arn in functions or arn.rsplit(":", 1)[0] in functions):
            removed[name] = arn
        else:
            kept[name] = value
    return kept, removed


# -- the app client ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AppClientSpec(Spec):
    """App clients carry no tags: `tags` only say whose it is (the pool is claimed)."""

    pool_id: str = ""


@dataclass
class AppClientFound(Found):
    """Parsed from DescribeUserPoolClient (`parse`); the client secret is never kept."""

    name: str = ""
    pool_id: str = ""
    has_secret: bool = False
    settings: dict = field(default_factory=dict)            # current_client_settings()

    @classmethod
    def parse(cls, described: dict) -> "AppClientFound":
        return cls(described["ClientId"], {}, described.get("ClientName", ""),
                   described.get("UserPoolId", ""), bool(described.get("ClientSecret")),
                   current_client_settings(described))


class AppClient(Resource[AppClientSpec, AppClientFound]):
    """The web app client: public (no secret), found by name in its pool."""

    kind, service, plural = "cognito-idp:app-client", "cognito-idp", "app clients"

    def find(self, api: Api, spec: AppClientSpec) -> AppClientFound | None:
        idp = api.client("cognito-idp")
        named = [c["ClientId"] for c in pages(idp, "list_user_pool_clients", "UserPoolClients",
                                              UserPoolId=spec.pool_id, MaxResults=PAGE_SIZE)
                 if c.get("ClientName") == spec.name]
        if len(named) > 1:
            raise PlanError(spec.step, self.label(spec),
                            f"user pool {spec.pool_id} has several app clients with this "
                            f"name ({', '.join(named)}). Delete the extra ones or set "
                            f"{spec.field} to a new name.")
        if not named:
            return None
        return AppClientFound.parse(idp.describe_user_pool_client(
            UserPoolId=spec.pool_id, ClientId=named[0])["UserPoolClient"])

    def owned(self, api: Api, env: str) -> list[AppClientFound]:
        """None of its own: an app client goes with its pool (DeleteUserPool)."""
        return []

    def plan(self, spec: AppClientSpec, found: AppClientFound | None, key: str) -> list[Change]:
        desired = desired_client_settings()
        if found is None:
            return [Change("create", self.label(spec), "create_client", {"spec": spec},
                           {"generate_secret": False, **desired}, run=Apply(self, key, "create"))]
        label = self.label(spec, found)
        if found.has_secret:
            raise PlanError(spec.step, label,
                            "it has a client secret, which cannot be removed, and the web "
                            "client runbook provisions must have none (a browser cannot keep "
                            "it). Delete the client (aws cognito-idp delete-user-pool-client "
                            f"--user-pool-id {found.pool_id} --client-id {found.id}) or set "
                            f"{spec.field} to a new name.")
        diff: dict = {}
        for name, value in desired.items():
            diff_field(diff, name, found.settings[name], value)
        if not diff:
            return []
        diff[OTHER_SETTINGS] = KEPT
        return [Change("update", label, "update_client", {"spec": spec, "diff": diff}, diff,
                       run=Apply(self, key, "update"))]

    def create(self, api: Api, spec: AppClientSpec) -> AppClientFound:
        created = api.client("cognito-idp").create_user_pool_client(
            UserPoolId=spec.pool_id, ClientName=spec.name, GenerateSecret=False,
            **desired_client_members(CLIENT_MEMBERS.values()))
        return AppClientFound.parse(created["UserPoolClient"])

    def update(self, api: Api, spec: AppClientSpec, found: AppClientFound, diff: dict,
               tags: dict) -> AppClientFound:
        idp = api.client("cognito-idp")
        described = idp.describe_user_pool_client(
            UserPoolId=found.pool_id, ClientId=found.id)["UserPoolClient"]
        changes = desired_client_members(sorted(CLIENT_MEMBERS[key] for key in diff
                                                if key in CLIENT_MEMBERS))
        idp.update_user_pool_client(**userpool.client_update_request(described, **changes))
        return AppClientFound.parse({**described, **changes})


# -- desired and current settings: pure functions of a spec and a description ------------

def desired_settings(spec: UserPoolSpec) -> dict[str, Any]:
    """The pool settings runbook manages, keyed as plans show them."""
    out: dict[str, Any] = {f"password_policy.{name}": spec.password_policy[name]
                           for name, _ in PASSWORD_FIELDS}
    out["deletion_protection"] = "ACTIVE" if spec.deletion_protection else "INACTIVE"
    out["auto_verified_attributes"] = sorted(AUTO_VERIFIED)
    out["account_recovery"] = list(ACCOUNT_RECOVERY)
    return out


def current_settings(pool: dict) -> dict[str, Any]:
    policy = (pool.get("Policies") or {}).get("PasswordPolicy") or {}
    out: dict[str, Any] = {f"password_policy.{name}": policy.get(member)
                           for name, member in PASSWORD_FIELDS}
    # AWS describes every pool's deletion protection; moto only one that was given it.
    out["deletion_protection"] = pool.get("DeletionProtection") or "INACTIVE"
    out["auto_verified_attributes"] = sorted(pool.get("AutoVerifiedAttributes") or ())
    mechanisms = (pool.get("AccountRecoverySetting") or {}).get("RecoveryMechanisms") or ()
    out["account_recovery"] = [m["Name"] for m in sorted(mechanisms, key=lambda m: m["Priority"])]
    return out


def desired_members(spec: UserPoolSpec | None, members, described: dict) -> dict[str, Any]:
    """The UpdateUserPool/CreateUserPool values of `members`, merged into what `described`
    holds where a member carries more than runbook manages (Policies' SignInPolicy, a
    PasswordPolicy's PasswordHistorySize)."""
    out: dict[str, Any] = {}
    for member in members:
        if member == "Policies":
            policies = dict(described.get("Policies") or {})
            policies["PasswordPolicy"] = {
                **(policies.get("PasswordPolicy") or {}),
                **{key: spec.password_policy[name] for name, key in PASSWORD_FIELDS}}
            out[member] = policies
        elif member == "DeletionProtection":
            out[member] = "ACTIVE" if spec.deletion_protection else "INACTIVE"
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


def attribute_schema(name: str, type_: str, mutable: bool, max_length: int) -> dict:
    """AddCustomAttributes' entry for attribute `name` (without "custom:").

    `max_length` constrains String attributes only; a Number has no length.
    """
    schema = {"Name": name, "AttributeDataType": type_, "Mutable": mutable}
    if type_ == "String":
        schema["StringAttributeConstraints"] = {"MaxLength": str(max_length)}
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


def attribute_summary(attribute: dict) -> str:
    """A custom attribute as plans and errors show it, from attribute_schema's form or
    DescribeUserPool's."""
    kind, mutable = attribute.get("AttributeDataType"), attribute.get("Mutable")
    text = f"{kind}, {'mutable' if mutable else 'immutable'}"
    if kind == "String":
        max_length = (attribute.get("StringAttributeConstraints") or {}).get("MaxLength")
        text += f", max length {max_length if max_length is not None else 'unset'}"
    return text
