"""runbook.policies without I/O: which policies grant something, and how plans show them."""

from __future__ import annotations

import pytest

from runbook.aws.policies import allows, summary

ALLOW = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
DENY = {"Effect": "Deny", "Action": ["iam:*", "organizations:*"], "Resource": "*"}


@pytest.mark.parametrize("policy, expected", [
    ({"Statement": [DENY]}, False),
    ({"Statement": DENY}, False),                    # one statement, not in a list
    ({"Statement": [DENY, DENY]}, False),
    ({"Statement": []}, False),
    (None, False),                                   # a managed policy gone since listed
    ({"Statement": [ALLOW]}, True),
    ({"Statement": ALLOW}, True),
    ({"Statement": [DENY, ALLOW]}, True),
    # IAM refuses any other Effect; one that is not Deny is taken to grant.
    ({"Statement": [{"Action": "s3:*", "Resource": "*"}]}, True),
], ids=["deny", "deny-alone", "two-denies", "empty", "none", "allow", "allow-alone",
        "mixed", "no-effect"])
def test_only_a_policy_with_a_statement_that_is_not_deny_allows(policy, expected):
    assert allows(policy) is expected


def test_summary_marks_denies_and_not_action_and_takes_a_lone_statement():
    assert summary({"Statement": [ALLOW, DENY]}) == [
        "s3:GetObject on arn:aws:s3:::b/*", "deny iam:*, organizations:* on *"]
    assert summary({"Statement": {"Effect": "Allow", "NotAction": "iam:*",
                                  "NotResource": ["arn:aws:s3:::x"]}}) == [
        "all but iam:* on all but arn:aws:s3:::x"]
    assert summary(None) is None
