"""runbook.preflight's checks as pure functions of plain facts: which engine versions,
capacities, zones and runtimes each accepts, and that each refusal names the field of
the environment file and the fix. The date is injected, never read from the clock."""

from __future__ import annotations

import datetime as dt

import pytest

from runbook import config as config_mod
from runbook import preflight
from runbook.preflight import EngineVersion, Facts
from tests.conftest import PROD_CONFIG

REGION = "eu-central-1"
TODAY = dt.date(2026, 12, 1)
OFFERED = [EngineVersion("17.7", (0.0, 256.0)), EngineVersion("16.8", (0.0, 256.0)),
           EngineVersion("15.10", None), EngineVersion("16.10", (0.5, 128.0))]
KNOWN_RUNTIMES = ["nodejs22.x", "python3.9", "python3.10", "python3.11", "python3.12",
                  "python3.13", "python3.14"]


@pytest.fixture(scope="module")
def prod():
    return config_mod.load(PROD_CONFIG)


def with_db(config, **fields):
    return config.model_copy(update={"database": config.database.model_copy(update=fields)})


def facts(**changes) -> Facts:
    base = Facts(region=REGION, today=TODAY, offered=OFFERED,
                 zones={"eu-central-1a", "eu-central-1b", "eu-central-1c"},
                 runtimes=KNOWN_RUNTIMES)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_the_shipped_environment_file_passes_every_check(prod):
    assert preflight.problems(prod, facts()) == []


# -- database.engine_version -------------------------------------------------------------

@pytest.mark.parametrize("version, refused", [("16.8", False), ("17.7", False), ("15.10", False),
                                              ("15.4", True), ("16", True), ("14.6", True)])
def test_a_version_to_be_created_must_be_offered(prod, version, refused):
    found = preflight.problems(with_db(prod, engine_version=version), facts())
    assert bool(found) is refused


def test_the_refusal_lists_the_offered_versions_in_version_order(prod):
    [problem] = preflight.problems(with_db(prod, engine_version="15.4"), facts())
    assert problem == (
        "database.engine_version: aurora-postgresql 15.4 is not offered for new clusters in "
        "eu-central-1. Offered there: 15.10, 16.8, 16.10, 17.7. Set database.engine_version "
        "to one of them (a long-term-support minor stays offered longest).")


def test_an_existing_cluster_on_a_version_no_longer_offered_is_not_refused(prod):
    config = with_db(prod, engine_version="15.4")
    assert preflight.problems(config, facts(cluster_exists=True, cluster_version="15.4")) == []


def test_a_region_that_offers_nothing_says_so(prod):
    [problem] = preflight.problems(prod, facts(offered=[]))
    assert "Offered there: none." in problem


def test_steps_without_the_database_do_not_check_its_version(prod):
    assert preflight.problems(with_db(prod, engine_version="9.6"), facts(offered=None)) == []


# -- Serverless v2 capacity --------------------------------------------------------------

@pytest.mark.parametrize("version, low, high, fields", [
    ("16.8", 0.0, 256.0, []),
    ("16.10", 0.5, 128.0, []),
    ("16.10", 0.0, 4.0, ["database.min_capacity"]),
    ("16.10", 0.5, 192.0, ["database.max_capacity"]),
    ("16.10", 0.0, 200.0, ["database.min_capacity", "database.max_capacity"]),
    ("15.10", 0.0, 256.0, []),       # the API gives no limits: the documented 0..256
])
def test_capacity_is_checked_against_the_version_limits(prod, version, low, high, fields):
    config = with_db(prod, engine_version=version, min_capacity=low, max_capacity=high)
    found = preflight.problems(config, facts())
    assert [p.split(":")[0] for p in found] == fields


