"""Step migration-test's plan cases: as integration-test's (state_integration_test)."""

from __future__ import annotations

from tests.plans.state_integration_test import state

__all__ = ["state"]
