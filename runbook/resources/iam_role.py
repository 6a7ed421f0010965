"""A service role with one inline policy that runbook owns, and nothing else that grants.

The role's inline policy `runbook` holds exactly what its holder needs. Any other inline
policy, and any attached managed policy, that allows something is removed, whoever put
it there, since it grants more than that; one whose statements all deny (a guardrail a
security team puts on every role) stays, as removing it would widen what the role may
do. runbook's own policy is compared whole, so a statement added to it is an update.

IAM refuses to delete a role that still holds something (DeleteConflict): teardown's
delete removes its inline policies, detaches its managed ones (the policies themselves
are kept: they may serve other roles) and takes it out of its instance profiles first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runbook.aws import naming, policies
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import Change, unknown_fields
from runbook.errors import StepFailed
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec

POLICY_NAME = "runbook"


def trust(service: str) -> dict:
    """The trust policy that lets only `service` (lambda.amazonaws.com) assume the role."""
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service},
                           "Action": "sts:AssumeRole"}]}


@dataclass(frozen=True)
class RoleSpec(Spec):
    service: str = ""                  # who may assume it
    policy: dict = field(default_factory=dict)   # the inline policy POLICY_NAME
    description: str = ""
    holder: str = ""                   # what it is for, in messages: "lambda:function x"

    @property
    def trust(self) -> dict:
        return trust(self.service)


@dataclass
class RoleFound(Found):
    """`id` is the role's name."""

    arn: str = ""
    trust: dict | None = None
    policy: dict | None = None          # POLICY_NAME's document, None when absent
    others: dict = field(default_factory=dict)    # the other inline policies, by name
    attached: dict = field(default_factory=dict)  # managed policies by ARN: their document


