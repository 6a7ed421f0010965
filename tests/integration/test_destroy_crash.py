"""A destroy failed at its writes and run again ends with nothing of the environment
left (runbook.sandbox.destroy_sweep). The sample here makes every fourth write of a
whole a1..a5 destroy a point; bench/destroy_sweep.py makes every write one."""

from __future__ import annotations

import pytest

from runbook import config as config_mod
from runbook.output.progress import Progress
from runbook.resources.base import DeleteOptions
from runbook.sandbox import destroy_sweep, sweep
from runbook.sandbox.stack import Sandbox
from tests.conftest import REPO

pytestmark = pytest.mark.slow

STAGING_CONFIG = REPO / "config" / "staging.yaml"


def test_a_destroy_failed_at_any_write_and_run_again_leaves_nothing():
    config = config_mod.load(STAGING_CONFIG)
    with Sandbox(Progress(quiet=True)) as box:
        account = sweep.Account.of(box)
        account.reset()
        built = sweep.run(config, account)
        assert all(r.ok for r in built), [f"{r.name}: {r.error}" for r in built if not r.ok]

        result = destroy_sweep.sweep(config, account, DeleteOptions(final_snapshot_stamp="sweep"),
                                     stride=4)

    assert result.stuck is None, result.stuck
    assert result.left == {}
    assert result.verify_writes == 0
    kinds = {a.kind for a in result.attempts}
    assert kinds == {"throttling", "response-lost", "response-lost-retried"}
    # Every point failed a write of its own, and the destroys went through all of them.
    assert all(a.call for a in result.attempts)
    calls = {a.call.split(":")[1] for a in result.attempts}
    assert len(result.attempts) >= 20, len(result.attempts)
    assert any(c.startswith("Delete") for c in calls), calls
