"""The sandbox's local invoker against a moto server: it runs the deployed code with the
function's own environment, talks to the emulated account, writes what the handler
printed to the function's log group, and enforces the function's timeout and, for a
Cognito trigger, Cognito's 5 seconds. Its execution environments stay warm between
invocations of the same code and configuration, as Lambda's do."""

from __future__ import annotations

import json
import os
import textwrap
import threading

import boto3
import pytest

from runbook.functions import package
from runbook.aws.clients import ClientFactory
from runbook.errors import BadInput
from runbook.functions.invoke import COGNITO_TRIGGER_LIMIT_S, ENVIRONMENTS, LocalInvoker
from runbook.sandbox.stack import SANDBOX_CREDENTIALS
from tests.conftest import REGION

HANDLER = textwrap.dedent("""
    import json, os, time
    import boto3

    time.sleep(float(os.environ.get("INIT_SLEEP_S", "0")))  # the init: a slow import
    if os.environ.get("INIT_FAIL"):
        raise RuntimeError("the init failed")
    SERVED = []  # module state: what a warm environment keeps between invocations

    def handler(event, context):
        SERVED.append(context.aws_request_id)
        print(json.dumps({"message": "handling", "request_id": context.aws_request_id}))
        if event.get("exit"):
            os._exit(3)
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("state"):
            return {"served": len(SERVED), "pid": os.getpid(),
                    "greeting": os.environ["GREETING"]}
        if event.get("fail"):
            raise ValueError("asked to fail")
        account = boto3.client("sts").get_caller_identity()["Account"]
        return {"greeting": os.environ["GREETING"], "account": account,
                "remaining_ms_positive": context.get_remaining_time_in_millis() > 0,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "echo": event.get("echo")}
    """)


@pytest.fixture
def deployed(moto_endpoint, tmp_path):
    """A function `probe` built from a handler in tmp_path/lambdas, deployed to moto."""
    lambdas = tmp_path / "lambdas"
    (lambdas / "probe").mkdir(parents=True)
    (lambdas / "probe" / "handler.py").write_text(HANDLER)

    def deploy(name="probe-fn", timeout_s=3, tags=None, variables=None):
        artifact = package.build_function("probe", lambdas_dir=lambdas)
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
            Code={"ZipFile": artifact.data}, Timeout=timeout_s, MemorySize=128,
            Environment={"Variables": {"GREETING": "hello from the configuration",
                                       **(variables or {})}},
            Tags={"runbook:function": "probe"} if tags is None else tags)
        return name

    aws = ClientFactory(REGION, endpoint_url=moto_endpoint, credentials=SANDBOX_CREDENTIALS)
    invoker = LocalInvoker(aws, endpoint_url=moto_endpoint, credentials=SANDBOX_CREDENTIALS,
                           database_dsn=None, lambdas_dir=lambdas, init_limit_s=4)
    return deploy, invoker, lambdas


def log_messages(name, stream):
    events = boto3.client("logs", region_name=REGION).get_log_events(
        logGroupName=f"/aws/lambda/{name}", logStreamName=stream)["events"]
    return [e["message"] for e in events]


def test_handler_runs_with_the_functions_environment_against_the_sandbox(deployed):
    deploy, invoker, _ = deployed
    name = deploy()

    invocation = invoker.invoke(name, {"echo": "ünïcode"})

    assert invocation.ok, (invocation.error_type, invocation.error_message, invocation.log_lines)
    assert 0 < invocation.result.pop("remaining_ms") <= 3000
    assert invocation.result == {"greeting": "hello from the configuration",
                                 "account": "123456789012", "remaining_ms_positive": True,
                                 "echo": "ünïcode"}
    messages = log_messages(name, invocation.log_stream)
    assert messages[0] == f"START RequestId: {invocation.request_id} Version: $LATEST"
    assert json.loads(messages[1]) == {"message": "handling",
                                       "request_id": invocation.request_id}
    assert messages[-2] == f"END RequestId: {invocation.request_id}"
    assert messages[-1].startswith(f"REPORT RequestId: {invocation.request_id}\tDuration: ")


def test_the_functions_timeout_is_enforced(deployed):
    deploy, invoker, _ = deployed
    name = deploy(timeout_s=1)

    invocation = invoker.invoke(name, {"sleep": 30})

    assert invocation.timed_out and not invocation.ok
    assert invocation.error_message == "Task timed out after 1.00 seconds"
    assert invocation.init_ms is not None  # the init was over before the handler timed out
    assert invocation.duration_ms < 10_000
    assert any("Task timed out after 1.00 seconds" in m
               for m in log_messages(name, invocation.log_stream))


def test_a_trigger_gets_cognitos_five_seconds_whatever_the_functions_timeout(deployed):
    deploy, invoker, _ = deployed
    name = deploy(timeout_s=60)

    invocation = invoker.invoke(name, {"sleep": 30}, trigger=True)

    assert invocation.timed_out
    assert invocation.error_message == f"Task timed out after {COGNITO_TRIGGER_LIMIT_S:.2f} seconds"
    assert invocation.duration_ms < 20_000