class Role(Resource[RoleSpec, RoleFound]):
    kind, service, plural = "iam:role", "iam", "roles"
    label_id = False

    # -- read ------------------------------------------------------------------------

    def find(self, api: Api, spec: RoleSpec) -> RoleFound | None:
        """By name (a role's name is unique in the account), with every policy it holds.
        Not claimed here: the caller claims, once it has read all it needs."""
        return self.read(api, spec.name)

    def read(self, api: Api, name: str) -> RoleFound | None:
        """Role `name` with every policy it holds, or None."""
        iam = api.client("iam")
        role = or_none(lambda: iam.get_role(RoleName=name)["Role"])
        if role is None:
            return None
        inline = {policy: policies.document(iam.get_role_policy(
                      RoleName=name, PolicyName=policy)["PolicyDocument"])
                  for policy in pages(iam, "list_role_policies", "PolicyNames",
                                      RoleName=name)}
        attached = {p["PolicyArn"]: self._managed_document(iam, p["PolicyArn"])
                    for p in pages(iam, "list_attached_role_policies", "AttachedPolicies",
                                   RoleName=name)}
        return RoleFound(name, naming.from_aws(role.get("Tags")), role["Arn"],
                         policies.document(role["AssumeRolePolicyDocument"]),
                         inline.pop(POLICY_NAME, None), inline, dict(sorted(attached.items())))

    @staticmethod
    def _managed_document(iam, arn: str) -> dict | None:
        """The document of a managed policy's default version (what it grants now; read
        calls only), so that a policy that only denies is told apart. None when the policy
        is gone (deleted since the listing)."""
        def read() -> dict:
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            return policies.document(iam.get_policy_version(
                PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])

        return or_none(read)

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: RoleSpec) -> dict:
        return {"trust": spec.service, "policy": policies.summary(spec.policy)}

    def plan(self, spec: RoleSpec, found: RoleFound | None, key: str) -> list[Change]:
        label = self.label(spec)
        if found is None:
            return [Change("create", label, "create_role", {"spec": spec}, self.summary(spec),
                           run=Apply(self, key, "create"))]
        changes = []
        if found.trust != spec.trust:
            changes.append(self._update(spec, key, "set_trust",
                                        {"trust": {"from": found.trust, "to": spec.trust}}))
        if found.policy != spec.policy:
            changes.append(self._update(spec, key, "put_role_policy", {"policy": {
                "from": policies.summary(found.policy), "to": policies.summary(spec.policy)}}))
        add = naming.missing_tags(spec.tags, found.tags)
        if add:
            changes.append(Change("update", label, "tag_role", {"tags": add},
                                  {"tags": naming.tag_diff(found.tags, add)},
                                  run=Apply(self, key, "tag")))
        return changes + self.plan_extras(spec, found, key)

    def _update(self, spec: RoleSpec, key: str, op: str, diff: dict) -> Change:
        return Change("update", self.label(spec), op, {"spec": spec, "diff": diff, "tags": {}},
                      diff, run=Apply(self, key, "update"))

    def plan_extras(self, spec: RoleSpec, found: RoleFound, key: str) -> list[Change]:
        """A `-` for each inline policy beside runbook's and each attached managed
        policy that allows something (see the module docstring)."""
        role = spec.name
        changes = [Change("delete", f"iam:role-policy {role}/{name}", "delete_role_policy",
                          {"policy_name": name},
                          {"role": role, "grants": policies.summary(document)},
                          run=Remove(self, key))
                   for name, document in sorted(found.others.items())
                   if policies.allows(document)]
        changes += [Change("delete", f"iam:attached-policy {role} {arn}", "detach_role_policy",
                           {"policy_arn": arn},
                           {"role": role, "policy_arn": arn,
                            "grants": policies.summary(document)},
                           run=Remove(self, key))
                    for arn, document in sorted(found.attached.items())
                    if policies.allows(document)]
        return changes

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: RoleSpec) -> RoleFound:
        self._require_known(spec)
        role = api.client("iam").create_role(
            RoleName=spec.name, AssumeRolePolicyDocument=json.dumps(spec.trust),
            Description=spec.description, Tags=naming.as_aws(spec.tags))["Role"]
        found = RoleFound(spec.name, dict(spec.tags), role["Arn"], spec.trust, None)
        return self._put_policy(api, spec, found)

    def update(self, api: Api, spec: RoleSpec, found: RoleFound, diff: dict,
               tags: dict) -> RoleFound:
        if "trust" in diff:
            api.client("iam").update_assume_role_policy(RoleName=spec.name,
                                                        PolicyDocument=json.dumps(spec.trust))
            found.trust = spec.trust
        if "policy" in diff:
            self._require_known(spec)
            self._put_policy(api, spec, found)
        return found

    @staticmethod
    def _put_policy(api: Api, spec: RoleSpec, found: RoleFound) -> RoleFound:
        api.client("iam").put_role_policy(RoleName=spec.name, PolicyName=POLICY_NAME,
                                          PolicyDocument=json.dumps(spec.policy))
        found.policy = spec.policy
        return found

    @staticmethod
    def _require_known(spec: RoleSpec) -> None:
        if unknown_fields(spec.policy):
            raise StepFailed(spec.step, spec.holder or f"iam:role {spec.name}",
                             "its role policy still has values unknown after the steps "
                             "before it")

    def remove(self, api: Api, found: RoleFound, policy_name: str | None = None,
               policy_arn: str | None = None) -> bool:
        """Delete an inline policy or detach a managed one. False when it was gone
        already: removed by someone else, or a request retried after its answer was lost."""
        iam = api.client("iam")
        if policy_name is not None:
            answer = or_none(lambda: iam.delete_role_policy(RoleName=found.id,
                                                            PolicyName=policy_name))
            found.others.pop(policy_name, None)
        else:
            answer = or_none(lambda: iam.detach_role_policy(RoleName=found.id,
                                                            PolicyArn=policy_arn))
            found.attached.pop(policy_arn, None)
        return answer is not None

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[RoleFound]:
        """Every role whose tags (ListRoleTags, one call each: ListRoles shows none)
        name `env`, read as `find` reads it."""
        iam = api.client("iam")
        owned = []
        for role in pages(iam, "list_roles", "Roles"):
            name = role["RoleName"]
            # Deleted since the listing: none.
            tags = or_none(lambda: pages(iam, "list_role_tags", "Tags", RoleName=name))
            if naming.from_aws(tags).get(naming.ENV_TAG) == env:
                found = self.read(api, name)
                if found is not None:
                    owned.append(found)
        return owned

    def delete(self, api: Api, found: RoleFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Every inline policy deleted, every managed policy detached, the role taken out
        of every instance profile, then DeleteRole. Each is listed afresh, so that a
        delete interrupted halfway (or a policy added since `owned`) is finished by the
        next. A role already gone is done, and costs no write."""
        iam = api.client("iam")
        name = found.id
        if or_none(lambda: iam.get_role(RoleName=name)) is None:
            return
        for policy in pages(iam, "list_role_policies", "PolicyNames", RoleName=name):
            self.remove(api, found, policy_name=policy)
        for policy in pages(iam, "list_attached_role_policies", "AttachedPolicies",
                            RoleName=name):
            self.remove(api, found, policy_arn=policy["PolicyArn"])
        for profile in pages(iam, "list_instance_profiles_for_role", "InstanceProfiles",
                             RoleName=name):
            or_none(lambda: iam.remove_role_from_instance_profile(
                InstanceProfileName=profile["InstanceProfileName"], RoleName=name))
        or_none(lambda: iam.delete_role(RoleName=name))


@dataclass
class Remove(Apply):
    """Removing a grant from a role (Role.remove): True if it was removed, False if it
    was gone already, which the engine does not count as applied."""

    action: str = "remove"

    def __call__(self, api: Api, inventory, **which) -> bool:
        return self.resource.remove(api, inventory.found[self.key], **which)
