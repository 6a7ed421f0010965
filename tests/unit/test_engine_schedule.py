"""Overlapping steps (runbook.engine.schedule): a step starts once the steps it needs or
shares something with are done, independent steps run at the same time, a failure
starts nothing more, Ctrl-C stops the running steps, and the results, the per-step call
counts, the journal and the progress lines stay as a serial run has them."""

from __future__ import annotations

import _thread
import json
import threading
from dataclasses import dataclass
from typing import Callable

import pytest
from moto import mock_aws

from runbook.aws.clients import ClientFactory
from runbook.aws.journal import Journal
from runbook.engine import Change, Outputs, Runner, Step
from runbook.engine.schedule import THREAD_PREFIX, waits_for
from runbook.errors import ImpurePlan, StepFailed
from runbook.output.progress import Progress
from tests.conftest import REGION
from tests.unit.test_engine_contract import Config, Entry

WAIT_S = 10   # a barrier or event that is never reached fails the test instead of hanging


@dataclass(frozen=True)
class Done(Outputs):
    name: str


def step(name: str, work: Callable[[Step], None] = lambda s: None,
         plan: Callable[[Step], None] = lambda s: None) -> type:
    """A step class whose one change runs `work(step)`; `plan(step)` runs in its plan."""

    class Made(Step):
        def read(self):
            return {}

        def plan(self, state):
            plan(self)
            return [Change("create", f"test:thing {name}", "work", {}, {},
                           run=lambda api, state: work(self))]

        def outputs(self, state):
            return Done(name)

    Made.name = name
    return Made


