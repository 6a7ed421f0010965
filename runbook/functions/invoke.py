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

Each invocation runs in a new process, a cold start. On AWS a cold start's init counts
toward Cognito's 5 seconds too; here it is reported, not held to them, since the start
of a Python process on a shared machine measures the machine, not the function (the
sandbox's `simulated` list says so).

What the handler prints goes to the function's log group, between the START, END and
REPORT lines Lambda writes, in a stream named as Lambda names them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
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

_BOOTSTRAP = r"""
import importlib, json, os, sys, time, traceback
root = os.environ["LAMBDA_TASK_ROOT"]
status = int(os.environ["_RUNBOOK_STATUS_FD"])
times = {}
deadline = None

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
    invoked_function_arn = os.environ["_RUNBOOK_FUNCTION_ARN"]
    memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    aws_request_id = os.environ["_RUNBOOK_REQUEST_ID"]
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.time()) * 1000))

with open(os.environ["_RUNBOOK_EVENT"]) as f:
    event = json.load(f)
module_name, function_name = os.environ["_HANDLER"].rsplit(".", 1)
try:
    try:
        module = importlib.import_module(module_name)
        shared = sys.modules.get("runbook")
        if shared is not None and not os.path.realpath(shared.__file__).startswith(os.path.realpath(root)):
            raise ImportError("runbook was imported from %s, not from the package" % shared.__file__)
        handler = getattr(module, function_name)
    finally:
        # The init is over: the invoker now times the invocation against its limit.
        times["invoke_started"] = time.time()
        deadline = times["invoke_started"] + float(os.environ["_RUNBOOK_LIMIT"])
        os.write(status, b"i")
    outcome = {"result": handler(event, Context())}
except Exception as exc:
    outcome = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    print("[ERROR] %s: %s" % (type(exc).__name__, str(exc)), flush=True)
    traceback.print_exc(file=sys.stdout)
times["invoke_ended"] = time.time()
outcome["times"] = times
sys.stdout.flush()
with open(os.environ["_RUNBOOK_RESULT"], "w") as f:
    json.dump(outcome, f, default=str)
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
        with tempfile.TemporaryDirectory(prefix="runbook-invoke-") as tmp:
            return self._run(configuration, artifact, event, limit, Path(tmp))

    def _run(self, configuration: dict, artifact, event: dict, limit_s: float,
             tmp: Path) -> Invocation:
        name = configuration["FunctionName"]
        request_id = str(uuid.uuid4())
        root = tmp / "task"
        with zipfile.ZipFile(_bytes_io(artifact.data)) as archive:
            archive.extractall(root)
        (tmp / "event.json").write_text(json.dumps(event))
        stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        env = self._environment(configuration, root, stream)
        result_file = tmp / "result.json"
        env.update(_RUNBOOK_EVENT=str(tmp / "event.json"), _RUNBOOK_RESULT=str(result_file),
                   _RUNBOOK_REQUEST_ID=request_id, _RUNBOOK_LIMIT=repr(limit_s))
        invocation = Invocation(name, request_id, log_stream=stream)
        phase = _run_phased(env, root, tmp / "output.log", limit_s, self.init_limit_s)
        invocation.log_lines = phase.output.decode("utf-8", "replace").splitlines()
        outcome = json.loads(result_file.read_text()) if result_file.exists() else {}
        times = outcome.get("times") or {}
        init_ended = times.get("invoke_started") or phase.init_ended  # the child's clock first
        if init_ended is not None:
            invocation.init_ms = max(0, int((init_ended - phase.spawned) * 1000))
        if phase.timed_out:
            invocation.timed_out = True
            invocation.duration_ms = int(phase.limit_s * 1000)
            what = "Task" if phase.invoking else "Init"
            invocation.error_type = "TimeoutError"
            invocation.error_message = f"{what} timed out after {phase.limit_s:.2f} seconds"
            invocation.log_lines.append(f"{_stamp()} {request_id} {invocation.error_message}")
        elif outcome:
            invocation.duration_ms = int((times["invoke_ended"] - times["invoke_started"]) * 1000)
            invocation.result = outcome.get("result")
            invocation.error_type = outcome.get("errorType")
            invocation.error_message = outcome.get("errorMessage")
        else:
            invocation.error_type = "Runtime.ExitError"
            invocation.error_message = f"the handler's process exited with {phase.returncode}"
        self._put_logs(configuration, invocation)
        return invocation

    def _environment(self, configuration: dict, root: Path, stream: str) -> dict:
        variables = dict((configuration.get("Environment") or {}).get("Variables") or {})
        name = configuration["FunctionName"]
        region = self.aws.region
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8", "TZ": ":UTC", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(root), "LAMBDA_TASK_ROOT": str(root),
            "_HANDLER": configuration.get("Handler") or "handler.handler",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{configuration.get('Runtime', 'python3.11')}",
            "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration.get("MemorySize") or 128),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
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
        logs.create_log_stream(logGroupName=group, logStreamName=invocation.log_stream)
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


@dataclass
class _Phases:
    spawned: float            # time.time() when the process was started
    output: bytes
    returncode: int | None
    invoking: bool            # the init was over (the handler was called, or its import failed)
    init_ended: float | None  # time.time() when the invoker learnt that, if it did
    timed_out: bool
    limit_s: float            # the limit of the phase it was in when it ended


def _run_phased(env: dict, cwd: Path, output_file: Path, limit_s: float,
                init_limit_s: float) -> _Phases:
    """Run _BOOTSTRAP, allowing the init init_limit_s and, from the moment it writes to
    its status pipe that the init is over, the invocation limit_s; a process over its
    phase's limit is killed. Its output goes to output_file, so a handler that prints
    much cannot stall on a full pipe."""
    read_end, write_end = os.pipe()
    try:
        env = {**env, "_RUNBOOK_STATUS_FD": str(write_end)}
        with open(output_file, "wb") as out:
            spawned = time.time()
            proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP], cwd=cwd, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, pass_fds=(write_end,))
        os.close(write_end)
        write_end = None
        with proc:
            invoking = bool(select.select([read_end], [], [], init_limit_s)[0]) \
                and os.read(read_end, 1) == b"i"
            init_ended = time.time() if invoking else None
            limit = limit_s if invoking else init_limit_s
            try:
                # Not invoking and not timed out: the process ended during its init.
                proc.wait(timeout=limit_s if invoking else 1.0)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                timed_out = True
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
    return _Phases(spawned=spawned, output=output_file.read_bytes(), returncode=proc.returncode,
                   invoking=invoking, init_ended=init_ended, timed_out=timed_out, limit_s=limit)


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
