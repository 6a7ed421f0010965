"""Crash consistency: a run that fails at any write, however it fails, is finished by the
next run, which ends with exactly what a clean run leaves (runbook/sandbox/sweep.py has the sweep
and says how the account is compared).

This module runs a CI-sized part of the sweep. The full sweep, every write of the run
with every fault kind, is `python bench/crash_sweep.py`; its figures are in
docs/benchmarks.md.
"""

from __future__ import annotations

import time

import pytest

from runbook import config as config_mod
from runbook.output.progress import Progress
from runbook.sandbox.stack import Sandbox
from runbook.sandbox import sweep
from tests.conftest import PROD_CONFIG

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swept():
    """A sandbox and a clean a1..a5 run in it: (config, account, baseline)."""
    config = config_mod.load(PROD_CONFIG)
    with Sandbox(Progress(quiet=True)) as box:
        account = sweep.Account.of(box)
        yield config, account, sweep.baseline(config, account)


# The steps of a1..a5 that make AWS writes (fix-tables and the test steps make none, or
# only the tests' own). One test per step, so that pytest-xdist spreads the CI sample over
# its workers; test_the_ci_sample_covers_every_step_that_writes keeps the list honest.
WRITING_STEPS = ("network", "database", "store-secrets", "cognito", "vpc-integrate",
                 "db-proxy", "deploy-post-confirmation", "event-bus",
                 "deploy-process-user-signup", "hash-table", "msk-cluster",
                 "deploy-legacy-loader", "deploy-user-migration")


def test_the_ci_sample_covers_every_step_that_writes_and_every_fault_kind(swept):
    """The CI sample, not the full sweep (that is bench/crash_sweep.py): in each step that
    writes (fix-tables makes no AWS write), the first write with its answer lost and
    retried by botocore, the last with its answer lost, and a middle one refused
    (throttling, then a 5xx, then a connection reset, in turn); plus the first of each
    create that AWS would carry out twice (runbook.aws.clients.NOT_RETRIED_WHEN_UNCERTAIN)
    with its answer lost and retried."""
    _, _, clean = swept
    points = sweep.ci_points(clean)
    assert {clean.write(p.k).step for p in points} == set(clean.per_step()) == set(WRITING_STEPS)
    assert {p.kind for p in points} == set(sweep.REFUSED + sweep.LOST)


@pytest.mark.parametrize("step", WRITING_STEPS)
def test_the_ci_sample_of_the_crash_sweep_converges_with_no_duplicate_and_no_orphan(swept, step):
    """Every point of the CI sample in `step` converges: the second run succeeds, and
    the account holds what the clean run left, with 0 duplicates and 0 orphans."""
    config, account, clean = swept
    points = [p for p in sweep.ci_points(clean) if clean.write(p.k).step == step]
    assert points, f"the CI sample has no point in {step}"

    started = time.monotonic()
    outcomes = sweep.sweep(config, account, clean, points)
    report = sweep.render(clean, outcomes, time.monotonic() - started)
    print(report)

    total = sweep.figures(outcomes)["all"]
    assert total["tried"] == len(points), report
    assert total["converged"] == total["tried"], report
    assert (total["duplicates"], total["orphans"]) == (0, 0), report


@pytest.mark.parametrize("point", [
    sweep.Point(1, "response-lost-retried"), sweep.Point(2, "response-lost-retried"),
    sweep.Point(3, "response-lost-retried"), sweep.Point(4, "response-lost-retried"),
    sweep.Point(1, "throttling"), sweep.Point(4, "response-lost"),
], ids=str)
def test_a_removal_of_added_drift_that_fails_or_loses_its_answer_converges(swept, point):
    """Each removal write (a rule revoked, an inline policy deleted, a managed policy
    detached): sent twice by botocore after a lost answer, the second finds it gone; lost,
    the next run finds nothing left to remove; refused, the next run removes it."""
    config, account, clean = swept

    outcome = sweep.try_drift_point(config, account, clean, point)

    assert outcome.fired == sweep.DRIFT_REMOVALS[point.k - 1], outcome.describe()
    assert outcome.converged, outcome.describe()


# At least one of each kind of resource an untagged leftover can be found as; the full
# sweep tries every create.
UNTAGGED = [("ec2:CreateVpc", "network"), ("ec2:CreateSubnet", "network"),
            ("ec2:CreateInternetGateway", "network"),
            ("ec2:CreateSecurityGroup", "vpc-integrate"),
            ("ec2:CreateVpcEndpoint", "vpc-integrate"),
            ("ec2:CreateSecurityGroup", "db-proxy"), ("iam:CreateRole", "db-proxy"),
            ("rds:CreateDBProxy", "db-proxy"),
            ("rds:CreateDBClusterParameterGroup", "database"),
            ("rds:CreateDBCluster", "database"),
            ("secretsmanager:CreateSecret", "store-secrets"),
            ("iam:CreateRole", "deploy-post-confirmation"),
            ("lambda:CreateFunction", "deploy-post-confirmation"),
            ("cognito-idp:CreateUserPool", "cognito"),
            ("events:CreateEventBus", "event-bus"), ("sqs:CreateQueue", "event-bus"),
            ("cloudwatch:PutMetricAlarm", "event-bus"),
            ("events:PutRule", "deploy-process-user-signup"),
            ("kms:CreateKey", "hash-table"), ("ec2:CreateSecurityGroup", "msk-cluster"),
            ("kafka:CreateClusterV2", "msk-cluster"), ("iam:CreateRole", "deploy-legacy-loader")]


