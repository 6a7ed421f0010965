"""Overlapping steps: a live run starts each step as soon as the steps it waits for are
done, so that independent work overlaps as Terraform and CloudFormation overlap it
(Cognito and the VPC endpoints while the cluster is made, MSK's half hour beside all of
a1..a4).

A step waits for the steps listed before it in the run (`waits_for`) whose outputs it
needs (the catalogue's `StepInfo.needs`) or with which it shares something
(`StepInfo.shares`: the dependency layer several steps publish, the sign-up path a test
observes). The edges point only backwards in the listed order, so a serial run is one
schedule of them. Only ids pass along an edge: a step that needs a resource *ready*
waits for it itself (the database step makes the cluster and moves on; the first step
that needs it available waits for it).

What stays as in a serial run:
- the results are in the listed order, whatever order the steps end in;
- a failure starts nothing more: the running steps finish, the rest are `not_run`;
- Ctrl-C (which only the main thread hears) stops every running step at its next wait
  (Runner._sleep) or AWS call (an interceptor of the run's ClientFactory), each recorded
  `interrupted`; a second Ctrl-C stops waiting for them. Steps that had not started
  are left out of the results, as after a serial run's interrupt.

Each step runs in a thread of its own, named THREAD_PREFIX + its name. The
ClientFactory's scope and plan refusal are per thread, so calls are counted per step
as in a serial run; progress lines carry the step's name (runbook.output.progress).
A finishing step starts the steps it unblocks from its own thread before it ends, so
some step thread is always alive until the run is over (a virtual clock that counts
them, bench/critical_path.py, never sees a gap).
"""

from __future__ import annotations

import threading

THREAD_PREFIX = "runbook step "


def waits_for(names: list[str], catalogue, config) -> dict[str, tuple[str, ...]]:
    """{step: the steps listed before it that must be done before it starts}."""
    edges: dict[str, tuple[str, ...]] = {}
    for index, name in enumerate(names):
        info = catalogue[name]
        needs, shares = set(info.needs(config)), set(info.shares)
        edges[name] = tuple(earlier for earlier in names[:index]
                            if earlier in needs or shares & set(catalogue[earlier].shares))
    return edges


class Overlap:
    """One overlapping run of `names` by `runner` (runbook.engine.runner.Runner, whose
    `run` makes it with parallel), collecting its StepResults."""

    def __init__(self, runner, names: list[str]):
        self.runner = runner
        self.names = list(names)
        self.waits = waits_for(self.names, runner.catalogue, runner.config)
        self.results: dict = {}            # {name: StepResult}
        self.running: dict[str, threading.Thread] = {}
        self.stopped = False            # a step failed or the operator interrupted
        self._changed = threading.Condition()

    def run(self, results: list) -> list:
        """Run the steps; their results replace what `results` holds after its
        current entries, in the listed order. Re-raises Ctrl-C once the running steps
        have stopped (Runner.interrupted is the first recorded `interrupted`)."""
        base, aws = len(results), self.runner.aws
        aws.interceptors.append(self._refuse_once_interrupted)
        try:
            with self.runner.progress.overlapping(self.names):
                try:
                    with self._changed:
                        self._start_ready()
                    self._wait_for_running()
                except KeyboardInterrupt:
                    self._interrupt()
        finally:
            results[base:] = self._in_order()
            if not self.running:
                aws.interceptors.remove(self._refuse_once_interrupted)
        if self.runner.stopping.is_set():
            # Steps that ended before their next wait or call are recorded as they ended.
            self.runner.interrupted = next(
                (r for r in results[base:] if r.status == "interrupted"), None)
            raise KeyboardInterrupt
        return results

    # -- starting and ending steps ------------------------------------------------------

    def _start_ready(self) -> None:
        """Start every step whose waits are over, in the listed order (under _changed)."""
        if self.stopped:
            return
        for name in self.names:
            if name in self.results or name in self.running:
                continue
            if not all(earlier in self.results for earlier in self.waits[name]):
                continue
            if self.runner.catalogue[name].module is None:
                self.results[name] = self.runner.skipped(name)
                continue
            thread = threading.Thread(target=self._work, args=(name,),
                                      name=THREAD_PREFIX + name, daemon=True)
            self.running[name] = thread
            thread.start()

    def _work(self, name: str) -> None:
        result = None
        try:
            result = self.runner.attempt(name)
        finally:
            with self._changed:
                if result is None:  # attempt itself broke (a progress line raised)
                    result = self.runner.not_run(name, f"step {name!r} stopped unexpectedly")
                    result.status, result.error_kind = "failed", "failure"
                self.results.setdefault(name, result)
                self.running.pop(name, None)
                if not result.ok:
                    self.stopped = True
                self._start_ready()
                self._changed.notify_all()

    def _wait_for_running(self) -> None:
        with self._changed:
            while self.running:
                self._changed.wait(timeout=1.0)

    # -- Ctrl-C -------------------------------------------------------------------------

    def _interrupt(self) -> None:
        """Stop the running steps at their next wait or call and wait for them; on a
        second Ctrl-C, stop waiting and record them interrupted as they are."""
        with self._changed:
            self.stopped = True
            still = [name for name in self.names if name in self.running]
        self.runner.stopping.set()
        self.runner.progress.line(f"interrupted: stopping {', '.join(still)} at the next AWS "
                                  "call or wait (Ctrl-C again not to wait)", fg="yellow")
        try:
            self._wait_for_running()
        except KeyboardInterrupt:
            with self._changed:
                for name in self.running:
                    result = self.runner.not_run(name, "interrupted by the operator")
                    result.status = "interrupted"
                    self.results[name] = result

    def _refuse_once_interrupted(self, service: str, operation: str, write: bool) -> None:
        """A ClientFactory interceptor: after Ctrl-C, a step's next AWS call is not sent."""
        if self.runner.stopping.is_set():
            raise KeyboardInterrupt

    def _in_order(self) -> list:
        """The results in the listed order. After a failure, the steps that never
        started are `not_run`; after Ctrl-C they are left out, as a serial run leaves
        them."""
        if self.runner.stopping.is_set():
            return [self.results[name] for name in self.names if name in self.results]
        return [self.results.get(name) or self.runner.not_run(name) for name in self.names]
