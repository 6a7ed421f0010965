"""Step `registration-test` (phase a4): prove the event path end to end with a real sign-up.

A test user signs up and is confirmed as in step integration-test (the same machinery:
runbook.steps.integration_test). Post-Confirmation publishes its `user.registered`
event; the rule routes it to the signup queue; the event source mapping hands it to
process-user-signup, which writes `users`. The checks, in this order:

  cognito_signup             SignUp through the app client returns the user's sub
  post_confirmation_trigger  the confirmation (and with it the trigger) succeeded within
                             Cognito's 5 s
  event_routing              read back from the account, as moto checks none of it: the
                             rule matches runbook's source and detail type; its one
                             target is the queue, with a RetryPolicy and a DeadLetterConfig
                             and no RoleArn; both queues are SSE-SQS, admit only
                             events.amazonaws.com for this rule's ARN, and the queue
                             redrives to the DLQ after 5 receives, with a visibility
                             timeout of at least 6x the consumer's timeout
  registration_event         the user's `users` row appears through the queue within
                             integration_test.row_timeout_s, with the address, name,
                             phone and email_verified Cognito holds, the trigger's
                             registration-outbox row is gone (the consumer stored it),
                             and one audit row records it
  dead_letter                a poison message sent beside a good one in one batch: the
                             good one is stored, the poison one is reported failed on
                             every receive and, after maxReceiveCount receives, is in the
                             DLQ (partial batch failure; it is deleted from there)
  alarm                      the DLQ-depth alarm exists and watches the DLQ; the errors
                             alarm watches the consumer
  cleanup                    the Cognito user, its profile, the test's `users` and
                             outbox rows, and any test message left on the queues

Not idempotent: every run makes and deletes a user and two messages. On AWS the dead
letter takes up to maxReceiveCount x the visibility timeout (5 x 180 s by default); the
sandbox's poller makes a failed message visible again after a second instead. While the
poison message is in the DLQ (seconds: it is deleted as soon as it is seen), the
DLQ-depth alarm may go off once; it is the alarm the check proves.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

from runbook.lambda_runtime.registration import DETAIL_TYPE, SOURCE
from runbook.steps import event_bus
from runbook.steps.integration_test import (POLL_INTERVAL_S, CheckFailed, IntegrationTest,
                                            TestState)

STEP_NAME = "registration-test"
CHECKS = ("cognito_signup", "post_confirmation_trigger", "event_routing", "registration_event",
          "dead_letter", "alarm", "cleanup")
# Beyond maxReceiveCount x the visibility timeout, for the poller and the redrive.
DEAD_LETTER_MARGIN_S = 60
EVENTS_PRINCIPAL = {"Service": "events.amazonaws.com"}


class RegistrationTest(IntegrationTest):
    name = STEP_NAME
    CHECKS = CHECKS

    def read(self) -> TestState:
        state = super().read()
        # The inputs, so that a missing one is named before anything runs.
        state.extra.update(bus=self.inputs.event_bus,
                           consumer=self.inputs.deploy_process_user_signup)
        return state

    def sequence(self, state: TestState) -> None:
        self._check("cognito_signup", self.sign_up, state)
        self._check("post_confirmation_trigger", self.confirm, state, needs="cognito_signup")
        self._check("event_routing", self.event_routing, state)
        self._check("registration_event", self.registration_event, state,
                    needs="post_confirmation_trigger")
        self._check("dead_letter", self.dead_letter, state)
        self._check("alarm", self.alarm, state)

    # -- the checks ------------------------------------------------------------------------

    def event_routing(self, state: TestState) -> str:
        bus = state.extra["bus"]
        events, sqs = self.client("events"), self.client("sqs")
        rule_name = bus.rule_arn.rsplit("/", 1)[-1]
        problems: list[str] = []

        rule = events.describe_rule(Name=rule_name, EventBusName=bus.bus_name)
        pattern = json.loads(rule.get("EventPattern") or "{}")
        if pattern != {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}:
            problems.append(f"rule {rule_name} matches {pattern}, not source {SOURCE} and "
                            f"detail-type {DETAIL_TYPE}")
        targets = events.list_targets_by_rule(Rule=rule_name,
                                              EventBusName=bus.bus_name)["Targets"]
        if [t["Arn"] for t in targets] != [bus.queue_arn]:
            problems.append(f"rule {rule_name} targets {[t['Arn'] for t in targets]}, not "
                            "the signup queue alone")
        for target in targets:
            if target.get("RoleArn"):
                problems.append("the queue target has a RoleArn (AWS: delivery to SQS may "
                                "fail with one)")
            if not target.get("RetryPolicy"):
                problems.append("the queue target has no RetryPolicy")
            if (target.get("DeadLetterConfig") or {}).get("Arn") != bus.dead_letter_queue_arn:
                problems.append("the queue target's DeadLetterConfig is not the DLQ")

        timeout = self.config.lambdas.settings(event_bus.CONSUMER).timeout_s
        for label, url, arn in (("queue", bus.queue_url, bus.queue_arn),
                                ("DLQ", bus.dead_letter_queue_url, bus.dead_letter_queue_arn)):
            attributes = sqs.get_queue_attributes(QueueUrl=url,
                                                  AttributeNames=["All"])["Attributes"]
            if attributes.get("SqsManagedSseEnabled") != "true":
                problems.append(f"the {label} is not encrypted with SSE-SQS")
            problems += policy_problems(label, attributes.get("Policy"), arn, bus.rule_arn)
            if label == "queue":
                redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
                if redrive.get("deadLetterTargetArn") != bus.dead_letter_queue_arn or \
                        int(redrive.get("maxReceiveCount", 0)) != event_bus.MAX_RECEIVE_COUNT:
                    problems.append(f"the queue does not redrive to the DLQ after "
                                    f"{event_bus.MAX_RECEIVE_COUNT} receives")
                if int(attributes.get("VisibilityTimeout", 0)) < 6 * timeout:
                    problems.append(f"the queue's visibility timeout "
                                    f"{attributes.get('VisibilityTimeout')} s is under 6 x the "
                                    f"consumer's {timeout} s")
        if problems:
            raise CheckFailed("; ".join(problems))
        return (f"rule {rule_name} -> the signup queue only (RetryPolicy, DeadLetterConfig, "
                "no RoleArn); queue and DLQ SSE-SQS, each admitting events.amazonaws.com "
                f"for this rule only; redrive after {event_bus.MAX_RECEIVE_COUNT} receives; "
                f"visibility timeout at least 6 x {timeout} s")

    def registration_event(self, state: TestState) -> str:
        user = state.user
        attributes = {a["Name"]: a["Value"] for a in self.client("cognito-idp").admin_get_user(
            UserPoolId=state.pool_id, Username=user.email)["UserAttributes"]}
        row = self._poll(f"SELECT email, name, phone, email_verified FROM "
                         f"{self._table('users')} WHERE cognito_id = %s",
                         (user.sub,), "the users row")
        self.timings["signup_to_users_row_ms"] = int((time.monotonic() - user.signed_up_at)
                                                     * 1000)
        expected = (attributes.get("email"), attributes.get("name"),
                    attributes.get("phone_number"), attributes.get("email_verified") == "true")
        differs = [column for column, got, want in zip(
            ("email", "name", "phone", "email_verified"), row, expected) if got != want]
        if differs:
            raise CheckFailed(f"the users row of sub {user.sub} differs from the Cognito user "
                              f"in {', '.join(differs)}")
        # The consumer deleted it with the row; a trigger Cognito ran again after that
        # writes it once more, for the next delivery to remove: wait for that too.
        try:
            self._poll(f"SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM "
                       f"{self._table('registration_outbox')} WHERE cognito_id = %s)",
                       (user.sub,), "the registration-outbox row's removal")
        except CheckFailed:
            raise CheckFailed("the users row is there but the registration-outbox row stays: "
                              "the consumer did not store this registration") from None
        # One audit row, written with the users row: a delivery seen again adds none.
        audited = self._db().execute(
            f"SELECT source FROM {self._table('registrations')} WHERE cognito_id = %s",
            (user.sub,)).fetchall()
        if len(audited) != 1:
            raise CheckFailed(f"expected one audit row for sub {user.sub}, found "
                              f"{len(audited)}")
        return (f"users row for sub {user.sub} {self.timings['signup_to_users_row_ms']} ms "
                "after sign-up, with Cognito's address, name, phone and email_verified; the "
                f"outbox row is gone; one audit row (stored by the {audited[0][0]})")

    def dead_letter(self, state: TestState) -> str:
        bus, sqs = state.extra["bus"], self.client("sqs")
        good, poison = self._dead_letter_subs(state)
        domain = self.config.integration_test.email_domain
        sent = sqs.send_message_batch(QueueUrl=bus.queue_url, Entries=[
            {"Id": "good", "MessageBody": json.dumps(envelope(
                {"cognito_user_id": good, "email": f"runbook-it+{good}@{domain}",
                 "name": "runbook dead-letter check", "phone": None,
                 "email_verified": True}, self.ctx.aws.region))},
            # No address: the consumer refuses it, by its messageId, on every receive.
            {"Id": "poison", "MessageBody": json.dumps(envelope(
                {"cognito_user_id": poison}, self.ctx.aws.region))},
        ])
        if sent.get("Failed"):
            raise CheckFailed(f"SendMessageBatch refused {[f['Id'] for f in sent['Failed']]}")
        self._poll(f"SELECT 1 FROM {self._table('users')} WHERE cognito_id = %s", (good,),
                   "the good message's users row")

        attributes = sqs.get_queue_attributes(
            QueueUrl=bus.queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]
        timeout = (event_bus.MAX_RECEIVE_COUNT * int(attributes["VisibilityTimeout"])
                   + DEAD_LETTER_MARGIN_S)
        deadline = time.monotonic() + timeout
        while True:
            found = take_message(sqs, bus.dead_letter_queue_url, poison)
            if found is not None:
                break
            if time.monotonic() >= deadline:
                raise CheckFailed(f"the poison message was not in the DLQ within {timeout} s")
            self.ctx.sleep(POLL_INTERVAL_S)
        receives = int(found.get("Attributes", {}).get("ApproximateReceiveCount", 0))
        if receives < event_bus.MAX_RECEIVE_COUNT:
            raise CheckFailed(f"the poison message reached the DLQ after {receives} receives, "
                              f"not {event_bus.MAX_RECEIVE_COUNT}")
        return ("of a good and a poison message sent together, the good one was stored; "
                f"the poison one was in the DLQ after {receives} receives (maxReceiveCount "
                f"{event_bus.MAX_RECEIVE_COUNT}), and was deleted there")

    def alarm(self, state: TestState) -> str:
        bus = state.extra["bus"]
        dlq_alarm, errors_alarm = bus.alarms
        found = {a["AlarmName"]: a for a in self.client("cloudwatch").describe_alarms(
            AlarmNames=[dlq_alarm, errors_alarm])["MetricAlarms"]}
        dlq_name = bus.dead_letter_queue_arn.rsplit(":", 1)[-1]
        wanted = {dlq_alarm: ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                              {"QueueName": dlq_name}),
                  errors_alarm: ("AWS/Lambda", "Errors",
                                 {"FunctionName": bus.consumer_function})}
        problems = []
        for name, (namespace, metric, dimensions) in wanted.items():
            alarm = found.get(name)
            if alarm is None:
                problems.append(f"alarm {name} does not exist")
                continue
            got = (alarm.get("Namespace"), alarm.get("MetricName"),
                   {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])})
            if got != (namespace, metric, dimensions) or \
                    alarm.get("ComparisonOperator") != "GreaterThanThreshold" or \
                    float(alarm.get("Threshold", -1)) != 0.0:
                problems.append(f"alarm {name} watches {got[0]} {got[1]} {got[2]} "
                                f"{alarm.get('ComparisonOperator')} {alarm.get('Threshold')}, "
                                f"not {namespace} {metric} {dimensions} > 0")
        if problems:
            raise CheckFailed("; ".join(problems))
        return (f"{dlq_alarm}: {dlq_name} ApproximateNumberOfMessagesVisible > 0; "
                f"{errors_alarm}: {bus.consumer_function} Errors > 0")

    # -- cleanup -------------------------------------------------------------------------

    def cleanup(self, state: TestState) -> str:
        done: list[str] = []
        failed = None
        try:
            done.append(super().cleanup(state))
        except CheckFailed as exc:
            failed = str(exc)
        good, poison = self._dead_letter_subs(state)
        bus = state.extra.get("bus")
        sent = self.checks["dead_letter"].status != "skipped"
        if sent and self.checks["dead_letter"].status != "ok":
            # The good message may still be on its way: its row, once stored, is deleted
            # below, not left to appear after the cleanup.
            try:
                self._poll(f"SELECT 1 FROM {self._table('users')} WHERE cognito_id = %s",
                           (good,), "the good message's users row")
            except Exception:  # noqa: BLE001 - not stored: nothing to wait for
                pass
        try:
            done.append(self.forget_registrations(state, [good],
                                                  whose="the dead-letter check"))
        except CheckFailed as exc:
            failed = "; ".join(filter(None, (failed, str(exc))))
        if bus is not None and sent and self.checks["dead_letter"].status != "ok":
            # Only the DLQ is searched: receiving from the signup queue would take the
            # messages of real sign-ups from the consumer.
            sqs = self.client("sqs")
            left = sum(take_message(sqs, bus.dead_letter_queue_url, marker) is not None
                       for marker in (good, poison))
            done.append(f"deleted {left} test message(s) found in the DLQ")
        if failed:
            raise CheckFailed("; ".join([failed] + done))
        return "; ".join(done)

    def _dead_letter_subs(self, state: TestState) -> tuple[str, str]:
        """The Cognito ids of the dead-letter check's two messages: this run's."""
        run = state.user.run_id
        return f"runbook-it-{run}-good", f"runbook-it-{run}-poison"


def envelope(detail: dict, region: str) -> dict:
    """An EventBridge event as the rule puts it on the queue (AWS-FACTS A)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE,
            "source": SOURCE, "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region, "resources": [],
            "detail": {key: value for key, value in detail.items() if value is not None}}


