"""Fixtures of the resource-layer tests against in-process moto."""

from __future__ import annotations

import pytest
from moto import mock_aws

from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from tests.conftest import REGION


@pytest.fixture
def aws():
    """An empty emulated account, and a client factory that counts calls."""
    with mock_aws():
        yield ClientFactory(REGION)


@pytest.fixture
def api(aws):
    """The resources' seam to that account; retries do not sleep."""
    return Api(aws, sleep=lambda s: None)