class Log:
    """What happened, in order, from every thread."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, what: str, name: str) -> None:
        with self._lock:
            self.events.append((what, name))

    def index(self, what: str, name: str) -> int:
        return self.events.index((what, name))

    def logged(self, name: str, work: Callable[[Step], None] = lambda s: None):
        def run(s: Step) -> None:
            self.add("start", name)
            work(s)
            self.add("end", name)
        return run


def runner(catalogue: dict, aws: ClientFactory | None = None, progress=None,
           **options) -> Runner:
    return Runner(Config(), aws or ClientFactory(REGION), progress or Progress(quiet=True),
                  catalogue=catalogue, parallel=True, **options)


def test_independent_steps_run_at_the_same_time():
    both = threading.Barrier(2, timeout=WAIT_S)   # passed only by two steps at once
    meet = lambda s: both.wait()  # noqa: E731
    run = runner({"a": Entry(step("a", meet)), "b": Entry(step("b", meet))})
    results = run.run(["a", "b"])
    assert [(r.name, r.status) for r in results] == [("a", "ok"), ("b", "ok")]


def test_a_step_starts_only_after_the_steps_it_needs_are_done():
    log = Log()
    catalogue = {"net": Entry(step("net", log.logged("net"))),
                 "db": Entry(step("db", log.logged("db")), requires=("net",)),
                 "app": Entry(step("app", log.logged("app")), requires=("db", "net")),
                 "pool": Entry(step("pool", log.logged("pool")))}
    results = runner(catalogue).run(["net", "db", "pool", "app"])
    assert all(r.status == "ok" for r in results)
    assert log.index("end", "net") < log.index("start", "db")
    assert log.index("end", "db") < log.index("start", "app")


def test_steps_that_share_something_do_not_overlap_and_keep_the_listed_order():
    log = Log()
    catalogue = {"first": Entry(step("first", log.logged("first")), shares=("layer",)),
                 "other": Entry(step("other", log.logged("other"))),
                 "second": Entry(step("second", log.logged("second")), shares=("layer",))}
    runner(catalogue).run(["first", "other", "second"])
    assert log.index("end", "first") < log.index("start", "second")


def test_the_dag_points_only_backwards_in_the_listed_order():
    catalogue = {"a": Entry(None), "b": Entry(None, requires=("a", "c")),
                 "c": Entry(None, shares=("x",)), "d": Entry(None, shares=("x",))}
    # b needs c, listed after it: b reads c's outputs live, as a serial run would.
    assert waits_for(["a", "b", "c", "d"], catalogue, Config()) == {
        "a": (), "b": ("a",), "c": (), "d": ("c",)}


def test_results_are_in_the_listed_order_whatever_order_the_steps_end_in():
    first_done = threading.Event()
    late = lambda s: first_done.wait(WAIT_S)  # noqa: E731 - ends after "quick"
    quick = lambda s: first_done.set()  # noqa: E731
    catalogue = {"late": Entry(step("late", late)), "quick": Entry(step("quick", quick))}
    results = runner(catalogue).run(["late", "quick"], [])
    assert [r.name for r in results] == ["late", "quick"]
    assert all(r.status == "ok" for r in results)


def test_a_failure_starts_nothing_more_lets_running_steps_finish_and_the_rest_are_not_run():
    failed = threading.Event()

    def fail(s):
        try:
            raise StepFailed("broken", "test:thing broken", "it broke")
        finally:
            failed.set()

    def slow(s):
        # Still running when "broken" has failed and its thread has ended.
        assert failed.wait(WAIT_S)
        for thread in threading.enumerate():
            if thread.name == THREAD_PREFIX + "broken":
                thread.join(WAIT_S)

    catalogue = {"slow": Entry(step("slow", slow)), "broken": Entry(step("broken", fail)),
                 "after-slow": Entry(step("after-slow"), requires=("slow",)),
                 "after-broken": Entry(step("after-broken"), requires=("broken",))}
    results = runner(catalogue).run(["slow", "broken", "after-slow", "after-broken"])
    assert [(r.name, r.status) for r in results] == [
        ("slow", "ok"), ("broken", "failed"), ("after-slow", "not_run"),
        ("after-broken", "not_run")]
    assert results[2].error is None and results[2].applied == 0


def test_a_step_not_built_is_skipped_without_blocking_the_steps_after_it():
    catalogue = {"unbuilt": Entry(None), "after": Entry(step("after"), requires=("unbuilt",)),
                 "other": Entry(step("other"))}
    results = runner(catalogue).run(["unbuilt", "after", "other"])
    assert [(r.name, r.status, r.unbuilt) for r in results] == [
        ("unbuilt", "not_run", True), ("after", "ok", False), ("other", "ok", False)]


def test_each_step_runs_in_a_thread_named_after_it():
    names = {}

    def record(s):
        names[s.name] = threading.current_thread().name

    runner({"a": Entry(step("a", record)), "b": Entry(step("b", record))}).run(["a", "b"])
    assert names == {"a": THREAD_PREFIX + "a", "b": THREAD_PREFIX + "b"}


def test_calls_are_counted_per_step_and_journalled_under_it_while_steps_overlap(tmp_path):
    """Two steps call AWS at the same time, turn about: each step's counts and journal
    entries are its own."""
    turn = threading.Barrier(2, timeout=WAIT_S)

    with mock_aws():
        journal = Journal(tmp_path / "journal.jsonl")
        aws = ClientFactory(REGION, journal=journal)
        catalogue = {"reader": Entry(step("reader", _calls(turn, reads=6, writes=0))),
                     "writer": Entry(step("writer", _calls(turn, reads=2, writes=4)))}
        results = runner(catalogue, aws).run(["reader", "writer"])
        journal.close()
    assert {r.name: r.api_calls for r in results} == {
        "reader": {"read": 6, "write": 0}, "writer": {"read": 2, "write": 4}}
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [(e["step"], e["call"]) for e in lines] == [("writer", "ec2:CreateVpc")] * 4
    assert aws.total("read") == 8 and aws.total("write") == 4


def _calls(turn: threading.Barrier, *, reads: int, writes: int):
    """A step's work: `reads` DescribeVpcs and `writes` CreateVpc, one call per turn,
    each turn taken together with the other step's."""
    def run(s):
        ec2 = s.client("ec2")
        for number in range(max(reads, writes, 6)):
            turn.wait()
            if number < reads:
                ec2.describe_vpcs()
            if number < writes:
                ec2.create_vpc(CidrBlock="10.0.0.0/16")
    return run


def test_a_plan_is_refused_aws_in_its_own_thread_only():
    """While one step's plan runs (every call refused), another step's calls go out."""
    planning = threading.Event()
    called = threading.Event()

    def impure_plan(s):
        planning.set()
        assert called.wait(WAIT_S)
        s.client("sts").get_caller_identity()

    def call(s):
        assert planning.wait(WAIT_S)
        s.client("ec2").describe_vpcs()
        called.set()

    with mock_aws():
        catalogue = {"impure": Entry(step("impure", plan=impure_plan)),
                     "caller": Entry(step("caller", call))}
        impure, caller = runner(catalogue).run(["impure", "caller"])
    assert impure.status == "failed"
    assert str(ImpurePlan("step 'impure''s plan", "sts", "GetCallerIdentity")) in impure.error
    assert caller.status == "ok" and caller.api_calls == {"read": 1, "write": 0}


def test_ctrl_c_stops_the_running_steps_at_their_next_wait_and_records_them_interrupted():
    started = threading.Barrier(3, timeout=WAIT_S)   # both waiters and the interrupter

    def wait(s):
        started.wait()
        for _ in range(100):
            s.ctx.sleep(0.1)

    def interrupt(s):
        started.wait()
        _thread.interrupt_main()   # what Ctrl-C does: KeyboardInterrupt in the main thread

    catalogue = {"one": Entry(step("one", wait)), "two": Entry(step("two", wait)),
                 "ctrl-c": Entry(step("ctrl-c", interrupt)),
                 "later": Entry(step("later"), requires=("one",))}
    run, results = runner(catalogue), []
    with pytest.raises(KeyboardInterrupt):
        run.run(["one", "two", "ctrl-c", "later"], results)
    assert [(r.name, r.status) for r in results] == [
        ("one", "interrupted"), ("two", "interrupted"), ("ctrl-c", "ok")]
    assert run.interrupted is results[0]
    assert results[0].error == "interrupted by the operator"


