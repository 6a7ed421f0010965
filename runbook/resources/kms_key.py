"""A customer-managed symmetric KMS key, found by its alias (phase a5: the key of the
legacy users' hash table).

A key has no name: its alias is how runbook finds it again, so the alias is made in the
same apply as the key. CreateKey takes no idempotency token, and the key is tagged in
that call: if its answer is lost, or the run stops before CreateAlias, the key exists,
tagged, under no alias. Where no alias names a key, the next run therefore looks for
that key by this environment's tags (ListKeys, then each key's tags: a read made only
until the alias exists) and gives it the alias, rather than making a second key. The
alias is never moved to another key: an alias that names a key runbook cannot use is a
PlanError that says how to fix it.

The key policy is the spec's (the step says why each statement is there): set at
creation, read back (GetKeyPolicy, the policy named "default", a key's only one) and
put again when it grants anything else, so that a statement added by hand shows as
drift and is removed. Rotation is on (yearly, by KMS); a key found with rotation off is
an update.

A key is never deleted at once: teardown schedules its deletion (7-30 days ahead), and
deletes its aliases first. KMS keeps an alias that names a key pending deletion, and
alias/<table> would then stay taken by a key nobody can use, refusing the next run's
CreateAlias. A key scheduled for deletion is never found again (`by_tags`, `owned`): a
run after a destroy makes a new key.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

import json

from runbook.aws import naming, policies
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import diff_field
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import DeleteOptions, Found, Resource, Spec

SYMMETRIC = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
ENABLED = "Enabled"
# KeyStates of a key scheduled for deletion (a multi-Region replica's included).
PENDING_DELETION = frozenset({"PendingDeletion", "PendingReplicaDeletion"})


@dataclass(frozen=True)
class KeySpec(Spec):
    """`name` is the alias, alias/<...>."""

    description: str = ""
    rotation: bool = True
    # The key policy document; None: KMS's default (the account's IAM policies decide).
    policy: dict | None = None


@dataclass
class KeyFound(Found):
    """`id` is the key's ARN."""

    key_id: str = ""
    state: str = ENABLED                 # KeyState: Enabled, Disabled, PendingDeletion...
    key_spec: str = SYMMETRIC
    usage: str = ENCRYPT_DECRYPT
    manager: str = "CUSTOMER"            # AWS for an AWS-managed key
    rotation: bool | None = None         # None: not readable in this state
    aliased: bool = True                 # False: found by its tags, under no alias
    policy: dict | None = None           # the "default" key policy, as read back


def policy_lines(policy: dict | None) -> list[str] | None:
    """A key policy as one line a statement, `Sid: who may do what [if condition]`: a
    key policy's resource is always the key itself ("*")."""
    if policy is None:
        return None
    lines = []
    for statement in policies.statement_list(policy):
        principal = statement.get("Principal")
        who = principal.get("AWS", principal) if isinstance(principal, dict) else principal
        actions = ", ".join(sorted(policies.as_list(statement.get("Action", []))))
        effect = "deny " if statement.get("Effect") == "Deny" else ""
        condition = statement.get("Condition")
        lines.append(f"{statement.get('Sid', '')}: {who} may {effect}{actions}"
                     + (f" if {json.dumps(condition, sort_keys=True)}" if condition else ""))
    return lines


def from_aws(tag_list: list[dict] | None) -> dict[str, str]:
    """KMS spells tags TagKey/TagValue."""
    return {t["TagKey"]: t["TagValue"] for t in tag_list or ()}


def as_aws(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in sorted(tags.items())]


