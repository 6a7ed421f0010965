"""Fixtures of the step tests against in-process moto."""

from __future__ import annotations

import pytest
from moto import mock_aws

from runbook import config as config_mod
from tests.conftest import PROD_CONFIG


@pytest.fixture
def account():
    """An empty emulated AWS account for the test."""
    with mock_aws():
        yield


@pytest.fixture
def config():
    """config/prod.yaml, as loaded and validated by runbook."""
    return config_mod.load(PROD_CONFIG)
