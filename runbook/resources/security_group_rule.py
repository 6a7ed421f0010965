"""Security group rules, one at a time: a resource kind of their own, because a group's
rule set is owned by one step (vpc-integrate) while the group may be another's (the
cluster's group is step database's).

The model and the comparison are runbook.aws.sgrules: a group's rules are read one by one
(DescribeSecurityGroupRules, each with its id), and a plan over the complete rule set
wanted adds what is missing and removes every other rule, by id, whoever added it. Each
addition and removal is one Change; both are safe to send again: a rule that is already
there (InvalidPermission.Duplicate), or already gone (sgrules.GONE), is done already.

For teardown, a rule is one Found of its own (RuleFound): the ingress rules runbook adds
carry its tags (set in the authorize call), so `owned` finds them by tag, whatever group
they are in, and `delete` revokes each by its id. AWS's default egress, added back
without tags, goes with its group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from runbook.aws import naming, sgrules
from runbook.aws.api import Api, or_none, pages
from runbook.aws.retry import error_code
from runbook.engine.plan import Change
from runbook.resources.base import DeleteOptions, Found, Inventory, Resource, Spec, resolve

# What AWS (and moto) answer when the rule to add is there already.
DUPLICATE = "InvalidPermission.Duplicate"


@dataclass(frozen=True)
class RuleSetSpec(Spec):
    """The complete rule set wanted on one group. `name` is the group's, for labels."""

    group_id: Any = None                    # the group's id, or an Unknown with a ref
    rules: frozenset = frozenset()          # every rule wanted (sgrules.Rule)
    # Left as they are: neither added when missing nor removed when there (sgrules.exact).
    kept: frozenset = frozenset()
    description: str = ""                   # of the ingress rules runbook adds
    source_name: str = ""                   # how an added ingress rule's peer is named
    names: dict = field(default_factory=dict)  # {group id: name}, for the rules there


@dataclass
class RuleSet(Found):
    """A group's rules: `id` is the group's; `rules` {rule id: sgrules.Rule}."""

    rules: dict = field(default_factory=dict)


@dataclass
class RuleFound(Found):
    """One rule, for teardown: `id` is the rule's (sgr-...), `group_id` its group's."""

    group_id: str = ""
    rule: sgrules.Rule | None = None


def revoke_rule(api: Api, group_id: str, rule_id: str, egress: bool,
                send: Callable[[Callable[[], Any]], Any] = lambda call: call()) -> bool:
    """Remove one rule of `group_id` by its id, the call made through `send` (the
    propagation retry, right after a create). Already gone (removed by someone else, or
    by this request sent again after its answer was lost) is done: False."""
    ec2 = api.client("ec2")
    call = ec2.revoke_security_group_egress if egress else ec2.revoke_security_group_ingress
    try:
        send(lambda: call(GroupId=group_id, SecurityGroupRuleIds=[rule_id]))
    except Exception as exc:  # noqa: BLE001 - only "not there" is done already
        if error_code(exc) not in sgrules.GONE:
            raise
        return False
    return True


