"""Domain errors, converted once at the CLI edge into a message and an exit code.

Exit code 2 means the operator has to fix something before anything can run: the
environment file, an argument, a missing prerequisite. Exit code 1 means a step ran
and failed. Every message says what to do next. Exit code 3 is not an error: `status
--live` found drift, so that a scheduled check can tell drift from a failure.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DRIFT = 3
EXIT_INTERRUPTED = 130


class RunbookError(Exception):
    """Base of every error runbook reports without a traceback."""

    exit_code = EXIT_FAILED


class BadInput(RunbookError):
    """The operator must change an input (file, flag, account) before retrying."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """The environment file is missing, unparseable or invalid.

    `problems` is a list of (field path, message, line or None); `path` is the file.
    """

    def __init__(self, path: str, problems: list[tuple[str, str, int | None]]):
        self.path = path
        self.problems = problems
        lines = []
        for field, message, line in problems:
            where = f"{path}:{line}" if line else path
            lines.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        super().__init__("\n".join(lines))


class PrerequisiteMissing(BadInput):
    """A step needs something an earlier phase or step provisions."""

    def __init__(self, step: str, missing: str, phase: str):
        self.step, self.missing, self.phase = step, missing, phase
        super().__init__(
            f"step {step!r} needs {missing}, which does not exist yet. "
            f"Run `runbook run --phase {phase}` first."
        )


class AccountMismatch(BadInput):
    def __init__(self, expected: str, actual: str):
        super().__init__(
            f"account_id: the environment file expects account {expected}, but the "
            f"credentials in use belong to account {actual}. Nothing was changed. "
            "Check AWS_PROFILE, or fix account_id in the environment file."
        )


class PlanError(BadInput):
    """The desired state cannot be reached from the current one without a human.

    Example: an adopted cluster that is unencrypted (encryption cannot be turned on in
    place). Nothing is changed; the message says what to do.
    """

    def __init__(self, step: str, resource: str, message: str):
        self.step, self.resource = step, resource
        super().__init__(f"step {step!r}, {resource}: {message}")


class OwnedElsewhere(PlanError):
    """A resource runbook would adopt, change or tag carries another environment's
    `runbook:env` tag. Two environments often share one account; neither may touch the
    other's resources, so the environment file must give this one its own name.
    runbook.preflight.ownership looks for these before a run's first write."""

    def __init__(self, step: str, resource: str, owner: str, env: str, field: str):
        self.owner, self.env, self.field = owner, env, field
        super().__init__(step, resource,
                         f"it belongs to environment {owner!r} (tag runbook:env={owner}), "
                         f"and environment {env!r} may not adopt, change or tag it. Give "
                         f"{env!r} its own name: change {field} in its environment file. "
                         "Nothing was changed.")


class StepFailed(RunbookError):
    """A step's AWS or database call failed while applying a change."""

    def __init__(self, step: str, resource: str, message: str):
        self.step, self.resource = step, resource
        super().__init__(f"step {step!r} failed on {resource}: {message}")


class Interrupted(RunbookError):
    exit_code = EXIT_INTERRUPTED

    def __init__(self, what: str = "run"):
        super().__init__(f"{what} interrupted; the sandbox and servers were stopped")


class ImpurePlan(RunbookError):
    """A step's plan made an AWS call. A plan is a pure function of what `read` returned
    (the engine refuses every call while it runs), so this is a defect in runbook."""

    def __init__(self, what: str, service: str, operation: str):
        super().__init__(f"{what} called {service}:{operation}; a plan may not call AWS. "
                         "This is a defect in runbook: move the call into the step's read.")