class KmsKey(Resource[KeySpec, KeyFound]):
    kind, service, plural = "kms:key", "kms", "KMS keys"
    label_id = False
    ops = {"create": "create_key", "update": "update_key", "tag": "tag_resource"}

    # -- read ------------------------------------------------------------------------

    def find(self, api: Api, spec: KeySpec) -> KeyFound | None:
        """The key the alias names, with its tags and rotation; where the alias names
        none, the key a create cut short left under no alias (`by_tags`)."""
        found = self.read(api, spec.name)
        if found is None:
            found = self.choose(spec, tagged=self.by_tags(api, spec))
        if found is not None:
            self.claim(spec, found)
        return found

    def by_tags(self, api: Api, spec: KeySpec) -> list[KeyFound]:
        """This environment's keys for this alias (the spec's tags: environment, step and
        Name) that are not going away, under no alias of their own. A key scheduled for
        deletion (a destroy's, whose aliases it deleted) or waiting for imported key
        material (KeyState Pending*) is never adopted: the run makes a new key."""
        kms = api.client("kms")
        wanted = {k: spec.tags[k] for k in (naming.ENV_TAG, naming.STEP_TAG, "Name")
                  if k in spec.tags}
        out = []
        for key_id, tags in tagged_keys(api):
            if any(tags.get(k) != v for k, v in wanted.items()):
                continue
            if pages(kms, "list_aliases", "Aliases", KeyId=key_id):
                continue  # another alias names it: not a key left by a create cut short
            found = self.read(api, key_id)
            if found is not None and not found.state.startswith("Pending"):
                found.aliased = False
                out.append(found)
        return out

    @staticmethod
    def read(api: Api, alias: str) -> KeyFound | None:
        kms = api.client("kms")
        meta = or_none(lambda: kms.describe_key(KeyId=alias))
        if meta is None:
            return None
        meta = meta["KeyMetadata"]
        key_id = meta["KeyId"]
        tags = from_aws(pages(kms, "list_resource_tags", "Tags", KeyId=key_id))
        state = meta.get("KeyState", ENABLED)
        # KMS answers KMSInvalidStateException for the rotation of a key that is not
        # enabled; such a key is refused by `check` anyway.
        rotation = (kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]
                    if state == ENABLED else None)
        manager = meta.get("KeyManager", "CUSTOMER")
        policy = (policies.document(kms.get_key_policy(KeyId=key_id, PolicyName="default")[
            "Policy"]) if manager == "CUSTOMER" else None)
        return KeyFound(meta["Arn"], tags, key_id, state,
                        meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or SYMMETRIC,
                        meta.get("KeyUsage", ENCRYPT_DECRYPT), manager, rotation,
                        policy=policy)

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: KeySpec) -> dict:
        return {"alias": spec.name, "key_spec": SYMMETRIC, "usage": ENCRYPT_DECRYPT,
                "rotation": spec.rotation,
                "policy": (policy_lines(spec.policy) if spec.policy is not None
                           else "KMS default: the account's IAM policies decide")}

    def check(self, spec: KeySpec, found: KeyFound) -> None:
        """A key runbook cannot encrypt the table with, or that is going away."""
        where = f"Point {spec.name} at another key, or set {spec.field} to another name."
        if found.manager != "CUSTOMER":
            raise PlanError(spec.step, self.label(spec),
                            f"it names an AWS-managed key ({found.key_id}), whose deletion "
                            f"and policy runbook cannot control. {where}")
        if found.key_spec != SYMMETRIC or found.usage != ENCRYPT_DECRYPT:
            raise PlanError(spec.step, self.label(spec),
                            f"it names a {found.key_spec} {found.usage} key ({found.key_id}); "
                            f"DynamoDB encrypts only with a {SYMMETRIC} {ENCRYPT_DECRYPT} "
                            f"key. {where}")
        if found.state == "PendingDeletion":
            raise PlanError(spec.step, self.label(spec),
                            f"its key {found.key_id} is scheduled for deletion: what it "
                            "encrypts becomes unreadable when it is deleted. Cancel that "
                            f"(aws kms cancel-key-deletion --key-id {found.key_id}, then aws "
                            f"kms enable-key --key-id {found.key_id}), or set {spec.field} to "
                            "another name.")
        if found.state != ENABLED:
            raise PlanError(spec.step, self.label(spec),
                            f"its key {found.key_id} is {found.state}, and DynamoDB cannot "
                            f"use it. Enable it (aws kms enable-key --key-id {found.key_id}), "
                            f"or set {spec.field} to another name.")

    def diff(self, spec: KeySpec, found: KeyFound) -> dict:
        diff: dict = {}
        if not found.aliased:
            diff_field(diff, "alias", None, spec.name)
        diff_field(diff, "rotation", found.rotation, spec.rotation)
        if spec.policy is not None and not policies.same(found.policy, spec.policy):
            diff["policy"] = {"from": policy_lines(found.policy),
                              "to": policy_lines(spec.policy)}
        return diff

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: KeySpec) -> KeyFound:
        kms = api.client("kms")
        policy = {} if spec.policy is None else {"Policy": json.dumps(spec.policy)}
        meta = kms.create_key(Description=spec.description, KeyUsage=ENCRYPT_DECRYPT,
                              KeySpec=SYMMETRIC, Tags=as_aws(spec.tags), **policy)["KeyMetadata"]
        try:
            kms.create_alias(AliasName=spec.name, TargetKeyId=meta["KeyId"])
        except kms.exceptions.AlreadyExistsException:
            # Made since the plan read it (a concurrent run): the key just made is left,
            # tagged, under no alias; it is named so that its deletion can be scheduled.
            raise StepFailed(spec.step, self.label(spec),
                             f"the alias was made by someone else since the plan; key "
                             f"{meta['KeyId']}, just made, has no alias: schedule its "
                             "deletion (aws kms schedule-key-deletion --key-id "
                             f"{meta['KeyId']}) and run again") from None
        if spec.rotation:
            kms.enable_key_rotation(KeyId=meta["KeyId"])
        return KeyFound(meta["Arn"], dict(spec.tags), meta["KeyId"], ENABLED, SYMMETRIC,
                        ENCRYPT_DECRYPT, "CUSTOMER", spec.rotation, policy=spec.policy)

    def update(self, api: Api, spec: KeySpec, found: KeyFound, diff: dict,
               tags: dict) -> KeyFound:
        """Give a key found by its tags its alias; turn rotation on (runbook never turns
        it off); put the key policy back."""
        kms = api.client("kms")
        if "alias" in diff:
            kms.create_alias(AliasName=spec.name, TargetKeyId=found.key_id)
            found.aliased = True
        if "rotation" in diff and spec.rotation:
            kms.enable_key_rotation(KeyId=found.key_id)
            found.rotation = True
        if "policy" in diff:
            kms.put_key_policy(KeyId=found.key_id, PolicyName="default",
                               Policy=json.dumps(spec.policy))
            found.policy = spec.policy
        return found

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[KeyFound]:
        """The environment's keys, read as `find` reads them, but those already scheduled
        for deletion: nothing of them is left to delete."""
        out = []
        for key_id, tags in tagged_keys(api):
            if tags.get(naming.ENV_TAG) != env:
                continue
            found = self.read(api, key_id)
            if found is not None and found.state not in PENDING_DELETION:
                out.append(found)
        return out

    def delete(self, api: Api, found: KeyFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Delete every alias that names the key (they would outlive it, taken), then
        ScheduleKeyDeletion, `options.key_pending_days` ahead. A key gone, or already
        scheduled, only loses its aliases."""
        kms = api.client("kms")
        meta = or_none(lambda: kms.describe_key(KeyId=found.key_id))
        if meta is None:
            return
        for alias in pages(kms, "list_aliases", "Aliases", KeyId=found.key_id):
            or_none(lambda: kms.delete_alias(AliasName=alias["AliasName"]))
        if meta["KeyMetadata"].get("KeyState") not in PENDING_DELETION:
            kms.schedule_key_deletion(KeyId=found.key_id,
                                      PendingWindowInDays=options.key_pending_days)

    def gone(self, api: Api, found: KeyFound) -> bool:
        """Whether the key is scheduled for deletion (or deleted): all runbook can do.
        KMS deletes it when the pending window ends."""
        meta = or_none(lambda: api.client("kms").describe_key(KeyId=found.key_id))
        return meta is None or meta["KeyMetadata"].get("KeyState") in PENDING_DELETION


def tagged_keys(api: Api):
    """(key id, tags) of every key of the account and region whose tags this caller can
    read (ListKeys, then ListResourceTags for each)."""
    kms = api.client("kms")
    for key in pages(kms, "list_keys", "Keys"):
        try:
            tags = from_aws(pages(kms, "list_resource_tags", "Tags", KeyId=key["KeyId"]))
        except ClientError:  # an AWS-managed key, or one this caller may not read
            continue
        yield key["KeyId"], tags
