"""The run's read cache (runbook.aws.readcache) against in-process moto: a read made
inside `reading()` is sent once and answered again, until a write; retries and waits
always ask AWS; a write whose answer was lost is never hidden."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from runbook.aws import retry
from runbook.aws.readcache import ReadCache
from runbook.errors import ImpurePlan


def vpcs(aws, cidr="10.9.0.0/16"):
    return aws.client("ec2").describe_vpcs(
        Filters=[{"Name": "cidr", "Values": [cidr]}])["Vpcs"]


def test_a_read_inside_reading_is_sent_once_and_answered_again(aws):
    with aws.scoped("step") as counts, aws.reading():
        first, second = vpcs(aws), vpcs(aws)

    assert first == second == []
    assert counts == {"read": 1, "write": 0}
    assert aws.cache.hits == 1


def test_outside_reading_every_read_is_sent(aws):
    with aws.reading():
        vpcs(aws)
    with aws.scoped("step") as counts:
        vpcs(aws)
        vpcs(aws)
    assert counts["read"] == 2


def test_a_request_with_other_parameters_is_another_read(aws):
    with aws.scoped("step") as counts, aws.reading():
        vpcs(aws, "10.9.0.0/16")
        vpcs(aws, "10.8.0.0/16")
    assert counts["read"] == 2


def test_not_found_is_an_answer_and_is_kept(aws):
    rds = aws.client("rds")
    with aws.scoped("step") as counts, aws.reading():
        for _ in range(2):
            with pytest.raises(ClientError) as missing:
                rds.describe_db_clusters(DBClusterIdentifier="nothing-here")
            assert missing.value.response["Error"]["Code"] == "DBClusterNotFoundFault"
    assert counts["read"] == 1


def test_an_error_that_is_not_not_found_is_asked_again(aws):
    secrets = aws.client("secretsmanager")
    secrets.create_secret(Name="gone-soon", SecretString="{}")
    secrets.delete_secret(SecretId="gone-soon", RecoveryWindowInDays=7)
    with aws.scoped("step") as counts, aws.reading():
        for _ in range(2):
            with pytest.raises(ClientError) as refused:
                secrets.get_secret_value(SecretId="gone-soon")
            assert refused.value.response["Error"]["Code"] == "InvalidRequestException"
    assert counts["read"] == 2


def test_a_write_forgets_its_own_services_answers_and_the_next_read_sees_it(aws):
    rds = aws.client("rds")
    with aws.scoped("step") as counts, aws.reading():
        assert vpcs(aws) == []
        groups = rds.describe_db_subnet_groups()["DBSubnetGroups"]
        aws.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")
        assert len(vpcs(aws)) == 1                                        # asked again
        assert rds.describe_db_subnet_groups()["DBSubnetGroups"] == groups  # kept
    assert counts == {"read": 3, "write": 1}


def test_any_write_forgets_the_answers_of_services_aws_writes_to_for_others(aws):
    """RDS and Lambda make network interfaces in EC2, service-linked roles in IAM, log
    groups in CloudWatch Logs: an EC2 answer is not given again after an RDS write."""
    with aws.scoped("step") as counts, aws.reading():
        vpcs(aws)
        aws.client("rds").create_db_cluster_parameter_group(
            DBClusterParameterGroupName="g", DBParameterGroupFamily="aurora-postgresql16",
            Description="g")
        vpcs(aws)
    assert counts["read"] == 2


def test_the_cache_is_emptied_before_a_write_is_sent(aws):
    seen = []

    def at_send(service, operation, write):
        if write:
            seen.append(len(aws.cache))

    aws.interceptors.append(at_send)
    with aws.reading():
        vpcs(aws)
        aws.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")
    assert seen == [0]


def test_a_write_whose_answer_was_lost_is_not_hidden_by_an_earlier_read(aws):
    def lose(service, operation, write, parsed):
        if operation == "CreateVpc":
            raise ConnectionClosedError(endpoint_url="answer lost")

    aws.after_interceptors.append(lose)
    with aws.reading():
        assert vpcs(aws) == []
        with pytest.raises(ConnectionClosedError):
            aws.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")
        assert len(vpcs(aws)) == 1   # it took effect, and the read shows it


def test_a_write_refused_before_it_was_sent_still_empties_the_cache(aws):
    def refuse(service, operation, write):
        if operation == "CreateVpc":
            raise ConnectionClosedError(endpoint_url="refused")

    aws.interceptors.append(refuse)
    with aws.scoped("step") as counts, aws.reading():
        vpcs(aws)
        with pytest.raises(ConnectionClosedError):
            aws.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")
        vpcs(aws)
        vpcs(aws)   # kept again once the refused write is over
    assert counts["read"] == 2


def test_a_wait_always_asks_aws_and_keeps_nothing(aws):
    rds = aws.client("rds")

    def cluster():
        try:
            return rds.describe_db_clusters(DBClusterIdentifier="c1")["DBClusters"]
        except ClientError:
            return []

    answers = iter([False, False, True])
    with aws.scoped("step") as counts, aws.reading():
        cluster()   # kept: "not found"
        retry.wait_until(cluster, lambda _: next(answers), what="c1", timeout_s=60,
                         interval_s=1, sleep=lambda s: None)
        cluster()   # still the answer kept before the wait
    assert counts["read"] == 4
    assert aws.cache.hits == 1


def test_a_retried_read_is_sent_each_time(aws):
    ec2 = aws.client("ec2")
    attempts = []

    def describe():
        attempts.append(1)
        ec2.describe_vpcs(VpcIds=["vpc-0123456789abcdef0"])

    with aws.scoped("step") as counts, aws.reading():
        with pytest.raises(ClientError):
            retry.retry(describe, when=retry.is_ec2_propagation_error,
                        policy=retry.EC2_PROPAGATION, sleep=lambda s: None)
    assert counts["read"] == len(attempts) == retry.EC2_PROPAGATION.attempts


def test_a_plan_is_refused_a_read_the_cache_holds(aws):
    with aws.reading():
        vpcs(aws)
        with aws.refusing("step 'network''s plan"), pytest.raises(ImpurePlan):
            vpcs(aws)


def test_an_answer_is_a_copy(aws):
    aws.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")
    with aws.reading():
        vpcs(aws)[0]["CidrBlock"] = "changed by the caller"
        assert vpcs(aws)[0]["CidrBlock"] == "10.9.0.0/16"


def test_reading_is_per_thread(aws):
    counts = {}

    def other_thread():
        with aws.scoped("other") as mine:
            vpcs(aws)
            vpcs(aws)
            counts.update(mine)

    with aws.reading():
        vpcs(aws)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert counts["read"] == 2   # not inside reading in its own thread


def test_an_answer_that_overlapped_a_write_is_not_kept():
    cache = ReadCache()
    key = ("ec2", "DescribeVpcs", "/", "''", "()", ())

    class Http:
        status_code = 200

    began = cache.generation()
    cache.write_started("ec2")      # another thread's write starts meanwhile
    cache.keep(key, began, Http(), {"Vpcs": []})
    assert cache.answer(key) is None
    during = cache.generation()
    cache.keep(key, during, Http(), {"Vpcs": []})   # the write is still under way
    assert cache.answer(key) is None
    cache.write_ended()
    cache.keep(key, during, Http(), {"Vpcs": []})   # began before it ended
    assert cache.answer(key) is None
    cache.keep(key, cache.generation(), Http(), {"Vpcs": []})
    assert cache.answer(key) == (cache.answer(key)[0], {"Vpcs": []})


def test_a_sibling_shares_the_session_not_the_counts_cache_or_clients(aws):
    sibling = aws.sibling()
    with aws.reading():
        vpcs(aws)
    with sibling.scoped("lock") as counts, sibling.reading():
        vpcs(sibling)
    assert sibling.session() is aws.session()
    assert sibling.client("ec2") is not aws.client("ec2")
    assert counts["read"] == 1 and aws.counts["lock"]["read"] == 0
    assert sibling.journal is not aws.journal


def test_an_invoke_of_db_migrates_read_action_is_counted_as_a_read_but_always_sent():
    """It reads the database, which changes without a write through the factory."""
    import io
    import json

    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from runbook.aws.clients import ClientFactory
    from runbook.lambda_runtime import migrate_event
    from runbook.lambda_runtime.schemas import Schemas
    from tests.conftest import REGION

    aws = ClientFactory(REGION)
    lam = aws.client("lambda")
    payload = json.dumps(migrate_event.build(migrate_event.READ, [], {}, Schemas())).encode()
    with Stubber(lam) as stub, aws.scoped("step") as counts, aws.reading():
        for _ in range(2):
            stub.add_response("invoke", {"StatusCode": 200,
                                         "Payload": StreamingBody(io.BytesIO(b"{}"), 2)})
            lam.invoke(FunctionName="matbakh-cognito-db-migrate", Payload=payload)
        stub.assert_no_pending_responses()
    assert counts == {"read": 2, "write": 0}
