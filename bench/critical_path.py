"""A live run's length against AWS's critical path, measured without an AWS account.

    python bench/critical_path.py [--phase a5] [--show]

It runs the steps of a1..<phase> against the sandbox (a moto server, the embedded
PostgreSQL, the Kafka broker and the sandbox's Lambda pollers, as the crash sweep does),
twice in this one process: serially, as dry runs run (Runner parallel=False), and
overlapping, as a live run does (parallel=True, runbook.engine.schedule). Both
runs keep time in VIRTUAL TIME, with a LATENCY MODEL that holds each slow AWS resource in
its pending state for as long as it takes on AWS (DURATIONS): moto reports a cluster
`creating`, an instance `creating`, an interface endpoint `pending`, a function in a VPC
`Pending`, a proxy `creating` and an MSK cluster CREATING until that much virtual time
has passed since it was made; and, as AWS does, refuses to modify a cluster or to
register it with a proxy until it (and the proxy) is available. The run's waits poll
through the injected sleep and clock (Runner(sleep=, clock=)).

Virtual time is real time plus jumps. When every thread of the run is asleep in the
injected sleep, no sandbox invocation is in flight and a modelled resource is still
pending, time jumps to the earliest sleeper's deadline (as trio's MockClock autojumps),
so a 30-minute wait takes a fraction of a second. Otherwise it runs at real speed, so
waits on the sandbox's own background work (its SQS and Kafka pollers running the
functions) are not outrun.

It prints the runs' virtual wall times beside the model's critical path (the longest
path through the run's step DAG, each step finishing once what it needs ready is ready)
and the model's serial sum (the same steps one after the other), and the overlapping
run's ratio to the critical path beside the goal of issue 19: at most 1.1x. The exit
code is 0 when both runs passed and the goal is met. It touches no AWS account.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runbook from this checkout, installed or not

from runbook import config as config_mod  # noqa: E402
from runbook.aws.clients import ClientFactory  # noqa: E402
from runbook.aws.retry import format_duration  # noqa: E402
from runbook.engine.schedule import THREAD_PREFIX, waits_for  # noqa: E402
from runbook.output.progress import Progress  # noqa: E402
from runbook.sandbox import sweep  # noqa: E402
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox  # noqa: E402
from runbook.steps import CATALOGUE, new_runner  # noqa: E402

GOAL = 1.1
# How long each slow resource stays pending on AWS (issue 19's latency model), seconds.
DURATIONS = {"cluster": 8 * 60, "instance": 10 * 60, "interface endpoint": 2 * 60,
             "function in a VPC": 90, "proxy": 5 * 60, "MSK cluster": 30 * 60}
# MSK's public access (UpdateConnectivity) is not in the model: it completes at once.

# The model's steps: what each makes that is slow, and what must be ready before it can
# finish, by AWS's rules or by what the step proves. Functions outside a VPC (Pre-SignUp,
# the loader, UserMigration) are Active within seconds: not modelled.
MAKES = {"database": ("cluster", "instance"), "vpc-integrate": ("interface endpoint",),
         "db-proxy": ("proxy",), "deploy-post-confirmation": ("post_confirmation",),
         "deploy-process-user-signup": ("process_user_signup",),
         "msk-cluster": ("MSK cluster",)}
NEEDS_READY = {
    "store-secrets": ("cluster",),             # ModifyDBCluster: an available cluster only
    "vpc-integrate": ("interface endpoint",),  # its preflight proves an available endpoint
    "fix-tables": ("cluster", "instance"),     # it connects
    "db-proxy": ("proxy", "cluster", "instance"),  # registration, then targets AVAILABLE
    "deploy-post-confirmation": ("post_confirmation",),  # trigger attached once Active
    "deploy-process-user-signup": ("process_user_signup",),  # its consumer, once Active
    "msk-cluster": ("MSK cluster",),           # UpdateConnectivity: ACTIVE only
}
KIND = {"post_confirmation": "function in a VPC", "process_user_signup": "function in a VPC"}

SETTLE_S = 0.02   # real seconds every thread must stay asleep before time jumps


# -- virtual time -------------------------------------------------------------------------

class VirtualClock:
    """now() and sleep() for the runner: real time plus jumps (see the module docstring).
    `member(thread)` says which threads are the run's (its step threads)."""

    def __init__(self, member: Callable[[threading.Thread], bool],
                 pending: Callable[[float], bool]):
        self._member, self._pending = member, pending
        self._start = time.monotonic()
        self._jumped = 0.0
        self._changed = threading.Condition()
        self._sleepers: dict[int, float] = {}   # thread ident -> deadline
        self._busy = 0                           # sandbox invocations in flight
        self._version = 0                        # bumped by every change of the above
        self._stopped = False
        self.jumps = 0
        threading.Thread(target=self._autojump, name="virtual clock", daemon=True).start()

    def now(self) -> float:
        return time.monotonic() - self._start + self._jumped

    __call__ = now

    def sleep(self, seconds: float) -> None:
        me = threading.get_ident()
        with self._changed:
            deadline = self.now() + max(0.0, seconds)
            self._sleepers[me] = deadline
            self._version += 1
            try:
                while (left := deadline - self.now()) > 0:
                    self._changed.wait(left)
            finally:
                del self._sleepers[me]
                self._version += 1

    @contextmanager
    def busy(self):
        """Work in a background thread (a poller's invocation) that time must not outrun."""
        with self._changed:
            self._busy += 1
            self._version += 1
        try:
            yield
        finally:
            with self._changed:
                self._busy -= 1
                self._version += 1

    def stop(self) -> None:
        self._stopped = True

    def _autojump(self) -> None:
        seen = None
        while not self._stopped:
            time.sleep(SETTLE_S)
            with self._changed:
                deadline = self._jump_to()
                if deadline is None:
                    seen = None
                elif seen != self._version:
                    seen = self._version      # asleep now: jump if still so next time
                else:
                    self._jumped += max(0.0, deadline - self.now())
                    self.jumps += 1
                    self._version += 1
                    self._changed.notify_all()

    def _jump_to(self) -> float | None:
        """The earliest sleeper's deadline, when time may jump to it now."""
        members = [t.ident for t in threading.enumerate() if self._member(t)]
        if not members or self._busy or not self._pending(self.now()):
            return None
        if not all(ident in self._sleepers for ident in members):
            return None
        return min(self._sleepers[ident] for ident in members)