def test_ctrl_c_still_ends_the_run_when_the_running_step_finishes_without_a_wait():
    interrupted = threading.Event()

    def busy(s):
        _thread.interrupt_main()
        assert interrupted.wait(WAIT_S)   # busy (no wait, no call) until the main thread heard

    class Heard(Progress):
        def line(self, text: str = "", **style) -> None:
            if text.startswith("interrupted:"):
                interrupted.set()

    catalogue = {"busy": Entry(step("busy", busy)),
                 "later": Entry(step("later"), requires=("busy",))}
    run, results = runner(catalogue, progress=Heard(quiet=True)), []
    with pytest.raises(KeyboardInterrupt):
        run.run(["busy", "later"], results)
    assert [(r.name, r.status) for r in results] == [("busy", "ok")]
    assert run.interrupted is None


def test_after_ctrl_c_a_step_s_next_aws_call_is_not_sent():
    calling = threading.Event()

    def calls(s):
        calling.set()
        for _ in range(1000):
            s.client("ec2").describe_vpcs()

    def interrupt(s):
        assert calling.wait(WAIT_S)
        _thread.interrupt_main()

    with mock_aws():
        aws = ClientFactory(REGION)
        catalogue = {"caller": Entry(step("caller", calls)),
                     "ctrl-c": Entry(step("ctrl-c", interrupt))}
        results = []
        with pytest.raises(KeyboardInterrupt):
            runner(catalogue, aws).run(["caller", "ctrl-c"], results)
    assert results[0].status == "interrupted"
    assert results[0].api_calls["read"] < 1000
    assert aws.interceptors == []


def test_overlapping_steps_print_their_lines_prefixed_with_their_names(capsys):
    both = threading.Barrier(2, timeout=WAIT_S)

    def say(s):
        both.wait()
        s.ctx.progress.line(f"  made by {s.name}")

    catalogue = {"network": Entry(step("network", say)), "db": Entry(step("db", say))}
    runner(catalogue, progress=Progress()).run(["network", "db"])
    lines = capsys.readouterr().out.splitlines()
    assert "network |   made by network" in lines
    assert "db      |   made by db" in lines
    assert "network | step network" in lines
    assert all(line.startswith(("network | ", "db      | ")) for line in lines)


def test_a_serial_run_is_unchanged_one_step_after_the_other(capsys):
    log = Log()
    catalogue = {"a": Entry(step("a", log.logged("a"))), "b": Entry(step("b", log.logged("b")))}
    run = Runner(Config(), ClientFactory(REGION), Progress(), catalogue=catalogue)
    results = run.run(["a", "b"])
    assert [r.status for r in results] == ["ok", "ok"]
    assert log.events == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
    assert "step a" in capsys.readouterr().out.splitlines()


def test_the_journal_keeps_every_entry_whole_when_threads_record_at_once(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    go = threading.Barrier(8, timeout=WAIT_S)

    def record(number: int) -> None:
        go.wait()
        for k in range(50):
            journal.record(f"step-{number}", "ec2", "CreateVpc", {"Vpc": {"VpcId": f"vpc-{k}"}})

    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert len(lines) == len(journal.entries) == 400
    assert {sum(1 for e in lines if e["step"] == f"step-{n}") for n in range(8)} == {50}


def test_the_default_file_overlaps_what_is_independent_and_keeps_the_rest_in_order():
    from runbook import config as config_mod
    from runbook.steps import CATALOGUE
    from tests.conftest import PROD_CONFIG

    config = config_mod.load(PROD_CONFIG)
    waits = waits_for(config.all_steps(), CATALOGUE, config)
    # Started at once: nothing before them that they need or share.
    assert waits["network"] == waits["cognito"] == waits["hash-table"] == ()
    assert waits["msk-cluster"] == ("network",)
    assert waits["vpc-integrate"] == ("network", "database")
    # One step at a time publishes the dependency layer.
    assert "deploy-post-confirmation" in waits["deploy-process-user-signup"]
    assert "deploy-process-user-signup" in waits["deploy-user-migration"]
    # Nothing changes the sign-up path while a test observes it.
    assert "integration-test" in waits["event-bus"]
    assert "registration-test" in waits["deploy-user-migration"]
    assert "stage-legacy-users" not in waits["migration-test"]
