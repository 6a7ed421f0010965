"""The throwaway account a dry run works in: a moto server on 127.0.0.1 and a real,
embedded PostgreSQL (pgserver), or the server `RUNBOOK_PG_DSN` names, behind a TLS
front-end that takes RDS IAM token logins for it (runbook.sandbox.tls).

moto runs in a thread of this process and talks HTTP, so the runner, the Lambda
handlers and the integration test all reach one emulated account exactly as they would
reach AWS. Given a region and an invoker, it also runs Lambda's part of every SQS
event source mapping there (runbook.sandbox.sqs.Poller, as `sandbox.poller`), which moto
cannot.
The sandbox is torn down on every exit path: success, failure, Ctrl-C
(SIGINT) and SIGTERM, leaving no moto thread and no postgres process behind.

Starting it is most of a dry run's fixed cost, so its two slow parts overlap: the
database's side (the server, runbook.sandbox.postgres, and the sandbox's databases on
it) runs in a thread, mostly waiting for PostgreSQL's own processes, while this thread
imports and starts moto, which holds the GIL. Teardown overlaps the same way. An
interrupt during start-up stops whatever the database thread got to start.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

from runbook.sandbox import cognito_pool as sandbox_cognito_pool
from runbook.sandbox import lambda_eni as sandbox_lambda_eni
from runbook.sandbox import kafka as sandbox_kafka
from runbook.sandbox import kafka_mapping as sandbox_kafka_mapping
from runbook.sandbox import kafka_poller as sandbox_kafka_poller
from runbook.sandbox import legacy as sandbox_legacy
from runbook.sandbox import msk as sandbox_msk
from runbook.sandbox import pgdata_cache as sandbox_pgdata_cache
from runbook.sandbox import postgres as sandbox_postgres
from runbook.sandbox import rds as sandbox_rds
from runbook.sandbox import rds_proxy as sandbox_rds_proxy
from runbook.sandbox import sqs as sandbox_sqs

# The services a sandbox serves, by moto's backend names (warm_up_moto).
MOTO_SERVICES = ("cloudwatch", "cognito-idp", "dynamodb", "ec2", "events", "iam", "kafka",
                 "kms", "lambda", "logs", "rds", "secretsmanager", "sqs", "ssm", "sts")


def warm_up_moto() -> None:
    """Import moto's backends before the server takes requests. moto imports a service's
    backend on its first request, in that request's thread, and its IAM access check
    imports moto.s3 on every service's first call: two first requests at once (the run
    and the SQS poller, say) then race in the import system, and one of them gets
    "cannot import name" or a deadlock error, which the server answers with an HTML 500.
    Imported here once, in one thread, they are only looked up later (about a second,
    which the run's first requests would spend anyway)."""
    import importlib

    with _one_botocore_loader():
        from moto.backends import get_backend
        from moto.core.base_backend import AccountSpecificBackend

        importlib.import_module("moto.iam.access_control")  # and with it moto.s3
        for service in MOTO_SERVICES:
            get_backend(service)
        AccountSpecificBackend.get_session()  # what a backend's first use lists regions with


@contextmanager
def _one_botocore_loader():
    """botocore sessions made inside share one data loader, which reads each of
    botocore's JSON files once.

    moto's import makes three sessions (moto.ec2's region list) and its backends a
    fourth, and each one parsed botocore's endpoints file and EC2's service model
    again: about 0.1 s apiece on the 2-core machine. The files are read-only data,
    which no botocore handler changes once loaded, so one loader for all four gives
    each the same answers. Used in this thread, before the server starts: the
    database thread makes no session."""
    import botocore.loaders
    import botocore.session

    made: dict = {}

    def one_loader(search_path_string=None):
        if search_path_string not in made:
            made[search_path_string] = botocore.loaders.create_loader(search_path_string)
        return made[search_path_string]

    original = botocore.session.create_loader
    botocore.session.create_loader = one_loader
    try:
        yield
    finally:
        botocore.session.create_loader = original


# The credentials a sandbox client signs with. They are not secret: moto accepts any.
SANDBOX_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
SANDBOX_ACCOUNT = "123456789012"  # moto's default account
# How often the moto server's loop looks for a stop (socketserver's default: 0.5 s).
MOTO_POLL_S = 0.02
# Young collections between two full ones while a sandbox runs (Python's default: 10).
FULL_COLLECTION_AFTER = 100


class Sandbox:
    def __init__(self, progress, *, pg_dsn: str | None = None, region: str | None = None,
                 invoker=None):
        self.progress = progress
        # The SQS poller runs with both: the region it looks for mappings in, and
        # invoker(aws, database_dsn, database_tls) -> an object whose .invoke(function,
        # event) runs a function (runbook.functions.invoke.sandbox_invoker; passed in,
        # as that module imports this one).
        self.region = region
        self.invoker = invoker
        self.poller: sandbox_sqs.Poller | None = None
        self.kafka_poller: sandbox_kafka_poller.KafkaPoller | None = None
        self.external_dsn = pg_dsn if pg_dsn is not None else os.environ.get("RUNBOOK_PG_DSN")
        self.workdir: Path | None = None
        self.aws_url: str | None = None
        self.pg_dsn: str | None = None
        self.pg_version: str | None = None
        self.database: str | None = None
        self.database_dsn: str | None = None
        self.database_tls = None        # runbook.sandbox.tls.TlsFrontEnd
        self.kafka_broker: sandbox_kafka.Broker | None = None
        # The legacy (Supabase-era) database stage-legacy-users reads (sandbox.legacy).
        self.legacy_database: str | None = None
        self.legacy_dsn: str | None = None
        self._moto = None
        self._pool_settings_kept = False
        self._pg: sandbox_postgres.EmbeddedPostgres | None = None
        self._previous_sigterm = None
        self._closing: threading.Event | None = None
        self._database_start: Future | None = None
        self._started = 0.0             # time.monotonic() at __enter__
        self._database_ready = 0.0      # seconds after _started
        self._kafka_session = None
        self._thresholds = None         # gc's, while _freeze_long_lived's hold

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> "Sandbox":
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        self._closing = threading.Event()
        self._started = time.monotonic()
        collecting = gc.isenabled()
        gc.disable()  # until start-up is done: see _freeze_long_lived
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix="runbook-sandbox-"))
            # PostgreSQL starts in a thread (its work is mostly its own processes'),
            # while this one imports and starts moto (Python, which holds the GIL).
            if not self.external_dsn:
                self._pg = sandbox_postgres.EmbeddedPostgres(self.workdir / "pgdata")
            _import_database_modules()
            self._database_start = Future()  # set first: close() waits for it, or cancels it
            _in_thread("runbook-sandbox-postgres", self._start_database, self._database_start)
            self._start_moto()
            self._database_start.result()
            self._say_database()
            self._start_tls()
            self._start_kafka()
            self._start_poller()
            self._freeze_long_lived()
        except BaseException:
            self.close()
            raise
        finally:
            if collecting:
                gc.enable()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _freeze_long_lived(self) -> None:
        """Keep Python's cyclic garbage collector off what start-up built.

        A full collection walks every object the collector tracks, and moto's import
        alone makes about 200,000 (its modules, classes and service models): a dry run
        of a3 made eight full collections of 0.1 to 0.4 s each, four of them during
        start-up and four walking mostly the botocore models the run loads, while
        collecting a few thousand objects. So start-up runs without collections, then
        freezes what it built (gc.freeze), and while the sandbox runs a full collection
        comes after FULL_COLLECTION_AFTER young ones instead of 10 (one every ~700,000
        allocations; the young generations are collected as often as before). `close`
        puts both back, so that a process that outlives the sandbox (a test session)
        collects as before."""
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self._thresholds[0], self._thresholds[1], FULL_COLLECTION_AFTER)

    def _start_moto(self) -> None:
        import logging

        # One line per request on stderr would bury runbook's own output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        warm_up_moto()

        self._moto = _moto_server()
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.aws_url = f"http://{host}:{port}"
        sandbox_rds.install()  # DescribeDBEngineVersions, which moto lacks
        sandbox_rds_proxy.install()  # CreateDBProxy in end-to-end IAM mode
        sandbox_sqs.install()  # no SQS mapping fired inside SendMessage: the poller runs them
        sandbox_kafka_mapping.install()  # MSK mappings stored; the Kafka poller runs them
        sandbox_msk.install()  # MSK clusters ACTIVE, bootstrap brokers, public access
        # UpdateUserPool keeps the creation-only settings, while this sandbox runs.
        sandbox_cognito_pool.install()
        # Lambda's VPC interfaces, and AWS's DependencyViolation for what they block.
        sandbox_lambda_eni.install()
        self._pool_settings_kept = True
        self._reset_moto()
        self.progress.line(f"sandbox: moto server on {self.aws_url}, ready after "
                           f"{self._since_start():.2f} s (sandbox dir {self.workdir})", dim=True)

    def _reset_moto(self) -> None:
        """Empty the emulated account. moto keeps its state in the process, not in the
        server: a second sandbox in one process (a test session, a library user) would
        otherwise start with the first one's resources."""
        import urllib.request

        request = urllib.request.Request(f"{self.aws_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def _start_database(self) -> None:
        """The server (embedded, or RUNBOOK_PG_DSN's), and the sandbox's two databases
        on it. Run in a thread while moto starts; gives up once the sandbox closes."""
        if self.external_dsn:
            self.pg_dsn = self.external_dsn
        else:
            self._pg.make_data_directory(sandbox_pgdata_cache.default_dir())
            self.pg_dsn = self._pg.start(self._closing)
        self.pg_version = self._server_version()
        self._create_database()
        if not self._closing.is_set():
            self.legacy_database, self.legacy_dsn = sandbox_legacy.create(self.pg_dsn)
        self._database_ready = self._since_start()

    def _say_database(self) -> None:
        ready = f"ready after {self._database_ready:.2f} s"
        if self.external_dsn:
            self.progress.line(f"sandbox: PostgreSQL {self.pg_version} from RUNBOOK_PG_DSN, "
                               f"{ready}", dim=True)
            return
        origin = ("its data directory a copy of the cached one" if self._pg.from_cache
                  else "initdb")
        self.progress.line(f"sandbox: embedded PostgreSQL {self.pg_version}, {ready} "
                           f"({origin})", dim=True)

    def _since_start(self) -> float:
        return time.monotonic() - self._started

    def _create_database(self) -> None:
        """A fresh, empty database stands in for the cluster's: a dry run starts from
        nothing even on a long-lived RUNBOOK_PG_DSN server, and drops it afterwards.
        Roles are server-wide: those fix-tables declares stay on such a server."""
        import secrets

        import psycopg
        from psycopg.conninfo import make_conninfo

        name = f"runbook_sandbox_{secrets.token_hex(4)}"
        with psycopg.connect(self.pg_dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.database = name
        self.database_dsn = make_conninfo(self.pg_dsn, dbname=name)

    def _start_tls(self) -> None:
        from runbook.sandbox.tls import TlsFrontEnd

        self.database_tls = TlsFrontEnd(self.workdir / "tls", backend=self.database_dsn,
                                        credentials=SANDBOX_CREDENTIALS).start()
        self.progress.line(f"sandbox: TLS front-end for IAM logins on {self.database_tls.host}:"
                           f"{self.database_tls.port}", dim=True)

    def _start_kafka(self) -> None:
        """The broker that stands in for an MSK cluster's data plane (about 20 ms to
        start, 11 MB idle, no disk)."""
        self.kafka_broker = sandbox_kafka.Broker(self.workdir / "kafka").start()
        sandbox_msk.serve(self.kafka_broker.bootstrap)  # every MSK cluster's brokers
        self.progress.line(f"sandbox: Kafka broker (Tansu) on {self.kafka_broker.bootstrap}",
                           dim=True)

    def kafka_access(self):
        """runbook's Kafka clients' access to the broker (runbook.sandbox.kafka): the MSK
        IAM token made with the sandbox credentials and checked, then plain Kafka."""
        region = self.region or "us-east-1"
        if self._kafka_session is None:  # one for the sandbox: a new one costs ~10 ms
            import boto3

            self._kafka_session = boto3.Session(region_name=region, **SANDBOX_CREDENTIALS)
        return sandbox_kafka.SandboxKafkaAccess(self._kafka_session, region,
                                                SANDBOX_CREDENTIALS)

    def step_context(self) -> dict:
        """What a Runner passes to the steps of a dry run (runbook.engine.StepContext)."""
        return {"database_dsn": self.database_dsn, "database_tls": self.database_tls,
                "kafka": self.kafka_access(), "legacy_dsn": self.legacy_dsn}

    def _start_poller(self) -> None:
        """Lambda's SQS poller for the region's mappings, with its own clients and
        invoker (what it calls is Lambda's work, not the steps')."""
        if self.region is None or self.invoker is None:
            return
        from runbook.aws.clients import ClientFactory

        aws = ClientFactory(self.region, endpoint_url=self.aws_url,
                            credentials=SANDBOX_CREDENTIALS)
        invoker = self.invoker(aws, self.database_dsn, self.database_tls)
        self.poller = sandbox_sqs.Poller(
            aws, invoker.invoke, any_mapping=_moto_holds_mapping(self.region, "sqs")).start()
        if self.kafka_broker is not None:
            self.kafka_poller = sandbox_kafka_poller.KafkaPoller(
                aws, invoker.invoke, self.kafka_broker.bootstrap,
                any_mapping=_moto_holds_mapping(self.region, "kafka")).start()

    def _stop_poller(self) -> None:
        if self.kafka_poller is not None:
            if not self.kafka_poller.stop():
                self.progress.line("sandbox: the MSK poller's invocation outlived the "
                                   "sandbox; it is left to end on its own", fg="yellow")
            self.kafka_poller = None
        if self.poller is None:
            return
        if not self.poller.stop():
            self.progress.line("sandbox: the SQS poller's invocation outlived the "
                               "sandbox; it is left to end on its own", fg="yellow")
        self.poller = None

    def _drop_database(self) -> None:
        if self.database is None or not self.external_dsn:
            return  # an embedded server is deleted with its directory
        import psycopg

        try:
            with psycopg.connect(self.pg_dsn, connect_timeout=10, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        except psycopg.Error as exc:
            self.progress.line(f"sandbox: could not drop database {self.database} on "
                               f"RUNBOOK_PG_DSN ({type(exc).__name__}); drop it by hand", fg="yellow")
        self.database = None

    def _drop_legacy_database(self) -> None:
        if self.legacy_database is None or not self.external_dsn:
            return  # an embedded server is deleted with its directory
        import psycopg

        try:
            sandbox_legacy.drop(self.pg_dsn, self.legacy_database)
        except psycopg.Error as exc:
            self.progress.line(f"sandbox: could not drop database {self.legacy_database} on "
                               f"RUNBOOK_PG_DSN ({type(exc).__name__}); drop it by hand",
                               fg="yellow")
        self.legacy_database = self.legacy_dsn = None

    def _server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.pg_dsn, connect_timeout=10) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def close(self) -> None:
        """Stop everything this sandbox started. Safe to call more than once.

        The database's side (its server stopped, the sandbox dir deleted) runs in a
        thread while moto is emptied and stopped here."""
        try:
            self._end_database_start()
            self._stop_poller()
            self._close_function_environments()
            if self.kafka_broker is not None:
                sandbox_msk.serve(None)
                self.kafka_broker.stop()
                self.kafka_broker = None
            if self.database_tls is not None:
                self.database_tls.stop()
                self.database_tls = None
            database = _in_thread("runbook-sandbox-teardown", self._stop_database, Future())
            try:
                self._stop_moto()
            finally:
                database.result()
        finally:
            if self._thresholds is not None:
                gc.set_threshold(*self._thresholds)
                gc.unfreeze()
                self._thresholds = None
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def _close_function_environments(self) -> None:
        """Stop the warm execution environments of this sandbox's functions (their
        processes hold connections to its database). Only a run that invoked a
        function has imported the invoker."""
        invoke = sys.modules.get("runbook.functions.invoke")
        if invoke is not None and self.aws_url is not None:
            invoke.ENVIRONMENTS.close(self.aws_url)

    def _end_database_start(self) -> None:
        """Have a database start still running give up, and wait for it (or cancel it,
        if its thread has not begun): what it started is then stopped with the rest.
        Its error, if any, is the caller's."""
        if self._closing is not None:
            self._closing.set()
        start, self._database_start = self._database_start, None
        if start is not None and not start.cancel():
            try:
                start.result()
            except BaseException:  # noqa: BLE001 - raised by __enter__, or moot now
                pass

    def _stop_moto(self) -> None:
        if self._moto is not None:
            self._reset_moto()
            self._moto.stop()
            self._moto = None
        if self._pool_settings_kept:
            sandbox_cognito_pool.uninstall()
            sandbox_lambda_eni.uninstall()
            self._pool_settings_kept = False

    def _stop_database(self) -> None:
        self._drop_database()
        self._drop_legacy_database()
        self._stop_postgres()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _stop_postgres(self) -> None:
        if self._pg is not None:
            try:
                self._pg.stop()
            finally:
                self._pg = None

    # -- what the sandbox stands in for ----------------------------------------------

    @property
    def simulated(self) -> list[str]:
        return [
            f"AWS account {SANDBOX_ACCOUNT}: moto server at {self.aws_url} stands in for "
            "EC2, RDS, Secrets Manager, IAM, Lambda, CloudWatch Logs, Cognito, STS, "
            "EventBridge, SQS, MSK (its control plane) and CloudWatch alarms",
            "EventBridge: moto delivers bus -> rule -> SQS but checks no queue policy and "
            "exercises no target RetryPolicy or DeadLetterConfig (registration-test reads "
            "them back instead); its events lack `account`; scheduled rules never fire, so "
            "the registration relay's schedule does not run in a dry run",
            "CloudWatch alarms: moto keeps them; none is evaluated against a metric",
            "Lambda code: moto keeps functions but runs none; the sandbox runs a deployed "
            "function's handler in a local subprocess with its configured environment and "
            "timeout, and writes its output to the function's log group",
            "Cognito triggers: moto fires none; the sandbox fires the pool's configured "
            "triggers on sign-up, confirmation and sign-in, within Cognito's 5 s limit",
            sandbox_cognito_pool.SIMULATED,
            sandbox_lambda_eni.SIMULATED,
            "Cognito UserMigration (runbook.sandbox.cognito): moto stores the trigger and "
            "never fires it; the sandbox fires it for a password sign-in "
            "(USER_PASSWORD_AUTH, ADMIN_USER_PASSWORD_AUTH) or a ForgotPassword of a user "
            "the pool lacks, checks its answer as Cognito does, creates the user with the "
            "returned attributes and status, then completes the call "
            "(Pre/Post-Authentication, tokens). moto matches usernames case-sensitively, "
            "so the sandbox lower-cases them for the pool's CaseSensitive=false",
            "Lambda execution environments: a local process per environment, started on "
            "a function's first invocation, after a change of its code or configuration, "
            "beside an invocation in flight, and after a timeout, a crash or a failed "
            "init, then kept warm for the next invocation (a few idle ones at most, not "
            "frozen between invocations); a cold start's "
            "init (the import of the handler's module) is held to Lambda's 10 s init "
            "limit and reported as Init Duration, while the function's timeout, and "
            "Cognito's 5 s, apply to the handler's call: on AWS a cold start's init "
            "counts toward Cognito's 5 s as well",
            "Lambda networking: functions are not placed in the VPC; the VPC endpoints, "
            "security groups and routes are checked by vpc-integrate's preflight instead",
            "RDS cluster and instances: moto keeps their records; no database engine runs "
            "behind the endpoint, so the parameter group's rds.force_ssl is recorded, not "
            "enforced",
            sandbox_rds.SIMULATED,
            sandbox_rds.SIMULATED_BACKUPS,
            sandbox_rds_proxy.SIMULATED,
            sandbox_rds_proxy.SIMULATED_ENDPOINT,
            sandbox_sqs.SIMULATED_FIRING,
            *([sandbox_sqs.SIMULATED_POLLER.format(delay=sandbox_sqs.RETRY_DELAY_S)]
              if self.region and self.invoker else []),
            f"PostgreSQL: {'RUNBOOK_PG_DSN' if self.external_dsn else 'embedded pgserver'} "
            f"{self.pg_version} stands in for Aurora PostgreSQL",
            f"database endpoint: the cluster's endpoint is pointed at the sandbox database "
            f"{self.database}; the DB secret is read and checked, but its host and password "
            "are not used",
            "TLS to the database and IAM token logins: the PostgreSQL stand-in speaks no TLS, "
            "so a TLS front-end on 127.0.0.1 answers for the cluster endpoints with "
            "certificates from a CA the sandbox makes, refuses clients without TLS, checks "
            "each RDS auth token (host, port, user, scope, expiry, signature made again with "
            "the sandbox credentials) and then logs in to PostgreSQL as that user",
            "RDS CA bundle: functions that log in by IAM verify the sandbox CA instead "
            "(DB_SSLROOTCERT points at it; the dependency layer carries it); the RDS "
            "global-bundle.pem is not fetched",
            sandbox_legacy.SIMULATED,
            *([sandbox_kafka.SIMULATED.format(bootstrap=self.kafka_broker.bootstrap)]
              if self.kafka_broker else []),
            sandbox_msk.SIMULATED,
            sandbox_kafka_mapping.SIMULATED,
            *([sandbox_kafka_poller.SIMULATED.format(delay=sandbox_kafka_poller.RETRY_DELAY_S)]
              if self.kafka_broker and self.region and self.invoker else []),
            "account_id guard: not applied (the sandbox is its own account)",
        ]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _moto_holds_mapping(region: str, service: str):
    """() -> whether this process's moto holds a Lambda event source mapping from
    `service` (an ARN's service: sqs, kafka) in the sandbox's account and `region`.
    What the pollers would learn from ListEventSourceMappings, read without a request
    (dict.get: moto's own lookup would make the backend)."""
    from moto.awslambda.models import lambda_backends

    def holds() -> bool:
        account = dict.get(lambda_backends, SANDBOX_ACCOUNT)
        backend = dict.get(account, region) if account is not None else None
        if backend is None:
            return False
        return any((m.event_source_arn or "").split(":")[2:3] == [service]
                   for m in list(backend._event_source_mappings.values()))

    return holds


def _import_database_modules() -> None:
    """What the database thread uses, imported before it starts: modules imported by two
    threads at once can see each other half made (warm_up_moto)."""
    import importlib

    for name in ("psycopg", "psycopg.conninfo"):
        importlib.import_module(name)


def _in_thread(name: str, function, future: Future) -> Future:
    """Run `function()` in a thread of its own, its result or error into `future`;
    not at all if `future` was cancelled before the thread began."""
    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            future.set_exception(exc)

    threading.Thread(target=run, name=name).start()
    return future


def _moto_server():
    """moto's ThreadedMotoServer, whose stop() takes milliseconds instead of up to half a
    second: the base class serves with socketserver's default poll interval (0.5 s),
    and its shutdown() waits for the serving loop to look again."""
    from moto.moto_server import threaded_moto_server as threaded

    class MotoServer(threaded.ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = threaded.DomainDispatcherApplication(threaded.create_backend_app)
            self._server = threaded.make_server(self._ip_address, self._port, app, True,
                                                request_handler=threaded.MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=MOTO_POLL_S)

    return MotoServer(ip_address="127.0.0.1", port=0, verbose=False)