# -- the latency model, in moto ----------------------------------------------------------

class LatencyModel:
    """Holds each resource the run makes pending for DURATIONS[kind] of virtual time."""

    def __init__(self):
        self.clock: VirtualClock | None = None
        self.ready: list[float] = []

    def start(self, clock: VirtualClock) -> None:
        self.clock, self.ready = clock, []

    def made(self, kind: str) -> float:
        ready_at = self.clock.now() + DURATIONS[kind]
        self.ready.append(ready_at)
        return ready_at

    def pending(self, now: float) -> bool:
        return any(ready_at > now for ready_at in self.ready)

    def is_pending(self, thing) -> bool:
        ready_at = getattr(thing, "bench_ready_at", None)
        return ready_at is not None and self.clock.now() < ready_at

    def install(self) -> None:
        """Teach the in-process moto (the sandbox's server) the model."""
        self._rds()
        self._endpoints()
        self._functions()
        self._msk()

    def _pending_while(self, cls, attribute: str, pending_value: str) -> None:
        """`cls.attribute` reads `pending_value` while the object is pending."""
        original, store, model = cls.__dict__.get(attribute), f"_bench_{attribute}", self

        def get(obj):
            if model.is_pending(obj):
                return pending_value
            if isinstance(original, property):
                return original.fget(obj)
            return obj.__dict__.get(store)

        def put(obj, value) -> None:
            if isinstance(original, property):
                original.fset(obj, value)
            else:
                obj.__dict__[store] = value

        setattr(cls, attribute, property(get, put))

    def _made(self, owner, method: str, kind: Callable[[tuple, dict, object], str | None]):
        """Wrap owner.method (a create): what it returns is pending for DURATIONS[kind]."""
        original, model = getattr(owner, method), self

        def create(*args, **kwargs):
            made = original(*args, **kwargs)
            which = kind(args, kwargs, made)
            if which:
                made.bench_ready_at = model.made(which)
            return made

        setattr(owner, method, create)

    def _rds(self) -> None:
        from moto.rds.exceptions import InvalidDBClusterStateFault, RDSClientError
        from moto.rds.models import DBCluster, DBInstance, DBProxy, DBProxyTarget, RDSBackend

        model = self
        self._pending_while(DBCluster, "status", "creating")
        self._pending_while(DBInstance, "status", "creating")
        self._pending_while(DBProxy, "status", "creating")
        def cluster(args, kwargs, made) -> str:
            made._status = "available"   # moto's own: `creating` for one read; the model decides
            return "cluster"

        self._made(RDSBackend, "create_db_cluster", cluster)
        self._made(RDSBackend, "create_db_instance", lambda a, k, made: "instance")
        self._made(RDSBackend, "create_db_proxy", lambda a, k, made: "proxy")

        modify = RDSBackend.modify_db_cluster

        def modify_db_cluster(backend, kwargs):
            cluster = backend.clusters.get(kwargs["db_cluster_identifier"])
            if cluster is not None and cluster.status != "available":
                raise InvalidDBClusterStateFault(f"DbCluster {cluster.db_cluster_identifier} "
                                                 f"is not in available state")
            return modify(backend, kwargs)

        register = RDSBackend.register_db_proxy_targets

        def register_db_proxy_targets(backend, db_proxy_name, target_group_name,
                                      db_cluster_identifiers, db_instance_identifiers):
            proxy = backend.db_proxies.get(db_proxy_name)
            if proxy is not None and proxy.status != "available":
                raise RDSClientError("InvalidDBProxyStateFault",
                                     f"DB proxy {db_proxy_name} is not available")
            for cluster_id in db_cluster_identifiers:
                cluster = backend.clusters.get(cluster_id)
                if cluster is not None and cluster.status != "available":
                    raise InvalidDBClusterStateFault(f"DbCluster {cluster_id} is not in "
                                                     "available state")
            return register(backend, db_proxy_name, target_group_name,
                            db_cluster_identifiers, db_instance_identifiers)

        def target_health(target) -> dict:
            """AVAILABLE once every instance of the target's cluster is."""
            instances = [i for i in target.backend.databases.values()
                         if getattr(i, "db_cluster_identifier", None) == target.rds_resource_id]
            ready = instances and not any(model.is_pending(i) for i in instances)
            return {"State": "AVAILABLE" if ready else "REGISTERING"}

        RDSBackend.modify_db_cluster = modify_db_cluster
        RDSBackend.register_db_proxy_targets = register_db_proxy_targets
        DBProxyTarget.target_health = property(target_health)

    def _endpoints(self) -> None:
        from moto.ec2.models.vpcs import VPCBackend, VPCEndPoint

        self._pending_while(VPCEndPoint, "state", "pending")
        self._made(VPCBackend, "create_vpc_endpoint", lambda a, k, made: (
            "interface endpoint" if str(made.vpc_endpoint_type).lower() == "interface"
            else None))

    def _functions(self) -> None:
        from moto.awslambda.models import LambdaBackend, LambdaFunction

        self._pending_while(LambdaFunction, "state", "Pending")
        self._made(LambdaBackend, "create_function", lambda a, k, made: (
            "function in a VPC" if (made.vpc_config or {}).get("SubnetIds") else None))

    def _msk(self) -> None:
        """The sandbox's MSK (runbook.sandbox.msk) makes a cluster ACTIVE after a few
        reads; here, once its modelled time has passed."""
        from moto.kafka.responses import KafkaResponse

        from runbook.sandbox import msk

        model, create = self, KafkaResponse.create_cluster_v2

        def create_cluster_v2(response):
            answer = create(response)
            name = response._get_param("clusterName")
            cluster = next(c for c in response.kafka_backend.clusters.values()
                           if c.cluster_name == name)
            cluster.bench_ready_at = model.made("MSK cluster")
            return answer

        def timed_tick(cluster) -> None:
            pending = getattr(cluster, "runbook_pending", None)
            if pending is msk._activate and model.is_pending(cluster):
                return                  # CREATING until its modelled time has passed
            if pending is not None:     # created, or public access (at once: not modelled)
                cluster.runbook_pending = None
                pending(cluster)

        KafkaResponse.create_cluster_v2 = create_cluster_v2
        msk._tick = timed_tick