class SecurityGroupRule(Resource[RuleSetSpec, RuleSet]):
    kind, service, plural = "ec2:security-group-rule", "ec2", "security group rules"

    # -- read ------------------------------------------------------------------------

    @staticmethod
    def of_groups(api: Api, group_ids: list[str]) -> dict[str, dict[str, sgrules.Rule]]:
        """{group id: {rule id: Rule}} for each of `group_ids` (one read for all)."""
        found: dict[str, dict[str, sgrules.Rule]] = {group_id: {} for group_id in group_ids}
        for raw in pages(api.client("ec2"), "describe_security_group_rules",
                         "SecurityGroupRules",
                         Filters=[{"Name": "group-id", "Values": list(group_ids)}]):
            if raw["GroupId"] in found:
                rule_id, rule = sgrules.parse(raw)
                found[raw["GroupId"]][rule_id] = rule
        return found

    # -- plan (pure) -------------------------------------------------------------------

    def plan_missing(self, spec: RuleSetSpec, found: RuleSet | None, key: str) -> list[Change]:
        """A `+` for each rule wanted and not there (`found` None: the group is still to
        be made)."""
        missing, _ = sgrules.exact(found.rules if found else {}, set(spec.rules))
        changes = []
        for rule in missing:
            if rule == sgrules.ALL_TRAFFIC_OUT and found is None:
                # The group is still to be made, and AWS makes it with its default
                # egress (SecurityGroupSpec.default_egress says whether it stays).
                continue
            if rule.egress:
                label = f"{rule.kind()} {spec.name} {rule.text(spec.names)}"
                diff = {"group": spec.group_id, "rule": rule.text()}
            else:
                # A spec without source_name names its peers as they are (CIDRs).
                peers = {rule.peer: spec.source_name} if spec.source_name else spec.names
                label = f"{rule.kind()} {spec.name} {rule.text(peers)}"
                diff = {"group": spec.group_id, "port": rule.from_port, "source": rule.peer}
            changes.append(Change("create", label, "authorize", {"spec": spec, "rule": rule},
                                  diff, run=ApplyRule(self, key)))
        return changes

    def plan_extra(self, spec: RuleSetSpec, found: RuleSet | None, key: str) -> list[Change]:
        """A `-` for each rule there that is neither wanted nor kept."""
        if found is None:
            return []
        _, extra = sgrules.exact(found.rules, set(spec.rules), spec.kept)
        return [Change("delete",
                       f"{found.rules[rule_id].kind()} {spec.name} "
                       f"{found.rules[rule_id].text(spec.names)}",
                       "revoke", {"rule_id": rule_id, "egress": found.rules[rule_id].egress},
                       {"group": found.id, "rule_id": rule_id}, run=ApplyRule(self, key))
                for rule_id in extra]

    # -- apply -------------------------------------------------------------------------

    def authorize(self, api: Api, spec: RuleSetSpec, found: RuleSet,
                  rule: sgrules.Rule) -> bool:
        """Add `rule`. False when it was there already (a concurrent run added it)."""
        ec2 = api.client("ec2")
        permission = sgrules.permission(rule)
        try:
            if rule.egress:
                # Only AWS's default egress is ever added back, made as AWS makes it:
                # without a description or tags.
                answer = api.retry_ec2(lambda: ec2.authorize_security_group_egress(
                    GroupId=found.id, IpPermissions=[permission]))
            else:
                for peers in ("UserIdGroupPairs", "IpRanges", "Ipv6Ranges", "PrefixListIds"):
                    for peer in permission.get(peers, ()):
                        peer["Description"] = spec.description
                answer = api.retry_ec2(lambda: ec2.authorize_security_group_ingress(
                    GroupId=found.id, IpPermissions=[permission],
                    TagSpecifications=naming.tag_specifications("security-group-rule",
                                                                spec.tags)))
        except Exception as exc:  # noqa: BLE001 - only a duplicate is "done already"
            if error_code(exc) != DUPLICATE:
                raise
            return False
        ids = [r["SecurityGroupRuleId"] for r in answer.get("SecurityGroupRules") or ()]
        found.rules[ids[0] if ids else "(new)"] = rule
        return True

    def revoke(self, api: Api, found: RuleSet, rule_id: str, egress: bool) -> bool:
        """Remove one rule by its id (revoke_rule). False when it was gone already."""
        done = revoke_rule(api, found.id, rule_id, egress, api.retry_ec2)
        found.rules.pop(rule_id, None)
        return done

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[RuleFound]:
        """Every rule that carries the environment's tag, in whatever group."""
        return [_rule(raw) for raw in pages(api.client("ec2"), "describe_security_group_rules",
                                            "SecurityGroupRules",
                                            Filters=naming.env_filter(env))]

    def delete(self, api: Api, found: RuleFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Revoke the rule by its id, ingress or egress as it is; one no longer described
        (revoked already, or gone with its group) is done."""
        ec2 = api.client("ec2")
        if or_none(lambda: ec2.describe_security_group_rules(
                SecurityGroupRuleIds=[found.id])["SecurityGroupRules"]):
            revoke_rule(api, found.group_id, found.id, found.rule.egress)

    def title(self, found: RuleFound) -> str:
        """"ec2:security-group-rule sg-12ab tcp/5432 from sg-34cd (sgr-56ef)"."""
        return f"{self.kind} {found.group_id} {found.rule.text()} ({found.id})"


def _rule(raw: dict) -> RuleFound:
    """One DescribeSecurityGroupRules item, with its tags."""
    rule_id, rule = sgrules.parse(raw)
    return RuleFound(rule_id, naming.from_aws(raw.get("Tags")), raw["GroupId"], rule)


@dataclass
class ApplyRule:
    """How the engine applies a rule change: on the group's RuleSet kept under `key`
    (made when the group was made by this apply), which it keeps current. Returns False
    for a change that was done already."""

    resource: SecurityGroupRule
    key: str

    def __call__(self, api: Api, inventory: Inventory, spec: RuleSetSpec | None = None,
                 rule: sgrules.Rule | None = None, rule_id: str | None = None,
                 egress: bool = False) -> bool:
        found = inventory.found.get(self.key)
        if rule_id is not None:
            return self.resource.revoke(api, found, rule_id, egress)
        spec = resolve(spec, inventory)
        if found is None:
            found = inventory.found[self.key] = RuleSet(spec.group_id, {}, {})
        return self.resource.authorize(api, spec, found, resolve(rule, inventory))
