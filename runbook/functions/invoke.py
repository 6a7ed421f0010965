"""Running a deployed function's handler locally, as Lambda would, with no Docker.

moto keeps functions but runs no code, so the sandbox runs it: `LocalInvoker.invoke`
reads the function's configuration back from (moto) Lambda, builds the package from
`lambdas/<key>` and checks that its CodeSha256 is the deployed one (so what runs is
what was deployed), unpacks it, and runs the handler in a subprocess with

  - the function's configured environment variables, plus the variables the Lambda
    runtime sets (AWS_REGION, AWS_LAMBDA_FUNCTION_NAME, _HANDLER, ...);
  - AWS calls going to the sandbox (AWS_ENDPOINT_URL and its fake credentials);
  - the database pointed at the sandbox's PostgreSQL: a function that logs in with an
    IAM token (DB_AUTH=iam) does so through the sandbox's TLS front-end
    (runbook.sandbox.tls), verify-full against the sandbox CA (DB_SSLROOTCERT) for the
    cluster or RDS Proxy endpoint it is configured with, reached at
    DB_HOSTADDR:DB_HOSTADDR_PORT; any other gets DB_DSN;
  - Lambda's two phases kept apart, as its REPORT line keeps them: the init (the
    runtime's start and the import of the handler's module, Lambda's "Init Duration")
    is limited to Lambda's 10 seconds; the invocation (the handler's call, "Duration")
    to the function's timeout, and for a Cognito trigger to Cognito's 5 seconds.

Each function gets execution environments as Lambda gives them: a process that has run
its init once (a cold start) and then serves one invocation at a time, kept warm while
idle. An invocation finds an idle one of the function's present code and configuration,
or starts a new one: the first invocation, the first after a deploy or a change of
configuration, one beside an invocation in flight, and the next after a timeout, a crash
or a failed init (Lambda replaces that environment). So a handler's module-level state
(its warm connection, its prepared statements) lives across invocations as it does on
AWS. A cold start's init counts toward Cognito's 5 seconds on AWS; here it is reported,
not held to them, since the start of a Python process on a shared machine measures the
machine, not the function (the sandbox's `simulated` list says so). Unlike Lambda, an
idle environment is not frozen, and at most IDLE_ENVIRONMENTS are kept.

What the handler prints goes to the function's log group, between the START, END and
REPORT lines Lambda writes, in a stream named as Lambda names them.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runbook.functions import package
from runbook.errors import BadInput
from runbook.functions.registry import FUNCTION_TAG

# Cognito waits this long for a trigger, whatever the function's own timeout.
COGNITO_TRIGGER_LIMIT_S = 5.0
# Lambda's limit on the init phase of an on-demand function.
INIT_LIMIT_S = 10.0

# Idle execution environments kept at most, in all (the oldest idle one goes first).
IDLE_ENVIRONMENTS = 8

# An execution environment: the init (the handler's import), then one invocation per
# line of its command pipe, each answered in a result file and a byte on its status
# pipe ("i": the init is over; "d": an invocation is done). What the handler prints
# goes to the environment's output file, which the invoker reads per invocation.
_BOOTSTRAP = r"""
import importlib, json, os, sys, time, traceback
root = os.environ["LAMBDA_TASK_ROOT"]
status = int(os.environ.pop("_RUNBOOK_STATUS_FD"))
commands = os.fdopen(int(os.environ.pop("_RUNBOOK_COMMAND_FD")), "r")
deadline = None

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
    invoked_function_arn = os.environ.pop("_RUNBOOK_FUNCTION_ARN")
    memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    def __init__(self, request_id):
        self.aws_request_id = request_id
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.time()) * 1000))

def failure(exc):
    print("[ERROR] %s: %s" % (type(exc).__name__, str(exc)), flush=True)
    traceback.print_exception(exc, file=sys.stdout)
    return {"errorType": type(exc).__name__, "errorMessage": str(exc)}