def take_message(sqs, url: str, marker: str) -> dict | None:
    """Receive from `url` and delete the message whose body holds `marker`; give the
    others back at once. None when it is not among those received."""
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                 VisibilityTimeout=30, AttributeNames=["All"])
    found = None
    for message in answer.get("Messages", []):
        if found is None and marker in message.get("Body", ""):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            found = message
        else:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
    return found


def policy_problems(label: str, text: str | None, queue_arn: str, rule_arn: str) -> list[str]:
    """What is wrong with a queue's policy: it must only allow events.amazonaws.com to
    SendMessage to the queue, for this rule (aws:SourceArn)."""
    if not text:
        return [f"the {label} has no policy"]
    problems, allowed = [], 0
    for statement in json.loads(text).get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        allowed += 1
        actions = statement.get("Action")
        actions = [actions] if isinstance(actions, str) else actions
        condition = statement.get("Condition") or {}
        source = (condition.get("ArnEquals") or condition.get("ArnLike") or {}).get(
            "aws:SourceArn")
        if statement.get("Principal") != EVENTS_PRINCIPAL or actions != ["sqs:SendMessage"] \
                or statement.get("Resource") != queue_arn or source != rule_arn:
            problems.append(f"the {label}'s policy allows {actions} to "
                            f"{statement.get('Principal')} on {statement.get('Resource')} for "
                            f"{source or 'any source'}, not sqs:SendMessage to "
                            "events.amazonaws.com for this rule only")
    return problems if allowed else [f"the {label}'s policy allows nothing"]


STEP = RegistrationTest
