"""Lambda event source mappings from an MSK cluster, in the sandbox's moto.

moto 5.2.5 refuses CreateEventSourceMapping on an MSK cluster's ARN ("Invalid
EventSourceArn": it looks for the ARN among SQS queues, DynamoDB and Kinesis streams
only, and its mapping model accepts no other service). `install` teaches the in-process
moto the MSK case, as AWS answers it, so that step deploy-legacy-loader makes, finds,
compares and updates its mapping through the ordinary Lambda API:

- the cluster must exist (moto's kafka backend), else ResourceNotFoundException;
- Topics must name exactly one topic and StartingPosition must be TRIM_HORIZON, LATEST
  or AT_TIMESTAMP, else InvalidParameterValueException (AWS's rules for MSK);
- BatchSize defaults to 100 and may be 1-10,000;
- a second mapping for the same function, cluster and topic is a
  ResourceConflictException;
- Topics, StartingPosition, AmazonManagedKafkaEventSourceConfig and
  ProvisionedPollerConfig are stored and read back (GetEventSourceMapping,
  ListEventSourceMappings); UpdateEventSourceMapping changes BatchSize, Enabled and
  ProvisionedPollerConfig, as moto's own update does.

Nothing runs such a mapping in moto: the sandbox's Kafka poller
(runbook.sandbox.kafka_poller) does Lambda's part.
"""

from __future__ import annotations

SIMULATED = ("MSK event source mappings in moto: moto refuses them ('Invalid "
             "EventSourceArn'); the sandbox stores and reads them back with their topic, "
             "starting position, consumer group and provisioned pollers as AWS does "
             "(runbook.sandbox.kafka_mapping)")

STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
BATCH_DEFAULT, BATCH_MAX = 100, 10000


def is_msk(arn: str) -> bool:
    return (arn or "").split(":")[2:3] == ["kafka"]


def install() -> bool:
    """Patch the in-process moto's Lambda backend; False if already done."""
    from moto.awslambda import models
    from moto.core.exceptions import JsonRESTError
    from moto.kafka.models import kafka_backends

    backend = models.LambdaBackend
    if getattr(backend.create_event_source_mapping, "runbook_msk", False):
        return False
    original = backend.create_event_source_mapping

    class MskMapping(models.EventSourceMapping):
        """moto's mapping with an MSK cluster as its source."""

        @property
        def event_source_arn(self) -> str:
            return self._event_source_arn

        @event_source_arn.setter
        def event_source_arn(self, arn: str) -> None:
            self._event_source_arn = arn

        @property
        def batch_size(self) -> int:
            return self._batch_size

        @batch_size.setter
        def batch_size(self, value) -> None:
            if value is None:
                self._batch_size = BATCH_DEFAULT
            elif not 1 <= int(value) <= BATCH_MAX:
                raise JsonRESTError("InvalidParameterValueException",
                                    f"BatchSize {value} is outside 1-{BATCH_MAX}")
            else:
                self._batch_size = int(value)

    def create(self, spec: dict):
        arn = spec.get("EventSourceArn") or ""
        if not is_msk(arn):
            return original(self, spec)
        if arn not in kafka_backends[self.account_id][self.region_name].clusters:
            raise JsonRESTError("ResourceNotFoundException",
                                f"Cluster {arn} does not exist")
        topics = spec.get("Topics") or []
        if len(topics) != 1:
            raise JsonRESTError("InvalidParameterValueException",
                                "Topics must contain exactly one topic for an Amazon MSK "
                                "event source")
        if spec.get("StartingPosition") not in STARTING_POSITIONS:
            raise JsonRESTError("InvalidParameterValueException",
                                "StartingPosition must be one of "
                                + ", ".join(STARTING_POSITIONS))
        func = self._lambdas.get_function_by_name_or_arn_with_qualifier(spec["FunctionName"])
        for existing in self._event_source_mappings.values():
            if (existing.event_source_arn == arn and existing.function_arn == func.function_arn
                    and existing.topics == topics):
                raise JsonRESTError(
                    "ResourceConflictException",
                    f"An event source mapping with event source ({arn}), function "
                    f"({func.function_arn}), topics ({', '.join(topics)}) already exists. "
                    f"Please update or delete the existing mapping with UUID "
                    f"{existing.uuid}")
        spec.update(RegionName=self.region_name, AccountId=self.account_id,
                    FunctionArn=func.function_arn)
        mapping = MskMapping(spec)
        self._event_source_mappings[mapping.uuid] = mapping
        return mapping

    create.runbook_msk = True
    backend.create_event_source_mapping = create
    return True
