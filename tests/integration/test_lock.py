"""One run at a time per environment: the lock in the account (an SSM parameter),
two `runbook` processes on one moto server, a stale lock broken with `runbook unlock`,
and dry runs that never touch the account's lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import boto3
import pytest
from moto import mock_aws

from runbook.engine import lock
from tests.conftest import REGION, run_cli

LOCK = "/runbook/prod/lock"


def ssm(endpoint=None):
    return boto3.client("ssm", region_name=REGION, endpoint_url=endpoint)


def holder(run="a1", token="t1"):
    return lock.Holder("arn:aws:iam::123456789012:user/alice", "alice", "laptop", 4242, run,
                       "2026-11-30T08:00:00Z", token)


# -- the lock itself, in-process moto -------------------------------------------------------

@mock_aws
def test_a_second_holder_waits_then_is_refused_naming_the_first():
    first, second = lock.RunLock(ssm(), "prod"), lock.RunLock(ssm(), "prod", sleep=lambda s: None)
    first.acquire(holder(token="first"))
    waits = []

    with pytest.raises(lock.LockHeld) as refused:
        second.acquire(holder(token="second"), wait_s=5,
                       on_wait=lambda h, waited: waits.append(h.token))

    assert refused.value.exit_code == 2
    message = str(refused.value)
    assert "alice@laptop (pid 4242" in message and "running a1 since 2026-11-30T08:00:00Z" in message
    assert "runbook unlock --env prod" in message
    assert waits and set(waits) == {"first"}
    assert json.loads(ssm().get_parameter(Name=LOCK)["Parameter"]["Value"])["token"] == "first"


@mock_aws
def test_a_run_releases_only_its_own_lock():
    run_lock = lock.RunLock(ssm(), "prod")
    run_lock.acquire(holder(token="mine"))
    run_lock.release(holder(token="someone-elses"))
    assert run_lock.holder().token == "mine"
    run_lock.release(holder(token="mine"))
    assert run_lock.holder() is None


@mock_aws
def test_the_lock_is_released_when_the_run_fails():
    run_lock = lock.RunLock(ssm(), "prod")
    with pytest.raises(RuntimeError):
        with run_lock.held(holder()):
            raise RuntimeError("a step failed")
    assert run_lock.holder() is None


@mock_aws
def test_environments_lock_apart():
    lock.RunLock(ssm(), "prod").acquire(holder(token="prod-run"))
    prod_before = ssm().get_parameter(Name=LOCK)["Parameter"]

    staging = lock.RunLock(ssm(), "staging")
    staging.acquire(holder(token="staging-run"))

    staging_value = ssm().get_parameter(Name="/runbook/staging/lock")["Parameter"]["Value"]
    assert json.loads(staging_value)["token"] == "staging-run"
    prod_after = ssm().get_parameter(Name=LOCK)["Parameter"]
    assert (prod_after["Value"], prod_after["Version"]) == (prod_before["Value"],
                                                            prod_before["Version"])
    assert json.loads(prod_after["Value"])["token"] == "prod-run"

    staging.release(holder(token="staging-run"))
    assert ssm().get_parameter(Name=LOCK)["Parameter"] == prod_after  # prod's lock stays


# -- two processes on one moto server -------------------------------------------------------

def start_run(workdir, endpoint, *args):
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    return subprocess.Popen([sys.executable, "-m", "runbook", "run", *args], cwd=workdir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lock(endpoint, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(ssm(endpoint).get_parameter(Name=LOCK)["Parameter"]["Value"])
        except ssm(endpoint).exceptions.ParameterNotFound:
            time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


@pytest.mark.slow
def test_a_second_process_waits_then_exits_2_and_nothing_is_duplicated(moto_endpoint, workdir):
    first = start_run(workdir, moto_endpoint, "--phase", "a1")
    try:
        held = wait_for_lock(moto_endpoint)
        # Freeze the first run while it holds the lock, so the second surely meets it.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = run_cli("run", "--phase", "a1", "--lock-wait", "1", cwd=workdir,
                             env={"AWS_ENDPOINT_URL": moto_endpoint})
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()

    assert second.exit_code == 2, second.output
    assert f"pid {held['pid']}" in second.stderr and "running a1 since" in second.stderr
    assert "Waited 1" in second.stderr and "Traceback" not in second.output
    assert first.returncode == 0, out + err
    vpcs = [v for v in boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
            .describe_vpcs()["Vpcs"] if v["CidrBlock"] == "10.0.0.0/16"]
    assert len(vpcs) == 1
    clusters = boto3.client("rds", region_name=REGION, endpoint_url=moto_endpoint) \
        .describe_db_clusters()["DBClusters"]
    assert len(clusters) == 1
    with pytest.raises(ssm(moto_endpoint).exceptions.ParameterNotFound):
        ssm(moto_endpoint).get_parameter(Name=LOCK)  # released at the end


@pytest.mark.slow
def test_a_run_that_waited_for_the_lock_reads_what_the_first_run_left(moto_endpoint, workdir):
    """The preflight reads under the lock, and the steps are answered from those reads
    (runbook.aws.readcache): read before the first run ended, they would say nothing
    exists, and the second run would make a second VPC."""
    first = start_run(workdir, moto_endpoint, "--phase", "a1")
    try:
        wait_for_lock(moto_endpoint)
        os.kill(first.pid, signal.SIGSTOP)
        second = start_run(workdir, moto_endpoint, "--phase", "a1", "--lock-wait", "120")
        time.sleep(3)  # the second run meets the lock and waits
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
        second_out, second_err = second.communicate(timeout=180)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()

    assert first.returncode == 0, out + err
    assert second.returncode == 0, second_out + second_err
    assert "waiting for the lock" in second_out + second_err
    report = json.loads((workdir / "reports" / "prod" / "a1.json").read_text())
    assert sum(step["api_calls"]["write"] for step in report["steps"]) == 0
    vpcs = [v for v in boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
            .describe_vpcs()["Vpcs"] if v["CidrBlock"] == "10.0.0.0/16"]
    assert len(vpcs) == 1


@pytest.mark.slow
def test_a_stale_lock_is_broken_with_unlock_after_confirmation(moto_endpoint, workdir):
    crashed = start_run(workdir, moto_endpoint, "--phase", "a1")
    held = wait_for_lock(moto_endpoint)
    crashed.kill()  # kill -9: no chance to release the lock
    crashed.wait(timeout=30)
    env = {"AWS_ENDPOINT_URL": moto_endpoint}

    blocked = run_cli("run", "--phase", "a1", "--lock-wait", "0", cwd=workdir, env=env)
    assert blocked.exit_code == 2 and "runbook unlock --env prod" in blocked.stderr

    declined = subprocess.run([sys.executable, "-m", "runbook", "unlock"], cwd=workdir,
                              env={**os.environ, **env}, input="n\n", capture_output=True,
                              text=True, timeout=60)
    assert declined.returncode == 1
    assert f"pid {held['pid']}" in declined.stdout and "left in place" in declined.stderr
    assert ssm(moto_endpoint).get_parameter(Name=LOCK)  # still there

    broken = subprocess.run([sys.executable, "-m", "runbook", "unlock"], cwd=workdir,
                            env={**os.environ, **env}, input="y\n", capture_output=True,
                            text=True, timeout=60)
    assert broken.returncode == 0, broken.stderr
    assert f"lock {LOCK} broken" in broken.stdout

    again = run_cli("run", "--phase", "a1", cwd=workdir, env=env)
    assert again.exit_code == 0, again.output
    nothing = run_cli("unlock", "--yes", cwd=workdir, env=env)
    assert nothing.exit_code == 0 and "is not locked" in nothing.stdout


@pytest.mark.slow
def test_a_dry_run_locks_its_own_sandbox_not_the_account(moto_endpoint, workdir):
    ssm(moto_endpoint).put_parameter(Name=LOCK, Value=holder().as_value(), Type="String")

    result = run_cli("run", "--step", "network", "--dry-run", "--lock-wait", "0", cwd=workdir,
                     env={"AWS_ENDPOINT_URL": moto_endpoint})

    assert result.exit_code == 0, result.output
    value = ssm(moto_endpoint).get_parameter(Name=LOCK)["Parameter"]["Value"]
    assert json.loads(value)["token"] == "t1"  # the account's lock was not touched
