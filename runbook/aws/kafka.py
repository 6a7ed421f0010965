"""How runbook's own Kafka clients reach an MSK cluster: TLS, and IAM through SASL
OAUTHBEARER.

MSK's IAM client authentication takes, as the OAUTHBEARER token, a SigV4 presigned
`kafka-cluster:Connect` URL (base64url): `aws-msk-iam-sasl-signer-python` makes it from
the credentials runbook already runs with, offline, valid 900 s. kafka-python asks the
token provider for a token on every new connection, so the provider keeps one and makes
another only near its expiry. What the token lets the caller do is then up to the
caller's IAM policy (kafka-cluster:Connect, DescribeTopic, WriteData, ...), which is the
operator's, not runbook's.

`KafkaAccess` is the one place that says how a client connects. A dry run swaps it for
the sandbox's (runbook.sandbox.kafka.SandboxKafkaAccess), which makes the same token,
checks it, and then connects in plain text to the broker standing in for the cluster;
every other line of a step's Kafka code is the same in both.

kafka-python is imported when a client is made, not with this module: validating an
environment file and `runbook --help` never load it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

IAM = "iam"
# Renew a token this long before it expires: a connection made with an expired token is
# refused, and a broker closes an IAM connection when its token expires.
RENEW_BEFORE_S = 120
# Bounds on how long a client waits for a cluster that does not answer (kafka-python's
# defaults wait 30-60 s per attempt, with no word of what it is waiting for).
CLIENT_TIMEOUTS = {"request_timeout_ms": 30_000, "bootstrap_timeout_ms": 20_000}


class TokenSource:
    """MSK IAM auth tokens for one region, made with a boto3 session's credentials,
    each reused until RENEW_BEFORE_S before its expiry."""

    def __init__(self, session, region: str, clock: Callable[[], float] = time.time):
        self.session, self.region, self.clock = session, region, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_s = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self.clock() > self._expires_s - RENEW_BEFORE_S:
                self._token, expiry_ms = self._make()
                self._expires_s = expiry_ms / 1000
            return self._token

    def _make(self) -> tuple[str, int]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        from botocore.credentials import CredentialProvider

        session = self.session

        class FromSession(CredentialProvider):
            # The signer takes a botocore CredentialProvider; runbook's clients take their
            # credentials from a boto3 session (the operator's chain, or the sandbox's).
            METHOD = "runbook-session"

            def load(self):
                return session.get_credentials()

        return MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            self.region, FromSession())


def oauth_provider(source: TokenSource):
    """`source` as kafka-python's sasl_oauth_token_provider."""
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class MskIam(AbstractTokenProvider):
        def token(self):
            return source.token()

    return MskIam()


class KafkaAccess:
    """Connects kafka-python clients to an MSK cluster's IAM listeners (9098 in the VPC,
    9198 public) over TLS, checked against the system's trust store: MSK brokers present
    certificates from Amazon's public CAs."""

    auth = IAM

    def __init__(self, session, region: str):
        self.tokens = TokenSource(session, region)

    def client_kwargs(self) -> dict[str, Any]:
        """Settings for KafkaAdminClient, KafkaProducer and KafkaConsumer."""
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": oauth_provider(self.tokens),
            **CLIENT_TIMEOUTS,
        }

    def admin(self, bootstrap: str):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=bootstrap.split(","),
                                client_id="runbook", **self.client_kwargs())

    def producer(self, bootstrap: str, **overrides):
        """An idempotent producer that waits for every in-sync replica (acks=all): a
        record it reports sent is on every replica, and a retried send is not written
        twice."""
        import logging

        from kafka import KafkaProducer

        # kafka-python's producer logs each record's key and value at DEBUG: here an
        # address and a password hash. Never below WARNING, whatever the root logger says.
        logging.getLogger("kafka").setLevel(logging.WARNING)
        settings = {"client_id": "runbook", "acks": "all", "enable_idempotence": True,
                    **self.client_kwargs(), **overrides}
        return KafkaProducer(bootstrap_servers=bootstrap.split(","), **settings)

    def consumer(self, bootstrap: str, **settings):
        from kafka import KafkaConsumer

        return KafkaConsumer(bootstrap_servers=bootstrap.split(","),
                             **{**self.client_kwargs(), **settings})


def kafka_access(ctx) -> KafkaAccess:
    """The access a step's Kafka clients use: the sandbox's in a dry run
    (StepContext.kafka), else IAM with the run's own credentials."""
    if getattr(ctx, "kafka", None) is not None:
        return ctx.kafka
    return KafkaAccess(ctx.aws.session(), ctx.aws.region)
