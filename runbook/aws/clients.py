"""The one place that makes AWS clients.

Every boto3 client runbook uses comes from `ClientFactory.client`, so this is the seam
where the sandbox (endpoint and fake credentials), call counting, the journal and fault
injection hook in. Calls are classified as read or write by operation name and counted
per scope (normally the running step) through botocore's `before-call` event; completed
writes go to the journal through `after-call`.

Reads made inside `reading()` (a step's read, the preflight's) go through the run's read
cache (runbook.aws.readcache): one answered before is answered again without a call,
until a write that may change it. A read answered from it is no call: it is not
counted, journalled or intercepted.

Fault injection (the crash-consistency sweep in runbook/sandbox/sweep.py) hooks in twice:
`interceptors` see a call before it is sent and may raise to fail it, as a throttled or
refused request fails; `after_interceptors` see it once its response arrived and may
raise to make runbook see a failure of a call that took effect, as a response lost on
its way back or a process killed right after the call would.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import contextmanager
from functools import partial
from typing import Callable

from runbook.errors import BadInput, ImpurePlan
from runbook.aws import retry
from runbook.aws.journal import Journal
from runbook.aws.readcache import ReadCache

# Operations that only read, by name prefix (after dropping Cognito's "Admin").
_READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Search", "Filter", "Scan",
                  "Query", "BatchGet", "Select", "Check", "Validate", "Preview", "Estimate")

# Where _before_call leaves its verdict for _after_call, in botocore's request context,
# and, for a read, the read cache's key and generation (to keep the answer) or that the
# answer came from the cache.
_WRITE = "runbook_write"
_KEEP = "runbook_keep"
_CACHED = "runbook_cached"

# An interceptor sees every call before it is sent and may raise to fail it.
Interceptor = Callable[[str, str, bool], None]
# An after-interceptor sees every call that got a response, with the parsed response,
# after the journal has it; it may raise to fail a call that took effect.
AfterInterceptor = Callable[[str, str, bool, dict], None]


# Writes that are carried out again when the same request arrives twice, each time
# adding a resource: CreateVpc, CreateRouteTable, CreateInternetGateway (runbook
# passes no ClientToken; CreateInternetGateway takes none),
# CreateUserPool, CreateUserPoolClient and PublishLayerVersion on AWS as in moto;
# CreateVpcEndpoint's ClientToken and AddPermission's statement id stop a second one on
# AWS, not in moto (the sandbox); so does CreateEventSourceMapping's one mapping per
# function and queue (ResourceConflictException on AWS, a second mapping in moto 5.2.5).
# KMS's CreateKey takes no token either: a second key, which hash-table's search for a
# key its create left under no alias would find beside the first.
# botocore retries a request whose answer was lost (the
# connection closed or timed out after sending, or a 5xx), so one lost answer left, for
# example, two VPCs, and every later run stopped at "several VPCs carry this
# environment's tags". These are not retried when the request may have been carried
# out: the step fails, and the next run finds what it made by its tags or name.
NOT_RETRIED_WHEN_UNCERTAIN = {
    "ec2": frozenset({"CreateVpc", "CreateRouteTable", "CreateVpcEndpoint",
                      "CreateInternetGateway"}),
    "cognito-idp": frozenset({"CreateUserPool", "CreateUserPoolClient"}),
    "lambda": frozenset({"PublishLayerVersion", "AddPermission", "CreateEventSourceMapping"}),
    # AWS refuses a second registration (DBProxyTargetAlreadyRegisteredFault), moto 5.2.5
    # registers the cluster twice (runbook.resources.rds_proxy).
    "rds": frozenset({"RegisterDBProxyTargets"}),
    "kms": frozenset({"CreateKey"}),
}

# Refusals: the request was not carried out, so retrying it is safe.
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "ThrottledException",
                        "RequestThrottledException", "TooManyRequestsException",
                        "RequestLimitExceeded", "RequestThrottled", "SlowDown",
                        "EC2ThrottledException"})


def not_retried_when_uncertain(response=None, caught_exception=None, **_) -> bool | None:
    """botocore `needs-retry` handler of the creates in NOT_RETRIED_WHEN_UNCERTAIN.

    False (botocore then does not retry) when the request may have been carried out:
    the connection broke after it was sent (HTTPClientError: closed, read timeout) or
    AWS answered with a 5xx that is not a throttling. None otherwise, which leaves the
    decision to botocore's own handler: a throttling, or a connection that was never
    made (botocore's ConnectionError), is retried as usual.
    """
    from botocore.exceptions import HTTPClientError

    if caught_exception is not None:
        return False if isinstance(caught_exception, HTTPClientError) else None
    if response is not None:
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code")
        if http.status_code >= 500 and code not in _THROTTLED:
            return False
    return None


def is_write(operation: str) -> bool:
    name = operation.removeprefix("Admin")
    return not name.startswith(_READ_PREFIXES)


def is_write_call(service: str, operation: str, request: dict) -> bool:
    """`is_write`, except for the one Invoke known to write nothing.

    lambda:Invoke runs code, so by name it is a write. fix-tables with
    database.connect: lambda reads the database through db_migrate, whose read action
    runs in a READ ONLY transaction (runbook.lambda_runtime.migrate_event): counted as a write,
    every re-run of a converged fix-tables would show a write, and the verify pass would
    fail. So an Invoke whose payload asks for that action counts as a read; every other
    Invoke (db_migrate's apply action included) stays a write. `request` is botocore's
    request dict: for Invoke, its body is the payload.
    """
    if service == "lambda" and operation == "Invoke":
        import json

        from runbook.lambda_runtime import migrate_event

        try:
            payload = json.loads(request.get("body") or b"null")
        except (TypeError, ValueError):  # a stream, or not JSON: not the read action
            return True
        return not migrate_event.is_read_only(payload)
    return is_write(operation)


# Sessions given their credentials (the sandbox's), one per region and credentials for
# the whole process: each factory is new, with clients, counts and hooks of its own, but
# botocore parses a service's model once per session, and a dry run or a sweep makes a
# factory per run and per local invocation.
# A session resolving its own credentials (a live run's) is the factory's own.
_SESSIONS: dict[tuple, object] = {}
# botocore's sessions make their components lazily, which two threads making clients of
# one session at once can race on: clients are made one at a time.
_MAKING = threading.Lock()


def _session(region: str, credentials: dict[str, str]):
    import boto3

    if not credentials:
        return boto3.Session(region_name=region)
    key = (region, *sorted(credentials.items()))
    with _MAKING:
        if key not in _SESSIONS:
            _SESSIONS[key] = boto3.Session(region_name=region, **credentials)
        return _SESSIONS[key]


class ClientFactory:
    """Makes, caches and instruments boto3 clients for one region and one account.

    `endpoint_url` and `credentials` point every client at an emulated account (the
    sandbox); without them boto3's own resolution applies (AWS_PROFILE,
    AWS_ENDPOINT_URL, instance roles...).
    """

    def __init__(self, region: str, *, endpoint_url: str | None = None,
                 credentials: dict[str, str] | None = None,
                 journal: Journal | None = None,
                 interceptors: list[Interceptor] | None = None,
                 after_interceptors: list[AfterInterceptor] | None = None):
        self.region = region
        self.endpoint_url = endpoint_url
        self.journal = journal if journal is not None else Journal()
        self.interceptors = list(interceptors or ())
        self.after_interceptors = list(after_interceptors or ())
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: {"read": 0, "write": 0})
        self._credentials = credentials or {}
        self._session = None
        self._clients: dict[str, object] = {}
        self._scope = threading.local()
        self.caller_arn: str | None = None  # set by caller_account()
        self._lock = threading.Lock()
        self.cache = ReadCache()

    # -- scopes --------------------------------------------------------------------

    @property
    def scope(self) -> str:
        return getattr(self._scope, "name", "runbook")

    @contextmanager
    def scoped(self, name: str):
        """Attribute the calls made inside the block, in this thread, to `name`."""
        previous = self.scope
        self._scope.name = name
        with self._lock:  # steps that overlap (runbook.engine.schedule) add scopes at once
            counts = self.counts[name]
        try:
            yield counts
        finally:
            self._scope.name = previous

    @contextmanager
    def refusing(self, what: str):
        """Refuse every call made inside the block (errors.ImpurePlan): the engine runs
        each step's plan so, since a plan is a pure function of what was read."""
        previous = getattr(self._scope, "refusing", None)
        self._scope.refusing = what
        try:
            yield
        finally:
            self._scope.refusing = previous

    def refused(self) -> str | None:
        """What `refusing` says is running now (a step's plan), or None."""
        return getattr(self._scope, "refusing", None)

    @contextmanager
    def reading(self):
        """Answer the reads made inside the block, in this thread, from the read cache
        when it has them, and keep their answers there (runbook.aws.readcache)."""
        self._scope.reading = getattr(self._scope, "reading", 0) + 1
        try:
            yield
        finally:
            self._scope.reading -= 1

    def _cached(self) -> bool:
        return getattr(self._scope, "reading", 0) > 0 and not retry.is_polling()

    def total(self, kind: str) -> int:
        with self._lock:
            return sum(count[kind] for count in self.counts.values())

    # -- clients -------------------------------------------------------------------

    def session(self):
        if self._session is None:
            self._session = _session(self.region, self._credentials)
        return self._session

    def sibling(self) -> "ClientFactory":
        """A factory with counts, journal, read cache and clients of its own (the run's
        lock: runbook.app), on this one's session: botocore's models and endpoint data
        are loaded, and the credentials resolved, once."""
        other = ClientFactory(self.region, endpoint_url=self.endpoint_url,
                              credentials=self._credentials)
        other._session = self.session()
        return other

    def client(self, service: str):
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self._make(service)
                self._clients[service] = client
            return client

    def _make(self, service: str):
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            connect_timeout=10,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 5},
            user_agent_extra="runbook",
        )
        kwargs = {"config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        session = self.session()
        with _MAKING:
            client = session.client(service, **kwargs)
        events = client.meta.events
        events.register("before-call.*.*", partial(self._before_call, service))
        events.register("after-call.*.*", partial(self._after_call, service))
        events.register("after-call-error.*.*", self._after_call_error)
        service_id = client.meta.service_model.service_id.hyphenize()
        for operation in NOT_RETRIED_WHEN_UNCERTAIN.get(service, ()):
            # More specific than botocore's `needs-retry.<service>`, so asked first.
            events.register_first(f"needs-retry.{service_id}.{operation}",
                                  not_retried_when_uncertain)
        return client

    def _before_call(self, service: str, model, params, context, **_):
        refusing = getattr(self._scope, "refusing", None)
        if refusing is not None:
            raise ImpurePlan(refusing, service, model.name)
        write = is_write_call(service, model.name, params)
        context[_WRITE] = write  # botocore hands the same dict to after-call
        # Kept only what reads by its name: an Invoke of db_migrate's read action counts
        # as a read, but asks the database, which changes with no write through here.
        if not is_write(model.name) and self._cached() and not model.has_streaming_output:
            key = ReadCache.key(service, model.name, params)
            answer = self.cache.answer(key)
            if answer is not None:
                context[_CACHED] = True
                return answer  # botocore then sends nothing
            context[_KEEP] = (key, self.cache.generation())
        with self._lock:
            self.counts[self.scope]["write" if write else "read"] += 1
        if not write:
            self._intercept(service, model.name, write)
            return None
        # Before anything is sent: a write whose answer is lost may still take effect.
        self.cache.write_started(service)
        try:
            self._intercept(service, model.name, write)
        except BaseException:
            self.cache.write_ended()  # refused before it was sent
            raise
        return None

    def _intercept(self, service: str, operation: str, write: bool) -> None:
        for intercept in self.interceptors:
            intercept(service, operation, write)

    def _after_call(self, service: str, model, http_response, parsed, context, **_):
        if context.get(_CACHED):
            return
        write = context.get(_WRITE, is_write(model.name))
        if write:
            self.cache.write_ended()
        elif _KEEP in context:
            self.cache.keep(*context[_KEEP], http_response, parsed)
        if write and http_response is not None and http_response.status_code < 300:
            self.journal.record(self.scope, service, model.name, parsed or {})
        for intercept in self.after_interceptors:
            intercept(service, model.name, write, parsed or {})

    def _after_call_error(self, context, **_):
        """No answer came (the connection failed after botocore's retries)."""
        if context.get(_WRITE):
            self.cache.write_ended()

    # -- identity ------------------------------------------------------------------

    def caller_account(self) -> str:
        """The account the credentials belong to; a clear exit-2 error without any."""
        from botocore import exceptions as bx

        try:
            identity = self.client("sts").get_caller_identity()
            self.caller_arn = identity.get("Arn", "unknown")
            return identity["Account"]
        except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.SSOError,
                bx.TokenRetrievalError, bx.CredentialRetrievalError) as exc:
            raise BadInput(
                f"no usable AWS credentials ({exc}). Log in again (for example "
                "`aws sso login`), set AWS_PROFILE or the AWS_* variables, or rehearse "
                "with --dry-run."
            ) from None
        except bx.ProfileNotFound as exc:
            raise BadInput(f"{exc}. Check AWS_PROFILE.") from None
        except bx.EndpointConnectionError as exc:
            raise BadInput(
                f"cannot reach AWS at {exc.kwargs.get('endpoint_url', 'its endpoint')}. "
                "Check the network and AWS_ENDPOINT_URL."
            ) from None
        except bx.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch",
                        "UnrecognizedClientException", "AccessDenied",
                        "ExpiredTokenException", "InvalidToken"):
                raise BadInput(
                    f"AWS rejected the credentials ({code}). Refresh them (for example "
                    "`aws sso login`) and retry."
                ) from None
            raise