# -- the model's critical path ------------------------------------------------------------

def model_times(names: list[str], waits: dict[str, tuple[str, ...]]) -> dict[str, tuple]:
    """{step: (start, finish)} in the model, each step starting once those it waits for
    finished and finishing once what it needs ready is ready."""
    times: dict[str, tuple] = {}
    ready: dict[str, float] = {}
    for name in names:
        start = max((times[w][1] for w in waits[name]), default=0.0)
        for thing in MAKES.get(name, ()):
            ready[thing] = start + DURATIONS[KIND.get(thing, thing)]
        finish = max([start] + [ready[thing] for thing in NEEDS_READY.get(name, ())
                                if thing in ready])
        times[name] = (start, finish)
    return times


def critical_path(names: list[str], waits: dict, times: dict) -> list[str]:
    """The steps of the longest path, from the last to finish back to the first."""
    path = [max(names, key=lambda n: (times[n][1], names.index(n)))]
    while waits[path[-1]]:
        start = times[path[-1]][0]
        before = [w for w in waits[path[-1]] if times[w][1] == start]
        if not before:
            break
        path.append(before[-1])
    return path[::-1]


# -- the runs ------------------------------------------------------------------------------

def measure(config, names: list[str], account, model: LatencyModel, *, parallel: bool,
            show: bool) -> tuple[float, list, int]:
    """One run of `names`; (virtual seconds, results, the clock's jumps)."""
    account.reset()
    serial_thread: list[threading.Thread] = []

    def member(thread: threading.Thread) -> bool:
        return thread.name.startswith(THREAD_PREFIX) or thread in serial_thread

    clock = VirtualClock(member, model.pending)
    model.start(clock)
    aws = ClientFactory(sweep.REGION, endpoint_url=account.aws_url,
                        credentials=SANDBOX_CREDENTIALS)
    runner = new_runner(config, aws, Progress(quiet=not show), dry_run=True, parallel=parallel,
                        sleep=clock.sleep, clock=clock, database_dsn=account.database_dsn,
                        kafka=account.kafka_access(), legacy_dsn=account.legacy_dsn)
    results: list = []
    with _busy_while_invoking(clock), account.poller():
        started = clock.now()
        if parallel:
            runner.run(names, results)
        else:
            thread = threading.Thread(target=runner.run, args=(names, results),
                                      name="serial run")
            serial_thread.append(thread)
            thread.start()
            thread.join()
        seconds = clock.now() - started
    clock.stop()
    return seconds, results, clock.jumps


