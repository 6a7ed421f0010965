"""Publishing `user.registered` (runbook.lambda_runtime.registration) against moto: a custom
bus, a rule on runbook's source and detail type, and an SQS target, as step event-bus
makes them. A failed entry is injected where AWS reports one, in PutEvents' answer,
without the request reaching the bus (as a failed entry does not)."""

from __future__ import annotations

import contextlib
import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from runbook.lambda_runtime import profiles, registration, trigger
from tests.conftest import REGION, REPO

SIGN_UP_EVENT = REPO / "tests" / "fixtures" / "events" / "post_confirmation_confirm_signup.json"
BUS = "matbakh-prod-events"


@pytest.fixture
def bus():
    """(events client, sqs client, queue url): the bus routes runbook's user.registered
    to the queue."""
    with routed_bus() as routed:
        yield routed


@contextlib.contextmanager
def routed_bus():
    """bus(), for other modules' fixtures."""
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events.create_event_bus(Name=BUS)
        events.put_rule(Name="user-registered", EventBusName=BUS, EventPattern=json.dumps(
            {"source": [registration.SOURCE], "detail-type": [registration.DETAIL_TYPE]}))
        url = sqs.create_queue(QueueName="signups")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        events.put_targets(Rule="user-registered", EventBusName=BUS,
                           Targets=[{"Id": "signups", "Arn": arn}])
        yield events, sqs, url


def sign_up_detail() -> dict:
    """The detail Post-Confirmation publishes for the fixture's sign-up."""
    parsed = trigger.parse(json.loads(SIGN_UP_EVENT.read_text()), (registration.SIGN_UP,))
    return registration.detail(profiles.new_user(parsed),
                               email_verified=parsed.get("email_verified") == "true")


def messages(sqs, url) -> list[dict]:
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in found.get("Messages", [])]


def fail_first(events, count: int, code: str = "InternalFailure") -> list[str]:
    """Answer the next `count` PutEvents with the entry failed, the request not sent."""
    calls: list[str] = []

    def answer(**_):
        calls.append("put_events")
        if len(calls) > count:
            return None  # sent to the bus
        http = AWSResponse("https://events", 200, {}, None)
        return http, {"FailedEntryCount": 1,
                      "Entries": [{"ErrorCode": code, "ErrorMessage": "injected"}]}

    events.meta.events.register_first("before-call.eventbridge.PutEvents", answer)
    return calls


def test_the_detail_carries_what_users_needs_from_the_attributes():
    assert sign_up_detail() == {
        "cognito_user_id": "0f6b2c1e-3d4a-4b5c-8d9e-1f2a3b4c5d6e",
        "email": "lena.maier@example.com", "name": "Lena Maier",
        "phone": "+4915112345678", "email_verified": True}


def test_only_a_sign_up_is_published_never_a_password_reset():
    assert registration.should_publish("PostConfirmation_ConfirmSignUp")
    assert not registration.should_publish("PostConfirmation_ConfirmForgotPassword")


def test_one_entry_reaches_the_queue_through_the_rule(bus):
    events, sqs, url = bus
    event_id = registration.publish(events, BUS, sign_up_detail(),
                                    deadline=float("inf"))
    [body] = messages(sqs, url)
    assert body["id"] == event_id
    assert (body["source"], body["detail-type"]) == (registration.SOURCE,
                                                      registration.DETAIL_TYPE)
    assert body["detail"] == sign_up_detail()


def test_a_failed_entry_in_a_200_answer_is_sent_again_and_arrives_once(bus):
    events, sqs, url = bus
    calls = fail_first(events, 2)
    slept = []
    event_id = registration.publish(events, BUS, sign_up_detail(),
                                    deadline=float("inf"), sleep=slept.append)
    assert len(calls) == 3 and slept == list(registration.BACKOFF_S[:2])
    assert [body["id"] for body in messages(sqs, url)] == [event_id]


def slow_failures(events, now: list, took: float, code: str = "ThrottlingException") -> list:
    """Every PutEvents fails after taking `took` seconds of the fake clock `now`."""
    calls: list[float] = []

    def answer(**_):
        calls.append(now[0])
        now[0] += took
        http = AWSResponse("https://events", 200, {}, None)
        return http, {"FailedEntryCount": 1,
                      "Entries": [{"ErrorCode": code, "ErrorMessage": "injected"}]}

    events.meta.events.register_first("before-call.eventbridge.PutEvents", answer)
    return calls


def test_an_entry_still_failing_at_the_deadline_names_the_codes_and_never_the_address(bus):
    events, sqs, url = bus
    now = [0.0]
    calls = slow_failures(events, now, took=0.01)

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(registration.PublishFailed) as failed:
        registration.publish(events, BUS, sign_up_detail(), deadline=1.8,
                             clock=lambda: now[0], sleep=sleep)
    text = str(failed.value)
    assert "ThrottlingException" in text and "attempt(s)" in text
    assert "lena" not in text.lower() and "example.com" not in text
    assert len(calls) > 1
    # No attempt starts unless the longest one attempt can take still fits.
    assert all(start + registration.ATTEMPT_S <= 1.8 for start in calls)
    assert messages(sqs, url) == []


def test_slow_attempts_end_before_the_deadline_and_none_starts_after_it(bus):
    """An attempt can take the client's whole timeouts: the last one must still end by
    the deadline, and with no time left none is made (the outbox keeps the entry)."""
    events, sqs, url = bus
    now = [0.0]
    calls = slow_failures(events, now, took=registration.ATTEMPT_S)
    with pytest.raises(registration.PublishFailed):
        registration.publish(events, BUS, sign_up_detail(), deadline=4.5,
                             clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert len(calls) == 2 and now[0] <= 4.5

    now[0], calls[:] = 4.0, []
    with pytest.raises(registration.PublishFailed, match="no time left"):
        registration.publish(events, BUS, sign_up_detail(), deadline=4.5,
                             clock=lambda: now[0], sleep=lambda s: None)
    assert calls == []
