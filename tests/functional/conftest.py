"""Fixtures of the step tests against in-process moto."""

from __future__ import annotations

import pytest
from moto import mock_aws

from runbook import config as config_mod
from tests.conftest import PROD_CONFIG


class Clock:
    """A clock that sleeping advances, so bounded waits end at once."""

    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


@pytest.fixture
def account():
    """An empty emulated AWS account for the test."""
    with mock_aws():
        yield


@pytest.fixture
def config():
    """config/prod.yaml, as loaded and validated by runbook."""
    return config_mod.load(PROD_CONFIG)


def run_steps(config, names, dsn=None, *, plan_only=False, upstream=None):
    """Run `names` with a fresh client factory, as a separate `runbook` invocation would:
    ({name: StepResult}, the factory). With `dsn`, a dry run whose database is `dsn`.
    `upstream`: {step: Outputs} taken as the outputs of steps that did not run (msk-
    cluster's, for a cluster made in moto: tests/msk_outputs.py)."""
    from runbook.aws.clients import ClientFactory
    from runbook.output.progress import Progress
    from runbook.sandbox import rds_proxy as sandbox_rds_proxy
    from runbook.steps import new_runner
    from tests.conftest import REGION

    # The in-process moto takes CreateDBProxy as the sandbox's does (step db-proxy is in
    # config/prod.yaml's a3).
    sandbox_rds_proxy.install()
    # ... and an MSK event source mapping as the sandbox's does (phase a5).
    from runbook.sandbox import kafka_mapping as sandbox_kafka_mapping

    sandbox_kafka_mapping.install()
    aws = ClientFactory(REGION)
    runner = new_runner(config, aws, Progress(quiet=True), dry_run=dsn is not None,
                    plan_only=plan_only, database_dsn=dsn, sleep=lambda s: None)
    runner.outputs.update(upstream or {})
    return {r.name: r for r in runner.run(names)}, aws