@contextmanager
def _busy_while_invoking(clock: VirtualClock):
    """Count every sandbox invocation (the pollers' too) as work time must not outrun."""
    from runbook.functions.invoke import LocalInvoker

    invoke = LocalInvoker.invoke

    def invoking(self, *args, **kwargs):
        with clock.busy():
            return invoke(self, *args, **kwargs)

    LocalInvoker.invoke = invoking
    try:
        yield
    finally:
        LocalInvoker.invoke = invoke


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "prod.yaml"))
    parser.add_argument("--phase", default="a5", help="run a1..PHASE (default a5)")
    parser.add_argument("--show", action="store_true", help="print the runs' progress")
    args = parser.parse_args()

    config = config_mod.load(args.config)
    names = config.steps_through(args.phase)
    waits = waits_for(names, CATALOGUE, config)
    overlapping = model_times(names, waits)
    serial = model_times(names, {name: tuple(names[:i][-1:]) for i, name in enumerate(names)})
    path = critical_path(names, waits, overlapping)
    critical = max(finish for _, finish in overlapping.values())
    serial_sum = max(finish for _, finish in serial.values())

    model = LatencyModel()
    measured = {}
    with Sandbox(Progress(quiet=True)) as box:
        model.install()
        account = sweep.Account.of(box)
        for label, parallel in (("serial", False), ("overlapping", True)):
            real = time.monotonic()
            seconds, results, jumps = measure(config, names, account, model,
                                              parallel=parallel, show=args.show)
            failed = [f"{r.name}: {r.error}" for r in results if not r.ok]
            if failed or len(results) != len(names):
                print(f"{label} run failed: " + "; ".join(failed or ["steps missing"]))
                return 1
            measured[label] = seconds
            print(f"{label} run: {format_duration(seconds)} virtual, "
                  f"{time.monotonic() - real:.1f} s real, {jumps} jumps", flush=True)

    ratio = measured["overlapping"] / critical
    print()
    print(f"a1..{args.phase} against moto in virtual time; latency model: "
          + ", ".join(f"{kind} {format_duration(s)}" for kind, s in DURATIONS.items()))
    print(f"  {'critical path (model)':<30} {format_duration(critical):>8}   "
          + " > ".join(path))
    print(f"  {'serial sum (model)':<30} {format_duration(serial_sum):>8}")
    print(f"  {'serial run (measured)':<30} {format_duration(measured['serial']):>8}   "
          f"{measured['serial'] / critical:.2f}x the critical path")
    print(f"  {'overlapping run (measured)':<30} {format_duration(measured['overlapping']):>8}   "
          f"{ratio:.2f}x the critical path   goal <= {GOAL}x   "
          f"{'met' if ratio <= GOAL else 'NOT MET'}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
