"""`runbook status --live`: plan every step read-only against the account and call what
the plans would change drift.

A converged step plans nothing, so any pending change means the account no longer matches
the environment file: someone removed a rule, a tag, a route, or the step never ran.
What a step cannot show is said per step instead of failing the whole check: a step whose
plan failed (say, a database that is reachable only from inside the VPC) is
`cannot_plan` with the reason, a step that consumes it is `not_planned`, a step not built
in this version is `skipped`, and the changes of a step that is not idempotent (it acts
on every run, like the integration test) are `not_compared`: they are not drift.

A step whose outputs report its targets' health (db-proxy: the RDS Proxy's targets,
AVAILABLE or why not) has it shown under the steps, as read: health is not drift.

Exit code: 3 (EXIT_DRIFT) when any step drifted, whatever else happened, so that a
scheduled check can alert on it; otherwise the plan's: 0 when every step was planned,
or 1 or 2 when a step could not be.
"""

from __future__ import annotations

from runbook.output import render
from runbook.errors import EXIT_DRIFT

# A plan's state -> the word status uses for it.
_WORDS = {"changes": "drift", "unchanged": "in_sync"}

LABELS = {
    **render.LABELS,
    "drift": ("drift: {counts}", "bold red"),
    "in_sync": ("in sync", "green"),
    "not_compared": ("not compared: not idempotent, it acts on every run", "dim"),
}


def drift_data(results, *, env: str, account: str | None, region: str,
               plan_exit_code: int) -> dict:
    """What `runbook status --live --json` prints; README "Live use" documents the keys."""
    steps = []
    for result in results:
        step = render.step_data(result)
        step["state"] = _WORDS.get(step["state"], step["state"])
        if step["state"] == "drift" and not result.idempotent:
            step["state"] = "not_compared"
        health = (result.outputs or {}).get("target_health")
        if health:
            step["health"] = dict(health)
        steps.append(step)
    drifted = [step["name"] for step in steps if step["state"] == "drift"]
    return {
        "env": env, "account": account, "region": region,
        "drift": bool(drifted), "drifted_steps": drifted,
        "exit_code": EXIT_DRIFT if drifted else plan_exit_code,
        "steps": steps,
    }


def print_drift(data: dict, out) -> None:
    render.print_line(out, f"runbook status --live: {data['env']} in account "
                      f"{data['account']}, {data['region']}; read-only plan of "
                      f"{len(data['steps'])} steps", "bold")
    render.print_steps(out, data["steps"], LABELS)
    out.print()
    for step in data["steps"]:
        for target, health in (step.get("health") or {}).items():
            render.print_line(out, f"{step['name']}: target {target} {health}",
                              "green" if health == "AVAILABLE" else "yellow")
    drifted = data["drifted_steps"]
    if drifted:
        first = drifted[0]
        render.print_line(out, f"Drift in {len(drifted)} step{'s' * (len(drifted) != 1)}: "
                          f"{', '.join(drifted)}. `runbook plan --step {first}` shows the "
                          f"changes and `runbook run --step {first}` makes them.", "bold red")
    else:
        in_sync = sum(step["state"] == "in_sync" for step in data["steps"])
        render.print_line(out, f"No drift: {in_sync} step{'s' * (in_sync != 1)} in sync.",
                          "bold green")
    unknown = [s["name"] for s in data["steps"] if s["state"] in ("cannot_plan", "not_planned")]
    if unknown:
        render.print_line(out, f"Not known, since not planned: {', '.join(unknown)}.", "yellow")