module_name, function_name = os.environ["_HANDLER"].rsplit(".", 1)
init_error = None
try:
    module = importlib.import_module(module_name)
    shared = sys.modules.get("runbook")
    if shared is not None and not os.path.realpath(shared.__file__).startswith(os.path.realpath(root)):
        raise ImportError("runbook was imported from %s, not from the package" % shared.__file__)
    handler = getattr(module, function_name)
except Exception as exc:
    init_error = exc
init_ended = time.time()
os.write(status, b"i")
for line in commands:
    request = json.loads(line)
    started = time.time()
    deadline = started + request["limit"]
    if init_error is not None:
        outcome = failure(init_error)  # reported by the invocation, as Lambda reports it
        outcome["init_failed"] = True
    else:
        try:
            with open(request["event"]) as f:
                event = json.load(f)
            outcome = {"result": handler(event, Context(request["request_id"]))}
        except Exception as exc:
            outcome = failure(exc)
    outcome["times"] = {"init_ended": init_ended, "invoke_started": started,
                        "invoke_ended": time.time()}
    sys.stdout.flush()
    sys.stderr.flush()
    with open(request["result"], "w") as f:
        json.dump(outcome, f, default=str)
    os.write(status, b"d")
    if init_error is not None:
        break  # a failed init is not reused: the next invocation starts again
