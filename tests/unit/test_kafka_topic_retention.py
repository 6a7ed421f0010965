"""A retention the brokers refuse fails the step (runbook.resources.kafka_topic): kafka-
python answers an AlterConfigs refusal as a string in its result, not an exception, and
a silent refusal would be planned again on every run."""

from __future__ import annotations

import pytest

from runbook.errors import StepFailed
from runbook.resources.kafka_topic import TopicSpec, set_retention


class Brokers:
    """What kafka-python's KafkaAdminClient.alter_configs returns: {"topic": {name:
    "OK" or the error's text}}; the request it was given is kept."""

    def __init__(self, outcome: str):
        self.outcome, self.requests = outcome, []

    def alter_configs(self, resources, raise_on_unknown=True):
        self.requests.append((resources, raise_on_unknown))
        return {"topic": {resources[0].name: self.outcome}}


SPEC = TopicSpec("legacy-users", {"runbook:env": "prod", "runbook:step": "msk-cluster"},
                 "msk.retention_hours", retention_ms=604800000)


def test_an_accepted_retention_passes_and_is_sent_as_a_set_of_retention_ms():
    brokers = Brokers("OK")
    set_retention(brokers, SPEC)
    [(resources, raise_on_unknown)] = brokers.requests
    assert resources[0].configs == {"retention.ms": "604800000"}
    assert raise_on_unknown is False


def test_a_refused_retention_fails_the_step_naming_the_permission():
    brokers = Brokers("[Error 29] TopicAuthorizationFailedError: not authorized")
    with pytest.raises(StepFailed, match="AlterTopicDynamicConfiguration") as failed:
        set_retention(brokers, SPEC)
    assert "TopicAuthorizationFailedError" in str(failed.value)
