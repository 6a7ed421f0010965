"""runbook.sgrules without I/O: DescribeSecurityGroupRules items in, the rules to add and
the rule ids to remove out."""

from __future__ import annotations

import pytest

from runbook.aws.sgrules import ALL_TRAFFIC_OUT, ALL_TRAFFIC_OUT_V6, Rule, exact, parse, permission

LAMBDA, OTHER = "sg-lambda", "sg-other"
DB_RULE = Rule.tcp_from(5432, LAMBDA)


def item(rule_id, *, egress=False, protocol="tcp", ports=(5432, 5432), **peer):
    return {"SecurityGroupRuleId": rule_id, "GroupId": "sg-db", "IsEgress": egress,
            "IpProtocol": protocol, "FromPort": ports[0], "ToPort": ports[1], **peer}


def rules(*items):
    return dict(parse(raw) for raw in items)


CASES = {
    # name: (current rules, desired, missing, extra ids)
    "converged": ([item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA})], {DB_RULE}, [], []),
    "empty group": ([], {DB_RULE}, [DB_RULE], []),
    "anywhere on the port is added drift": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
         item("sgr-2", CidrIpv4="0.0.0.0/0")], {DB_RULE}, [], ["sgr-2"]),
    "ipv6 anywhere too": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
         item("sgr-2", CidrIpv6="::/0")], {DB_RULE}, [], ["sgr-2"]),
    "a broader range from the right group is not the rule": (
        [item("sgr-1", ports=(5000, 6000), ReferencedGroupInfo={"GroupId": LAMBDA})],
        {DB_RULE}, [DB_RULE], ["sgr-1"]),
    "all traffic from the right group is not the rule": (
        [item("sgr-1", protocol="-1", ports=(-1, -1), ReferencedGroupInfo={"GroupId": LAMBDA})],
        {DB_RULE}, [DB_RULE], ["sgr-1"]),
    "another group": ([item("sgr-1", ReferencedGroupInfo={"GroupId": OTHER})], {DB_RULE},
                      [DB_RULE], ["sgr-1"]),
    "a prefix list": ([item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
                       item("sgr-2", PrefixListId="pl-123")], {DB_RULE}, [], ["sgr-2"]),
    "protocol by number is the same rule": (
        [item("sgr-1", protocol="6", ReferencedGroupInfo={"GroupId": LAMBDA})], {DB_RULE}, [], []),
    "the default egress where none is wanted": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
         item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0")],
        {DB_RULE}, [], ["sgr-2"]),
    "the default egress where it is wanted": (
        [item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0")],
        {ALL_TRAFFIC_OUT}, [], []),
    "an egress rule beside the default": (
        [item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0"),
         item("sgr-3", egress=True, ports=(22, 22), CidrIpv4="1.2.3.4/32")],
        {ALL_TRAFFIC_OUT}, [], ["sgr-3"]),
    "beside the cluster's ingress, the default egress it keeps": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
         item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0")],
        {DB_RULE, ALL_TRAFFIC_OUT}, [], []),
    "a cluster group without its default egress gets it back": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA})],
        {DB_RULE, ALL_TRAFFIC_OUT}, [ALL_TRAFFIC_OUT], []),
    "anywhere on the port beside the default egress is still drift": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
         item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0"),
         item("sgr-3", CidrIpv4="0.0.0.0/0")],
        {DB_RULE, ALL_TRAFFIC_OUT}, [], ["sgr-3"]),
    "the default egress to ::/0 where it is not kept": (
        [item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0"),
         item("sgr-3", egress=True, protocol="-1", ports=(-1, -1), CidrIpv6="::/0")],
        {ALL_TRAFFIC_OUT}, [], ["sgr-3"]),
    "the same rule twice in a stale read is one": (
        [item("sgr-1", ReferencedGroupInfo={"GroupId": LAMBDA}),
         item("sgr-9", ReferencedGroupInfo={"GroupId": LAMBDA})], {DB_RULE}, [], []),
}


@pytest.mark.parametrize("name", CASES)
def test_exact_adds_what_is_missing_and_removes_everything_else(name):
    current, desired, missing, extra = CASES[name]
    assert exact(rules(*current), desired) == (missing, extra)


def test_a_kept_rule_is_neither_added_nor_removed():
    default = [item("sgr-2", egress=True, protocol="-1", ports=(-1, -1), CidrIpv4="0.0.0.0/0")]
    ipv6 = item("sgr-3", egress=True, protocol="-1", ports=(-1, -1), CidrIpv6="::/0")
    kept = frozenset({ALL_TRAFFIC_OUT_V6})
    assert exact(rules(*default, ipv6), {ALL_TRAFFIC_OUT}, kept) == ([], [])
    assert exact(rules(*default), {ALL_TRAFFIC_OUT}, kept) == ([], [])
    # Only that rule: an IPv6 rule narrower than all traffic is still removed.
    narrower = item("sgr-4", egress=True, ports=(443, 443), CidrIpv6="::/0")
    assert exact(rules(*default, narrower), {ALL_TRAFFIC_OUT}, kept) == ([], ["sgr-4"])


@pytest.mark.parametrize("rule, text", [
    (DB_RULE, "tcp/5432 from matbakh-prod-lambda"),
    (Rule(False, "tcp", 5000, 6000, "10.0.0.0/8"), "tcp/5000-6000 from 10.0.0.0/8"),
    (ALL_TRAFFIC_OUT, "all traffic to 0.0.0.0/0"),
    (Rule(False, "icmp", None, None, "pl-1"), "icmp from pl-1"),
    (Rule(False, "icmp", 8, -1, "0.0.0.0/0"), "icmp type 8 from 0.0.0.0/0"),
    (Rule(False, "icmp", 3, 4, "10.0.0.0/8"), "icmp type 3 code 4 from 10.0.0.0/8"),
    (Rule(False, "icmpv6", -1, -1, "::/0"), "icmpv6 (all types) from ::/0"),
    (ALL_TRAFFIC_OUT_V6, "all traffic to ::/0"),
])
def test_a_rule_reads_with_the_group_names(rule, text):
    assert rule.text({LAMBDA: "matbakh-prod-lambda"}) == text


def test_a_removal_names_direction_protocol_ports_and_peer_and_nothing_else():
    """The plan line of a removal is built from the parsed rule only: a rule's description
    (free text that may hold anything) never reaches it."""
    [(rule_id, rule)] = rules(item("sgr-7", ports=(5432, 5432), CidrIpv4="0.0.0.0/0",
                                   Description="temp access, password hunter2")).items()
    assert (rule_id, rule.kind(), rule.text()) == (
        "sgr-7", "ec2:ingress-rule", "tcp/5432 from 0.0.0.0/0")
    [(_, out)] = rules(item("sgr-8", egress=True, protocol="udp", ports=(53, 53),
                            CidrIpv6="2001:db8::/32")).items()
    assert (out.kind(), out.text()) == ("ec2:egress-rule", "udp/53 to 2001:db8::/32")


@pytest.mark.parametrize("rule, entry", [
    (DB_RULE, {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
               "UserIdGroupPairs": [{"GroupId": LAMBDA}]}),
    (ALL_TRAFFIC_OUT, {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
    (Rule(False, "tcp", 443, 443, "::/0"), {"IpProtocol": "tcp", "FromPort": 443,
                                            "ToPort": 443, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}),
])
def test_permission_is_the_entry_that_grants_the_rule(rule, entry):
    assert permission(rule) == entry