"""


@dataclass
class Invocation:
    function: str
    request_id: str
    result: object = None
    error_type: str | None = None
    error_message: str | None = None
    timed_out: bool = False
    duration_ms: int = 0           # the invocation: the handler's call
    init_ms: int | None = None     # the init before it (a cold start); None: not seen
    log_lines: list[str] = field(default_factory=list)
    log_stream: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def as_dict(self) -> dict:
        data = {"function": self.function, "request_id": self.request_id, "ok": self.ok,
                "duration_ms": self.duration_ms}
        if self.init_ms is not None:
            data["init_ms"] = self.init_ms
        if self.ok:
            data["result"] = self.result
        else:
            data["error"] = {"type": self.error_type, "message": self.error_message}
        return data


class LocalInvoker:
    """Runs handlers of functions deployed in the sandbox (see the module docstring).

    `database_dsn` is the sandbox's PostgreSQL database and `database_tls` its TLS
    front-end (None: IAM logins get DB_DSN too); `aws` the sandbox's client factory (its
    endpoint and credentials are handed to the handler).
    """

    def __init__(self, aws, *, endpoint_url: str | None, credentials: dict,
                 database_dsn: str | None, lambdas_dir: Path | None = None,
                 database_tls=None, init_limit_s: float = INIT_LIMIT_S):
        self.aws = aws
        self.init_limit_s = init_limit_s
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.database_dsn = database_dsn
        self.database_tls = database_tls
        self.lambdas_dir = lambdas_dir

    def invoke(self, function_name: str, event: dict, *, trigger: bool = False) -> Invocation:
        lam = self.aws.client("lambda")
        try:
            found = lam.get_function(FunctionName=function_name)
        except lam.exceptions.ResourceNotFoundException:
            raise BadInput(f"no function {function_name} is deployed here; run the step "
                           "that deploys it first") from None
        configuration, tags = found["Configuration"], found.get("Tags") or {}
        key = tags.get(FUNCTION_TAG)
        if not key:
            raise BadInput(f"function {function_name} was not deployed by runbook (no "
                           f"{FUNCTION_TAG} tag), so there is no local code to run")
        kwargs = {} if self.lambdas_dir is None else {"lambdas_dir": self.lambdas_dir}
        artifact = package.build_function(key, **kwargs)
        if artifact.sha256 != configuration.get("CodeSha256"):
            raise BadInput(f"the code of {function_name} differs from lambdas/{key} "
                           f"(deployed {configuration.get('CodeSha256')}, local "
                           f"{artifact.sha256}); deploy it again before invoking it")
        limit = float(configuration.get("Timeout") or 3)
        if trigger:
            limit = min(limit, COGNITO_TRIGGER_LIMIT_S)
        return self._run(configuration, artifact, event, limit)

    def _run(self, configuration: dict, artifact, event: dict, limit_s: float) -> Invocation:
        env = self._environment(configuration)
        key = _Key.of(configuration, env)
        environment = ENVIRONMENTS.take(key)
        cold = environment is None
        if cold:
            environment = _Environment(key, env, artifact)
        invocation = Invocation(configuration["FunctionName"], str(uuid.uuid4()),
                                log_stream=environment.stream)
        try:
            ended = environment.invoke(invocation, event, limit_s,
                                       self.init_limit_s if cold else None)
        except BaseException:
            environment.close()  # it may still be running the handler
            raise
        if environment.alive:
            ENVIRONMENTS.give(environment)
        else:
            environment.close()
        if ended is not None:
            invocation.init_ms = max(0, int((ended - environment.spawned) * 1000))
        self._put_logs(configuration, invocation)
        return invocation

    def _environment(self, configuration: dict) -> dict:
        """The function's environment, but for what each execution environment sets
        for itself (_Environment.spawn)."""
        variables = dict((configuration.get("Environment") or {}).get("Variables") or {})
        name = configuration["FunctionName"]
        region = self.aws.region
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8", "TZ": ":UTC", "PYTHONUNBUFFERED": "1",
            "_HANDLER": configuration.get("Handler") or "handler.handler",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{configuration.get('Runtime', 'python3.11')}",
            "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration.get("MemorySize") or 128),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "_RUNBOOK_FUNCTION_ARN": configuration["FunctionArn"],
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
        }
        if self.endpoint_url:  # None with in-process moto (tests): no server to point at
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        env.update(variables)
        iam = variables.get("DB_AUTH", "").lower() == "iam"
        if iam and self.database_tls is not None:
            # The function's endpoint does not resolve here: the socket goes to the
            # front-end, while libpq checks the certificate for DB_HOST and the token
            # stays signed for DB_HOST:DB_PORT. The layer's /opt path does not exist
            # locally; the sandbox CA is what the front-end's certificates chain to.
            self._serve_clusters()
            env.update(DB_HOSTADDR=self.database_tls.host,
                       DB_HOSTADDR_PORT=str(self.database_tls.port),
                       DB_SSLROOTCERT=str(self.database_tls.ca_file))
        elif self.database_dsn:
            # The sandbox's PostgreSQL stands in for the cluster. With IAM auth the
            # function logs in as its DB_USER; the sandbox server trusts local users.
            from psycopg.conninfo import make_conninfo

            user = variables.get("DB_USER") if variables.get("DB_AUTH", "").lower() == "iam" else None
            env["DB_DSN"] = make_conninfo(self.database_dsn, **({"user": user} if user else {}))
        return env

    def _serve_clusters(self) -> None:
        """Have the front-end answer for every cluster endpoint of the sandbox account,
        with a certificate for its names, and its database mapped to the sandbox's; and
        for every RDS Proxy endpoint, as a proxy before its registered cluster
        (runbook.sandbox.rds_proxy.serve_proxies)."""
        from runbook.sandbox import rds_proxy as sandbox_rds_proxy

        rds = self.aws.client("rds")
        pages = rds.get_paginator("describe_db_clusters").paginate()
        clusters = [c for page in pages for c in page["DBClusters"]]
        for cluster in clusters:
            if cluster.get("Endpoint"):
                self.database_tls.serve(
                    [cluster["Endpoint"], cluster.get("ReaderEndpoint")],
                    port=int(cluster.get("Port") or 5432),
                    database=cluster.get("DatabaseName") or "postgres", region=self.aws.region)
        sandbox_rds_proxy.serve_proxies(self.database_tls, rds, self.aws.region, clusters)

    def _put_logs(self, configuration: dict, invocation: Invocation) -> None:
        logs = self.aws.client("logs")
        group = f"/aws/lambda/{invocation.function}"
        try:
            logs.create_log_group(logGroupName=group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        try:  # one stream per execution environment, as Lambda names them
            logs.create_log_stream(logGroupName=group, logStreamName=invocation.log_stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        request_id = invocation.request_id
        memory = configuration.get("MemorySize") or 128
        billed = max(1, invocation.duration_ms)
        init = "" if invocation.init_ms is None else f"\tInit Duration: {invocation.init_ms:.2f} ms"
        lines = [f"START RequestId: {request_id} Version: $LATEST", *invocation.log_lines,
                 f"END RequestId: {request_id}",
                 f"REPORT RequestId: {request_id}\tDuration: {invocation.duration_ms:.2f} ms\t"
                 f"Billed Duration: {billed} ms\tMemory Size: {memory} MB{init}"]
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=group, logStreamName=invocation.log_stream,
                            logEvents=[{"timestamp": now, "message": line} for line in lines])


@dataclass(frozen=True)
class _Key:
    """What an execution environment serves: one function's code and configuration as
    they are now. An update or a re-creation changes RevisionId and LastModified, so it
    is served by new environments, as on Lambda."""

    function_arn: str
    code_sha256: str
    revision: str
    environment: tuple

    @classmethod
    def of(cls, configuration: dict, env: dict) -> "_Key":
        return cls(configuration["FunctionArn"], configuration.get("CodeSha256") or "",
                   f"{configuration.get('RevisionId')} {configuration.get('LastModified')}",
                   tuple(sorted(env.items())))


class _Environment:
    """One execution environment: the package unpacked in a directory of its own, and
    the process running _BOOTSTRAP there, which holds the handler's module between
    invocations."""

    def __init__(self, key: _Key, env: dict, artifact):
        self.key = key
        self.endpoint_url = env.get("AWS_ENDPOINT_URL")
        self._dir = tempfile.TemporaryDirectory(prefix="runbook-invoke-")
        self.dir = Path(self._dir.name)
        self.root = self.dir / "task"
        with zipfile.ZipFile(_bytes_io(artifact.data)) as archive:
            archive.extractall(self.root)
        self.stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.env = {**env, "PYTHONPATH": str(self.root), "LAMBDA_TASK_ROOT": str(self.root),
                    "AWS_LAMBDA_LOG_STREAM_NAME": self.stream}
        self.output = self.dir / "output.log"
        self.spawned = 0.0            # time.time() when the process was started
        self.reusable = True          # False once it failed its init
        self._proc: subprocess.Popen | None = None
        self._status: int | None = None
        self._commands = None

    @property
    def alive(self) -> bool:
        return self.reusable and self._proc is not None and self._proc.poll() is None

    def invoke(self, invocation: Invocation, event: dict, limit_s: float,
               init_limit_s: float | None) -> float | None:
        """Run one invocation, filling in `invocation`; with init_limit_s, start the
        process first (a cold start) and hold its init to that limit. Returns when the
        init ended (time.time()), if this call saw one end."""
        init_ended = None
        if init_limit_s is not None:
            self._spawn()
            signal = self._signal(init_limit_s)
            if signal != b"i":  # killed at the init's limit, or ended during it
                self._end(invocation, 0, None if signal is None else b"")
                if invocation.timed_out:
                    self._timed_out(invocation, "Init", init_limit_s)
                return None
            init_ended = time.time()
        request = invocation.request_id
        event_file, result_file = self.dir / f"{request}.event", self.dir / f"{request}.result"
        event_file.write_text(json.dumps(event))
        offset = self.output.stat().st_size
        try:
            self._commands.write(json.dumps({"request_id": request, "limit": limit_s,
                                             "event": str(event_file),
                                             "result": str(result_file)}) + "\n")
            self._commands.flush()
            signal = self._signal(limit_s)
        except OSError:  # BrokenPipeError: it ended while idle
            signal = b""
        self._end(invocation, offset, signal)
        if invocation.timed_out:
            self._timed_out(invocation, "Task", limit_s)
        elif signal == b"d":
            outcome = json.loads(result_file.read_text())
            times = outcome["times"]
            init_ended = times["init_ended"] if init_ended is not None else None
            invocation.duration_ms = int((times["invoke_ended"] - times["invoke_started"]) * 1000)
            invocation.result = outcome.get("result")
            invocation.error_type = outcome.get("errorType")
            invocation.error_message = outcome.get("errorMessage")
            self.reusable = not outcome.get("init_failed")
        event_file.unlink(missing_ok=True)
        result_file.unlink(missing_ok=True)
        return init_ended

    def _end(self, invocation: Invocation, offset: int, signal: bytes | None) -> None:
        """After the status pipe answered `signal` (None: nothing within the limit, and
        the process is killed; b"": it ended): the output since `offset`, and the
        invocation's error if the process is gone."""
        if signal is None:
            invocation.timed_out = True
            self._stop()
        elif signal == b"":
            try:
                returncode = self._proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                returncode = None
            self._stop()
            invocation.error_type = "Runtime.ExitError"
            invocation.error_message = f"the handler's process exited with {returncode}"
        with open(self.output, "rb") as out:
            out.seek(offset)
            invocation.log_lines = out.read().decode("utf-8", "replace").splitlines()

    @staticmethod
    def _timed_out(invocation: Invocation, what: str, limit_s: float) -> None:
        invocation.duration_ms = int(limit_s * 1000)
        invocation.error_type = "TimeoutError"
        invocation.error_message = f"{what} timed out after {limit_s:.2f} seconds"
        invocation.log_lines.append(f"{_stamp()} {invocation.request_id} "
                                    f"{invocation.error_message}")

    def _spawn(self) -> None:
        status_read, status_write = os.pipe()
        command_read, command_write = os.pipe()
        try:
            env = {**self.env, "_RUNBOOK_STATUS_FD": str(status_write),
                   "_RUNBOOK_COMMAND_FD": str(command_read)}
            with open(self.output, "ab") as out:  # its own file: a full pipe cannot stall it
                self.spawned = time.time()
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", _BOOTSTRAP], cwd=self.root, env=env, stdout=out,
                    stderr=subprocess.STDOUT, pass_fds=(status_write, command_read))
        except BaseException:
            for fd in (status_read, command_write):
                os.close(fd)
            raise
        finally:
            for fd in (status_write, command_read):
                os.close(fd)
        self._status = status_read
        self._commands = os.fdopen(command_write, "w")

    def _signal(self, limit_s: float) -> bytes | None:
        """The status pipe's next byte within limit_s: None if none came, b"" if the
        process ended."""
        if not select.select([self._status], [], [], limit_s)[0]:
            return None
        return os.read(self._status, 1)

    def close(self) -> None:
        """Kill the process, if it runs, and remove the directory."""
        self._stop()
        self._dir.cleanup()

    def _stop(self) -> None:
        self.reusable = False
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        if self._commands is not None:
            try:
                self._commands.close()
            except OSError:  # BrokenPipeError: the process is gone
                pass
        if self._status is not None:
            os.close(self._status)
        self._commands = self._status = None


