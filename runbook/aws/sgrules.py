"""The rules of a security group runbook owns, one rule at a time, so that a rule added
outside runbook is seen and removed, not only a missing one added.

DescribeSecurityGroups folds rules together (one IpPermissions entry holds every CIDR and
group for a protocol and port range), so a rule someone added beside runbook's can hide
in an entry runbook also uses. DescribeSecurityGroupRules lists each rule separately,
with its own id (`sgr-...`), and RevokeSecurityGroupIngress/Egress take those ids: the
rule removed is exactly the one planned, whatever its description says (moto 5.2.5, unlike
AWS, revokes by IpPermissions only when the description matches too).

A group's rule set is owned by one step, which plans `exact` over it: what is missing is
added, what is there and not desired is removed. Descriptions and tags of rules are not
compared; they do not change what passes.

AWS's default egress, ALL_TRAFFIC_OUT, is what every new group in a VPC gets. moto 5.2.5
also gives a new group all traffic to ::/0 when its VPC has an IPv6 block (AWS documents
that rule for a VPC's default group); a group that keeps its default egress keeps that
one where the VPC has IPv6, neither adding nor removing it (`kept` in `exact`).
"""

from __future__ import annotations

from dataclasses import dataclass

ANYWHERE = "0.0.0.0/0"
ALL = "-1"

# IANA numbers AWS accepts for the protocols it otherwise names.
_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


@dataclass(frozen=True)
class Rule:
    """One rule: a direction, a protocol and port range, and one peer."""

    egress: bool
    protocol: str                 # "tcp", "udp", "icmp", ... or "-1" (all traffic)
    from_port: int | None
    to_port: int | None
    peer: str                     # a group id, an IPv4 or IPv6 CIDR, or a prefix list id

    @classmethod
    def tcp_from(cls, port: int, peer: str) -> "Rule":
        return cls(False, "tcp", port, port, peer)

    def text(self, names: dict[str, str] | None = None) -> str:
        """`tcp/5432 from matbakh-prod-lambda`, `all traffic to 0.0.0.0/0`."""
        if self.protocol == ALL:
            what = "all traffic"
        elif self.protocol in ("icmp", "icmpv6") and self.from_port is not None:
            # ICMP rules carry a type and a code in the port fields; -1 is "any".
            if self.from_port == -1:
                what = f"{self.protocol} (all types)"
            elif self.to_port in (None, -1):
                what = f"{self.protocol} type {self.from_port}"
            else:
                what = f"{self.protocol} type {self.from_port} code {self.to_port}"
        elif self.from_port is None:
            what = self.protocol
        elif self.from_port == self.to_port:
            what = f"{self.protocol}/{self.from_port}"
        else:
            what = f"{self.protocol}/{self.from_port}-{self.to_port}"
        peer = (names or {}).get(self.peer, self.peer)
        return f"{what} {'to' if self.egress else 'from'} {peer}"

    def kind(self) -> str:
        """The resource type plans name it by: ec2:ingress-rule or ec2:egress-rule."""
        return f"ec2:{'egress' if self.egress else 'ingress'}-rule"


ALL_TRAFFIC_OUT = Rule(True, ALL, None, None, ANYWHERE)   # a new group's default egress
ALL_TRAFFIC_OUT_V6 = Rule(True, ALL, None, None, "::/0")  # its IPv6 twin, in a VPC with IPv6


def parse(raw: dict) -> tuple[str, Rule]:
    """(rule id, Rule) from one DescribeSecurityGroupRules item."""
    protocol = str(raw.get("IpProtocol", ""))
    protocol = _PROTOCOL_NAMES.get(protocol, protocol)
    from_port, to_port = raw.get("FromPort"), raw.get("ToPort")
    if protocol == ALL:  # AWS describes all traffic with ports -1
        from_port = to_port = None
    peer = ((raw.get("ReferencedGroupInfo") or {}).get("GroupId") or raw.get("CidrIpv4")
            or raw.get("CidrIpv6") or raw.get("PrefixListId") or "?")
    return raw["SecurityGroupRuleId"], Rule(bool(raw.get("IsEgress")), protocol, from_port,
                                            to_port, peer)


def exact(current: dict[str, Rule], desired: set[Rule],
          kept: frozenset[Rule] = frozenset()) -> tuple[list[Rule], list[str]]:
    """(desired rules missing, ids of rules present but neither desired nor kept), both
    sorted.

    Pure. A rule present twice (AWS refuses that, a stale read may show it) is one rule.
    A `kept` rule is left as it is: not added when missing, not removed when there.
    """
    have = set(current.values())
    missing = sorted(desired - have, key=_order)
    extra = sorted((rule_id for rule_id, rule in current.items()
                    if rule not in desired and rule not in kept),
                   key=lambda rule_id: (_order(current[rule_id]), rule_id))
    return missing, extra


def permission(rule: Rule) -> dict:
    """The IpPermissions entry that grants `rule` (for Authorize*)."""
    entry: dict = {"IpProtocol": rule.protocol}
    if rule.from_port is not None:
        entry.update(FromPort=rule.from_port, ToPort=rule.to_port)
    if rule.peer.startswith("sg-"):
        entry["UserIdGroupPairs"] = [{"GroupId": rule.peer}]
    elif rule.peer.startswith("pl-"):
        entry["PrefixListIds"] = [{"PrefixListId": rule.peer}]
    elif ":" in rule.peer:
        entry["Ipv6Ranges"] = [{"CidrIpv6": rule.peer}]
    else:
        entry["IpRanges"] = [{"CidrIp": rule.peer}]
    return entry


def _order(rule: Rule) -> tuple:
    return (rule.egress, rule.protocol, rule.from_port or -1, rule.to_port or -1, rule.peer)


def revoke_default_egress(ec2, group_id: str, retry_ec2, *, ipv6: bool = False) -> None:
    """Remove the all-traffic egress AWS gives every new group, for a group that is to
    have none (and its ::/0 twin where the VPC has IPv6, one call each, so that one not
    made by default does not fail the other). By permission, not by id: the id is not
    known without another describe, and the rule has no description for moto to
    mismatch on. Already gone (a retried request whose first answer was lost) is done."""
    from runbook.aws.retry import error_code

    for rule in (ALL_TRAFFIC_OUT, ALL_TRAFFIC_OUT_V6) if ipv6 else (ALL_TRAFFIC_OUT,):
        try:
            retry_ec2(lambda rule=rule: ec2.revoke_security_group_egress(
                GroupId=group_id, IpPermissions=[permission(rule)]))
        except Exception as exc:  # noqa: BLE001 - only "not there" is done already
            if error_code(exc) not in GONE:
                raise


# What AWS (and moto) answer when a rule to revoke is not there any more.
GONE = frozenset({"InvalidPermission.NotFound", "InvalidSecurityGroupRuleId.NotFound"})
