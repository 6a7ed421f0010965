"""`runbook status --live` shows the RDS Proxy's targets' health from db-proxy's outputs,
as read; health is not drift. No I/O."""

from __future__ import annotations

import io

from rich.console import Console

from runbook.engine import StepResult
from runbook.errors import EXIT_OK
from runbook.output import drift


def printed(data: dict) -> str:
    out = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None,
                  highlight=False)
    drift.print_drift(data, out)
    return out.file.getvalue()


def test_status_live_shows_each_proxy_targets_health_and_why_one_is_unavailable():
    health = {"tracked_cluster matbakh-prod": "AVAILABLE",
              "rds_instance matbakh-prod-1": "UNAVAILABLE (AUTH_FAILURE: IAM authentication "
                                             "failed)"}
    results = [StepResult("network", "a1"),
               StepResult("db-proxy", "a3", outputs={"proxy_name": "matbakh-prod-proxy",
                                                      "target_health": health})]
    data = drift.drift_data(results, env="prod", account="123456789012",
                            region="eu-central-1", plan_exit_code=EXIT_OK)
    assert data["drift"] is False and data["exit_code"] == EXIT_OK
    assert data["steps"][1]["health"] == health and "health" not in data["steps"][0]
    text = printed(data)
    assert "db-proxy: target tracked_cluster matbakh-prod AVAILABLE" in text
    assert ("db-proxy: target rds_instance matbakh-prod-1 UNAVAILABLE (AUTH_FAILURE: IAM "
            "authentication failed)") in text
