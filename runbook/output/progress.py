"""What a person sees while a run goes on: a line per step, per change, and the
elapsed time while waiting on a slow AWS state. Colour only on a terminal (click
strips styles otherwise).

`per_step=False` keeps only the other lines (the sandbox starting, waits): for
commands such as `plan` and `status --live` that print the steps themselves at the end.

While steps overlap (a live run, runbook.engine.schedule) each line a step prints
starts with the step's name, as Terraform prefixes a resource's lines with its address,
so that one step's lines can be followed among the others. The step is the calling
thread's: each overlapping step runs in a thread of its own.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import click

from runbook.aws.retry import format_duration

_STATUS_COLOUR = {"ok": "green", "failed": "red", "not_run": "yellow", "interrupted": "yellow"}
_ACTION_COLOUR = {"create": "green", "update": "yellow", "delete": "red"}


class Progress:
    def __init__(self, *, quiet: bool = False, wait_report_every_s: float = 30.0,
                 clock=time.monotonic, err: bool = False, per_step: bool = True):
        self.quiet = quiet
        self.per_step = per_step
        self.err = err
        self.every = wait_report_every_s
        self.clock = clock
        self._last_wait: dict[str, float] = {}
        self._thread = threading.local()   # .step: the step the calling thread runs
        self._width = 0                    # of the step-name prefix; 0: steps do not overlap
        self._echo = threading.Lock()

    @property
    def current_step(self) -> str | None:
        """The step the calling thread runs, or None."""
        return getattr(self._thread, "step", None)

    @current_step.setter
    def current_step(self, name: str | None) -> None:
        self._thread.step = name

    @contextmanager
    def overlapping(self, names: list[str]):
        """Prefix each step's lines with its name while the block runs."""
        self._width = max(map(len, names), default=0)
        try:
            yield
        finally:
            self._width = 0

    def line(self, text: str = "", **style) -> None:
        if self.quiet:
            return
        text = click.style(text, **style) if style else text
        step = self.current_step
        if self._width and step:
            text = f"{step:<{self._width}} | {text}"
        with self._echo:
            click.echo(text, err=self.err)

    def step_started(self, name: str, *, plan_only: bool = False) -> None:
        self.current_step = name
        if self.per_step:
            self.line(f"{'plan' if plan_only else 'step'} {name}", bold=True)

    def step_skipped(self, name: str, reason: str) -> None:
        if not self.per_step:
            return
        # Said by whichever thread found the step's turn: under the skipped step's name.
        previous, self.current_step = self.current_step, name
        try:
            self.line(f"skip {name}: {reason}", fg="yellow")
        finally:
            self.current_step = previous

    def change(self, change) -> None:
        if self.per_step:
            self.line("  " + click.style(change.describe(), fg=_ACTION_COLOUR.get(change.action)))

    def waiting(self, what: str, elapsed: float) -> None:
        last = self._last_wait.get(what)
        if last is None or elapsed - last >= self.every:
            self._last_wait[what] = elapsed
            self.line(f"  waiting for {what} ... {format_duration(elapsed)}", dim=True)

    def step_done(self, result) -> None:
        try:
            if self.per_step:
                self._summary(result)
        finally:
            self.current_step = None

    def _summary(self, result) -> None:
        calls = result.api_calls
        if result.status == "ok":
            what = f"{result.applied} change(s) applied" if result.changed else (
                f"{len(result.changes)} change(s) planned" if result.changes else "unchanged")
        else:
            what = result.status.replace("_", " ")
        self.line(f"  {click.style(result.status, fg=_STATUS_COLOUR.get(result.status))} "
                  f"{result.name}: {what}; {calls['read']} reads, {calls['write']} writes, "
                  f"{result.duration_ms / 1000:.1f}s")
        if result.error:
            self.line(f"  {result.error}", fg="red")