class _Idle:
    """The idle execution environments of this process, at most `size`: an invocation
    takes one that serves its function as it is now, or gets none and starts one; one
    that serves an older version of the function is closed when a newer one is asked
    for, as Lambda retires them."""

    def __init__(self, size: int):
        self.size = size
        self._idle: list[_Environment] = []
        self._lock = threading.Lock()

    def take(self, key: _Key) -> _Environment | None:
        with self._lock:
            stale = [e for e in self._idle if not e.alive or (
                e.key.function_arn == key.function_arn and e.key != key)]
            self._idle = [e for e in self._idle if e not in stale]
            found = next((e for e in reversed(self._idle) if e.key == key), None)
            if found is not None:
                self._idle.remove(found)
        for environment in stale:
            environment.close()
        return found

    def give(self, environment: _Environment) -> None:
        with self._lock:
            self._idle.append(environment)
            over, self._idle = self._idle[:-self.size], self._idle[-self.size:]
        for environment in over:
            environment.close()

    def close(self, endpoint_url: str | None = None) -> None:
        """Close the idle environments of the sandbox at endpoint_url, or all."""
        with self._lock:
            gone = [e for e in self._idle if endpoint_url in (None, e.endpoint_url)]
            self._idle = [e for e in self._idle if e not in gone]
        for environment in gone:
            environment.close()


