"""The engine's small parts: call classification, retries and waits with an injected
sleep, progress while waiting, the journal's choice of fields, and `--help` imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runbook.aws import retry
from runbook.aws.clients import is_write
from runbook.aws.journal import Journal, resource_ids
from runbook.output.progress import Progress


@pytest.mark.parametrize("operation, write", [
    ("DescribeVpcs", False), ("GetSecretValue", False), ("ListTagsForResource", False),
    ("GetCallerIdentity", False), ("AdminGetUser", False), ("FilterLogEvents", False),
    ("CreateVpc", True), ("ModifyDBCluster", True), ("PutSecretValue", True),
    ("AdminCreateUser", True), ("TagResource", True), ("RestoreSecret", True),
])
def test_operations_are_classified_as_read_or_write(operation, write):
    assert is_write(operation) is write


class Boom(Exception):
    def __init__(self, code):
        self.response = {"Error": {"Code": code, "Message": "m"}}


def test_retry_waits_with_backoff_then_succeeds():
    slept, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise Boom("InvalidVpcID.NotFound")
        return "ok"

    assert retry.retry(flaky, when=retry.is_ec2_propagation_error,
                       policy=retry.EC2_PROPAGATION, sleep=slept.append) == "ok"
    assert slept == [1, 2, 4]


def test_retry_gives_up_after_the_policy_and_raises_the_last_error():
    slept = []
    with pytest.raises(Boom):
        retry.retry(lambda: (_ for _ in ()).throw(Boom("InvalidSubnetID.NotFound")),
                    when=retry.is_ec2_propagation_error, policy=retry.EC2_PROPAGATION,
                    sleep=slept.append)
    assert slept == [1, 2, 4, 8, 8]  # 23 s at most, as the policy's comment says


def test_retry_does_not_retry_an_unrelated_error():
    slept = []
    with pytest.raises(Boom):
        retry.retry(lambda: (_ for _ in ()).throw(Boom("UnauthorizedOperation")),
                    when=retry.is_ec2_propagation_error, policy=retry.EC2_PROPAGATION,
                    sleep=slept.append)
    assert slept == []


def test_wait_reports_elapsed_time_and_stops_on_a_terminal_state():
    now = [0.0]
    states = iter(["creating", "creating", "creating", "failed"])
    seen = []
    with pytest.raises(retry.WaitTimeout, match="cluster is failed"):
        retry.wait_until(lambda: next(states), lambda s: s == "available", what="cluster",
                         timeout_s=3600, interval_s=30, sleep=lambda s: now.__setitem__(0, now[0] + s),
                         clock=lambda: now[0],
                         failed=lambda s: "cluster is failed" if s == "failed" else None,
                         on_wait=lambda what, elapsed: seen.append(elapsed))
    assert seen == [0, 30, 60]


def test_wait_times_out_with_the_elapsed_time_in_the_message():
    now = [0.0]
    with pytest.raises(retry.WaitTimeout, match=r"still not ready after 2m00s"):
        retry.wait_until(lambda: "creating", lambda s: False, what="x", timeout_s=120,
                         interval_s=60, sleep=lambda s: now.__setitem__(0, now[0] + s),
                         clock=lambda: now[0])


def test_progress_prints_waiting_lines_at_most_every_interval(capsys):
    progress = Progress(wait_report_every_s=30)
    for elapsed in (0, 10, 20, 30, 45, 61, 125):
        progress.waiting("rds cluster matbakh-prod to be available", elapsed)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("... ")[1] for line in lines] == ["0s", "30s", "1m01s", "2m05s"]


def test_journal_keeps_identifiers_never_values(tmp_path):
    response = {"ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:x",
                "Name": "matbakh-db-postgres", "VersionId": "v1",
                "SecretString": "hunter2", "ResponseMetadata": {"RequestId": "r"}}
    journal = Journal(tmp_path / "j.jsonl")
    journal.record("store-secrets", "secretsmanager", "CreateSecret", response)
    journal.close()
    line = json.loads((tmp_path / "j.jsonl").read_text())
    assert line["resources"] == {"ARN": response["ARN"], "Name": "matbakh-db-postgres",
                                 "VersionId": "v1"}
    assert "hunter2" not in json.dumps(line)
    assert resource_ids({"Vpc": {"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}}) == {"VpcId": "vpc-1"}
    # A queue is known by its URL alone: a create must still name what it made.
    url = "https://sqs.eu-central-1.amazonaws.com/123456789012/matbakh-prod-signups"
    assert resource_ids({"QueueUrl": url}) == {"QueueUrl": url}


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["plan", "--help"], ["status", "--help"]])
def test_help_imports_neither_boto3_nor_moto_nor_psycopg(argv):
    code = (
        "import sys\n"
        "from runbook.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'moto', 'psycopg', 'pgserver', 'pydantic'))\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "Usage:" in proc.stdout


def test_a_parameter_error_never_echoes_the_value_it_rejected():
    from botocore.exceptions import ParamValidationError

    from runbook.engine import explain

    exc = ParamValidationError(report="Invalid type for parameter MasterUserPassword, "
                                      "value: hunter2-secret, type: <class 'int'>, "
                                      "valid types: <class 'str'>")
    text = explain(exc)
    assert "MasterUserPassword" in text and "(withheld)" in text
    assert "hunter2-secret" not in text


def test_an_sso_profile_without_a_login_is_bad_input_not_a_crash(tmp_path, monkeypatch, write_config, cli):
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[profile ops]\nsso_session = corp\nsso_account_id = 123456789012\n"
                          "sso_role_name = Admin\nregion = eu-central-1\n"
                          "[sso-session corp]\nsso_start_url = https://example.invalid/start\n"
                          "sso_region = eu-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached SSO token
    result = cli("plan", "--phase", "a1", "--config", str(write_config()))
    assert result.exit_code == 2, result.output
    assert "aws sso login" in result.stderr
    assert "internal error" not in result.output and "Traceback" not in result.output
