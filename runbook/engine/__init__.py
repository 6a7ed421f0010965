"""The engine: steps read, plan as data, and apply; the runner orders them and counts
every AWS call. It knows steps only through the catalogue it is given."""

from runbook.engine.plan import UNKNOWN, Change, Unknown, diff_field, is_known
from runbook.engine.runner import Runner, StepResult, explain
from runbook.engine.step import Inputs, Outputs, Step, StepContext

__all__ = ["UNKNOWN", "Change", "Inputs", "Outputs", "Runner", "Step", "StepContext",
           "StepResult", "Unknown", "diff_field", "explain", "is_known"]
