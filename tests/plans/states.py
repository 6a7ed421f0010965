"""How each step's plan cases describe what `read` found.

Each step has a module tests/plans/state_<step>.py (dashes as underscores) with
`state(step, data)`: the step's state from a case's "state", built through the step's own
pure assembly where it has one, so the cases exercise the code `read` runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path

STATES = {
    path.stem.removeprefix("state_").replace("_", "-"):
        importlib.import_module(f"tests.plans.{path.stem}").state
    for path in sorted(Path(__file__).parent.glob("state_*.py"))
}