ENVIRONMENTS = _Idle(IDLE_ENVIRONMENTS)
atexit.register(ENVIRONMENTS.close)


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def invoke_deployed(aws, function_name: str, event: dict) -> Invocation:
    """Invoke a function on Lambda itself; its result and the tail of its log."""
    import base64

    lam = aws.client("lambda")
    started = time.monotonic()
    try:
        response = lam.invoke(FunctionName=function_name, Payload=json.dumps(event).encode(),
                              LogType="Tail")
    except lam.exceptions.ResourceNotFoundException:
        raise BadInput(f"no function {function_name} in this account and region; run the "
                       "step that deploys it first") from None
    payload = response["Payload"].read().decode("utf-8", "replace")
    invocation = Invocation(function_name, response.get("ResponseMetadata", {}).get(
        "HTTPHeaders", {}).get("x-amzn-requestid", ""))
    invocation.duration_ms = int((time.monotonic() - started) * 1000)
    tail = response.get("LogResult")
    if tail:
        invocation.log_lines = base64.b64decode(tail).decode("utf-8", "replace").splitlines()
    try:
        body = json.loads(payload) if payload else None
    except ValueError:
        body = payload
    if response.get("FunctionError"):
        body = body if isinstance(body, dict) else {}
        invocation.error_type = body.get("errorType") or response["FunctionError"]
        invocation.error_message = body.get("errorMessage") or "the function failed"
    else:
        invocation.result = body
    return invocation