def test_the_init_is_timed_apart_and_the_timeout_starts_at_the_handlers_call(deployed):
    """As Lambda's REPORT line has it: a slow import is the Init Duration, and the
    function's timeout (here 2 s, shorter than the init) and the context's remaining
    time count from the handler's call."""
    deploy, invoker, _ = deployed
    name = deploy(timeout_s=2, variables={"INIT_SLEEP_S": "2.5"})

    invocation = invoker.invoke(name, {})

    assert invocation.ok, invocation.error_message
    assert invocation.init_ms >= 2500 and invocation.duration_ms < 2000
    assert 1000 < invocation.result["remaining_ms"] <= 2000
    assert invocation.as_dict()["init_ms"] == invocation.init_ms
    report = log_messages(name, invocation.log_stream)[-1]
    assert f"\tInit Duration: {invocation.init_ms:.2f} ms" in report


def test_an_init_over_lambdas_init_limit_is_killed(deployed):
    deploy, invoker, _ = deployed
    name = deploy(timeout_s=60, variables={"INIT_SLEEP_S": "30"})

    invocation = invoker.invoke(name, {}, trigger=True)

    assert invocation.timed_out and invocation.init_ms is None
    assert invocation.error_message == "Init timed out after 4.00 seconds"
    assert any("Init timed out after 4.00 seconds" in m
               for m in log_messages(name, invocation.log_stream))


def test_an_exception_is_the_invocations_error_and_is_logged(deployed):
    deploy, invoker, _ = deployed
    name = deploy()

    invocation = invoker.invoke(name, {"fail": True})

    assert (invocation.error_type, invocation.error_message) == ("ValueError", "asked to fail")
    assert any("[ERROR] ValueError: asked to fail" in m
               for m in log_messages(name, invocation.log_stream))


def test_local_code_that_differs_from_the_deployed_code_is_refused(deployed):
    deploy, invoker, lambdas = deployed
    name = deploy()
    (lambdas / "probe" / "handler.py").write_text(HANDLER + "\n# edited\n")

    with pytest.raises(BadInput, match="differs from lambdas/probe.*deploy it again"):
        invoker.invoke(name, {})


def test_a_function_runbook_did_not_deploy_is_refused(deployed):
    deploy, invoker, _ = deployed
    name = deploy(tags={})

    with pytest.raises(BadInput, match="not deployed by runbook"):
        invoker.invoke(name, {})
    with pytest.raises(BadInput, match="no function no-such-fn is deployed"):
        invoker.invoke("no-such-fn", {})


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child that ended but was not reaped yet is a zombie: not running
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_second_invocation_is_served_warm_by_the_same_environment(deployed, moto_endpoint):
    deploy, invoker, _ = deployed
    name = deploy()

    first = invoker.invoke(name, {"state": True})
    second = invoker.invoke(name, {"state": True})

    assert first.ok and second.ok, (first.error_message, second.error_message)
    assert first.init_ms is not None and second.init_ms is None
    assert second.result["pid"] == first.result["pid"]
    assert (first.result["served"], second.result["served"]) == (1, 2)
    assert second.log_stream == first.log_stream  # a stream per environment, as Lambda's
    messages = log_messages(name, second.log_stream)
    reports = [m for m in messages if m.startswith("REPORT")]
    assert len(reports) == 2
    assert "Init Duration" in reports[0] and "Init Duration" not in reports[1]
    assert f"START RequestId: {second.request_id} Version: $LATEST" in messages
    # What the second printed is its own: not the first's lines again.
    assert [json.loads(line)["request_id"] for line in second.log_lines] == [second.request_id]

    ENVIRONMENTS.close(moto_endpoint)
    assert not _pid_running(first.result["pid"])


def test_a_change_of_configuration_is_served_by_a_new_environment(deployed):
    deploy, invoker, _ = deployed
    name = deploy()
    first = invoker.invoke(name, {"state": True})

    boto3.client("lambda", region_name=REGION).update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "changed"}})
    second = invoker.invoke(name, {"state": True})

    assert second.ok, second.error_message
    assert second.init_ms is not None and second.result["served"] == 1
    assert second.result["greeting"] == "changed"
    assert second.result["pid"] != first.result["pid"]
    assert not _pid_running(first.result["pid"])  # the older version's is retired


@pytest.mark.parametrize("event, error", [({"sleep": 30}, "TimeoutError"),
                                          ({"exit": True}, "Runtime.ExitError")])
def test_after_a_timeout_or_a_crash_the_next_invocation_starts_a_new_environment(
        deployed, event, error):
    deploy, invoker, _ = deployed
    name = deploy(timeout_s=1)
    first = invoker.invoke(name, {"state": True})

    failed = invoker.invoke(name, event)
    after = invoker.invoke(name, {"state": True})

    assert failed.error_type == error, failed.error_message
    assert not _pid_running(first.result["pid"])
    assert after.ok and after.init_ms is not None and after.result["served"] == 1


def test_a_failed_init_is_reported_by_the_invocation_and_not_reused(deployed):
    deploy, invoker, _ = deployed
    name = deploy(variables={"INIT_FAIL": "1"})

    first = invoker.invoke(name, {})
    second = invoker.invoke(name, {})

    assert (first.error_type, first.error_message) == ("RuntimeError", "the init failed")
    assert first.init_ms is not None
    assert second.error_type == "RuntimeError" and second.init_ms is not None
    assert second.log_stream != first.log_stream


def test_invocations_at_once_get_an_environment_each(deployed):
    deploy, invoker, _ = deployed
    name = deploy()
    results = []

    def invoke():
        results.append(invoker.invoke(name, {"state": True, "sleep": 1}))

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.error_message for r in results] == [None, None]
    assert {r.result["served"] for r in results} == {1}
    assert len({r.result["pid"] for r in results}) == 2
    assert len({r.log_stream for r in results}) == 2
