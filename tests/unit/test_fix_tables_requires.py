"""What `--step fix-tables` brings with it: vpc-integrate only with database.connect:
lambda, whose db_migrate function runs in vpc-integrate's subnets."""

from __future__ import annotations

from runbook import app
from runbook import config as config_mod
from runbook.steps import CATALOGUE


def load(write_config, connect: str):
    return config_mod.load(write_config(lambda d: d["database"].update(connect=connect)))


def test_direct_fix_tables_needs_only_the_database_and_its_secret(write_config):
    config = load(write_config, "direct")
    assert CATALOGUE["fix-tables"].needs(config) == ("database", "store-secrets")
    assert app.resolve(config, None, ["fix-tables"]).through == [
        "network", "database", "store-secrets", "fix-tables"]


def test_fix_tables_through_lambda_needs_vpc_integrate_too(write_config):
    config = load(write_config, "lambda")
    assert CATALOGUE["fix-tables"].needs(config) == ("database", "store-secrets",
                                                      "vpc-integrate")
    assert app.resolve(config, None, ["fix-tables"]).through == [
        "network", "database", "store-secrets", "vpc-integrate", "fix-tables"]