def invoke_for_step(aws, function_name: str, event: dict, *, dry_run: bool,
                    database_dsn: str | None, database_tls=None) -> Invocation:
    """Invoke a function from a step: on Lambda itself (Invoke, RequestResponse), or in
    a dry run, where moto runs no code, with the local invoker against the sandbox.

    The local invoker stands in for the Lambda service: reading the function back and
    writing its log group are Lambda's work, not calls the step makes. So it gets a
    client factory of its own, and the step's call counts stay what a live run counts.
    """
    if not dry_run:
        return invoke_deployed(aws, function_name, event)
    return sandbox_invoker(aws, database_dsn, database_tls).invoke(function_name, event)


def for_steps(aws, *, dry_run: bool, database_dsn: str | None = None, database_tls=None):
    """The engine's invoker (StepContext.invoke): invoke_for_step with these settings."""
    def invoke(function_name: str, event: dict) -> Invocation:
        return invoke_for_step(aws, function_name, event, dry_run=dry_run,
                               database_dsn=database_dsn, database_tls=database_tls)

    return invoke


def sandbox_invoker(aws, database_dsn: str | None, database_tls=None) -> LocalInvoker:
    """The local invoker for the sandbox `aws` points at, with a client factory of its
    own (see invoke_for_step) and the sandbox's fake credentials."""
    from runbook.aws.clients import ClientFactory
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS

    service = ClientFactory(aws.region, endpoint_url=aws.endpoint_url,
                            credentials=SANDBOX_CREDENTIALS)
    return LocalInvoker(service, endpoint_url=aws.endpoint_url,
                        credentials=SANDBOX_CREDENTIALS, database_dsn=database_dsn,
                        database_tls=database_tls)