def test_a_capacity_refusal_says_what_to_set(prod):
    config = with_db(prod, engine_version="16.10", max_capacity=192.0)
    [problem] = preflight.problems(config, facts())
    assert problem == ("database.max_capacity: 192.0 ACU is above the 128.0 ACU "
                       "aurora-postgresql 16.10 allows; set it to 128.0 or less")


def test_an_existing_cluster_is_held_to_its_own_version_limits(prod):
    config = with_db(prod, engine_version="16.8", min_capacity=0.0)
    found = preflight.problems(config, facts(cluster_exists=True, cluster_version="16.10"))
    assert [p.split(":")[0] for p in found] == ["database.min_capacity"]


# -- availability zones --------------------------------------------------------------------

def test_a_zone_the_region_lacks_is_named_with_its_index(prod):
    zones = {"eu-central-1a", "eu-central-1b"}
    [problem] = preflight.problems(prod, facts(zones=zones))
    assert problem.startswith("network.subnets[2].az: eu-central-1c is not an availability zone "
                              "of eu-central-1")
    assert "eu-central-1a, eu-central-1b" in problem


# -- lambdas.runtime -------------------------------------------------------------------

@pytest.mark.parametrize("runtime, today, refused", [
    ("python3.11", TODAY, False),
    ("python3.11", dt.date(2027, 7, 30), False),
    ("python3.11", dt.date(2027, 7, 31), True),     # Block function create
    ("python3.10", TODAY, False),                     # deprecated, still accepted
    ("python3.10", dt.date(2027, 2, 1), True),
    ("python3.9", dt.date(2027, 1, 31), False),
    ("python3.14", dt.date(2029, 7, 31), True),
    ("python3.5", TODAY, True),                       # never a Lambda runtime
])
def test_a_runtime_is_accepted_until_its_block_create_date(runtime, today, refused):
    assert bool(preflight.runtime_problems(runtime, today, KNOWN_RUNTIMES)) is refused


def test_a_blocked_runtime_is_refused_with_the_newest_usable_one():
    [problem] = preflight.runtime_problems("python3.10", dt.date(2027, 3, 1), KNOWN_RUNTIMES)
    assert problem == ("lambdas.runtime: Lambda stopped accepting python3.10 for new functions "
                       "on 2027-02-01; set lambdas.runtime to python3.14")


def test_a_runtime_newer_than_the_table_is_accepted_when_lambda_lists_it():
    assert preflight.runtime_problems("python3.15", TODAY, KNOWN_RUNTIMES + ["python3.15"]) == []


def test_botocore_lists_the_runtimes_the_table_dates():
    known = preflight.lambda_runtimes()
    assert "python3.11" in known and "python3.14" in known
    assert set(preflight.RUNTIME_BLOCK_CREATE) <= set(known)


def test_every_problem_is_reported_at_once(prod):
    config = with_db(prod, engine_version="15.4")
    found = preflight.problems(config, facts(zones={"eu-central-1a"}, today=dt.date(2030, 1, 1)))
    assert [p.split(":")[0] for p in found] == [
        "database.engine_version", "network.subnets[1].az", "network.subnets[2].az",
        "lambdas.runtime"]
    error = preflight.PreflightFailed(found)
    assert error.exit_code == 2 and str(error).count("\n  - ") == 4


@pytest.mark.parametrize("scaling, in_force", [
    ({"MinCapacity": 0.5, "MaxCapacity": 4.0}, True),
    ({"MinCapacity": 0.5, "MaxCapacity": 8.0}, False),
    ({"MinCapacity": 0.0, "MaxCapacity": 4.0}, False),
    (None, False),          # not Serverless v2 yet
])
def test_the_engine_versions_are_not_needed_for_a_cluster_running_the_files_capacity(
        prod, scaling, in_force):
    from runbook.resources.rds import ClusterFound

    cluster = ClusterFound("matbakh-prod", {}, scaling=scaling)
    assert preflight.capacity_in_force(prod.database, cluster) is in_force
    assert preflight.capacity_in_force(prod.database, None) is False