@pytest.mark.parametrize("call, step", UNTAGGED, ids=[f"{c}@{s}" for c, s in UNTAGGED])
def test_an_untagged_leftover_of_a_create_is_adopted_not_duplicated(swept, call, step):
    config, account, clean = swept
    write = next(w for w in clean.writes if w.call == call and w.step == step)

    outcome = sweep.try_point(config, account, clean, sweep.Point(write.k, sweep.UNTAGGED))

    assert outcome.converged, outcome.describe()
    assert "appeared untagged" in outcome.first_run


@pytest.mark.parametrize("kind", [sweep.UNTAGGED, "response-lost", "response-lost-retried"])
def test_a_failure_at_the_public_route_table_converges_with_one_table(swept, kind):
    """The public table is network's last CreateRouteTable (the private ones come first):
    left untagged (the old scripts' public table, with its route and one subnet), or
    made with its answer lost, the next run ends with the one table a clean run has."""
    config, account, clean = swept
    write = [w for w in clean.writes if w.call == "ec2:CreateRouteTable"
             and w.step == "network"][-1]

    outcome = sweep.try_point(config, account, clean, sweep.Point(write.k, kind))

    assert outcome.converged, outcome.describe()


def test_every_create_is_tagged_in_the_same_call_or_has_no_tags(swept):
    """Read each created resource's tags the moment its create returns, before runbook
    makes another call: a create tagged in a second call would show none. The creates
    that cannot carry tags are named."""
    config, account, _ = swept
    seen: dict[str, set] = {}

    def tags_now(service, operation, write, response):
        if write and sweep.is_create(f"{service}:{operation}"):
            tags = sweep.tags_of(account, f"{service}:{operation}", response)
            seen.setdefault(f"{service}:{operation}", set()).add(
                None if tags is None else ("runbook:env" in tags and "runbook:step" in tags))

    account.reset()
    results = sweep.run_with(config, account, account.factory(after_interceptors=[tags_now]))
    assert all(r.status == "ok" for r in results), [r.error for r in results]

    untaggable = {call for call, found in seen.items() if found == {None}}
    tagged = {call for call, found in seen.items() if found == {True}}
    assert untaggable == {"cognito-idp:CreateUserPoolClient", "lambda:PublishLayerVersion",
                          "lambda:CreateEventSourceMapping", "events:PutTargets",
                          "kms:CreateAlias"}
    assert tagged | untaggable == set(seen), seen
    # A table is tagged at creation too; its untagged leftover is not swept (LEFTOVERS).
    assert tagged == set(sweep.LEFTOVERS) - {"cognito-idp:CreateUserPoolClient"} | {
        "dynamodb:CreateTable"}


def test_a_lost_answer_to_create_vpc_is_not_sent_again_and_the_next_run_adopts_the_vpc(swept):
    """Before the fix, botocore retried CreateVpc after the lost answer: two VPCs with this
    environment's tags, and every later run stopped at "several VPCs carry this
    environment's tags"."""
    config, account, clean = swept
    assert clean.write(1).call == "ec2:CreateVpc"

    account.reset()
    fault = sweep.Fault(sweep.Point(1, "response-lost-retried"))
    first = sweep.run(config, account, fault)

    assert first[0].status == "failed" and "ConnectionClosedError" in first[0].error
    vpcs = [v for v in account.client("ec2").describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    assert len(vpcs) == 1
    second = sweep.run(config, account)
    assert all(r.status == "ok" for r in second), [r.error for r in second]
    assert sweep.compare(clean.inventory, sweep.inventory(account, config)).none


def test_botocore_still_retries_a_lost_answer_when_repeating_the_call_is_harmless(swept):
    config, account, _ = swept
    account.reset()
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    fault = sweep.Fault(sweep.Point(1, "response-lost-retried"))
    aws = account.factory(interceptors=[fault.before])
    fault.attach(aws)

    answer = aws.client("ec2").create_tags(Resources=[vpc], Tags=[{"Key": "k", "Value": "v"}])

    assert fault.fired == "ec2:CreateTags"
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1


def test_a_lost_answer_to_create_key_is_not_sent_again_and_the_next_run_aliases_the_key(swept):
    """botocore would send CreateKey again after a lost answer (it takes no token): two
    keys of this environment under no alias. Not retried, the step fails, and the next
    run finds the one key by its tags and gives it the alias."""
    config, account, clean = swept
    write = next(w for w in clean.writes if w.call == "kms:CreateKey")

    outcome = sweep.try_point(config, account, clean, sweep.Point(write.k,
                                                                  "response-lost-retried"))

    assert outcome.converged, outcome.describe()
    assert "failed at hash-table" in outcome.first_run
    keys = [k for k in account.client("kms").list_keys()["Keys"]
            if account.client("kms").describe_key(KeyId=k["KeyId"])["KeyMetadata"][
                "KeyManager"] == "CUSTOMER"]
    assert len(keys) == 1


def test_an_untagged_public_subnet_is_adopted_not_duplicated(swept):
    """network's last CreateSubnet makes a public subnet (the private ones come first):
    left untagged, as a script would make it, the next run adopts it."""
    config, account, clean = swept
    write = [w for w in clean.writes if w.call == "ec2:CreateSubnet" and w.step == "network"][-1]

    outcome = sweep.try_point(config, account, clean, sweep.Point(write.k, sweep.UNTAGGED))

    assert outcome.converged, outcome.describe()
    assert f"subnet {config.network.public_subnets[-1].cidr} appeared untagged" in \
        outcome.first_run
