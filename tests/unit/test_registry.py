"""The registry of functions is the one place a function is declared: its handler
folder, its config section, the step deploying it, who invokes it and how it logs in to
the database. Packaging, the config, `runbook invoke` and the steps' specs read it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from runbook import config as config_mod
from runbook.cli import cli
from runbook.functions import package, registry
from runbook.functions.deploy import function_spec
from runbook.steps import CATALOGUE
from runbook.database import rds_ca
from runbook.errors import PlanError
from runbook.steps.database import DatabaseOutputs
from runbook.steps.db_proxy import DbProxyOutputs
from runbook.steps.store_secrets import SecretsOutputs
from runbook.steps.vpc_integrate import IntegrateOutputs
from tests.conftest import PROD_CONFIG

ACCOUNT, REGION = "123456789012", "eu-central-1"


def test_each_entry_has_its_handler_folder_and_each_folder_an_entry():
    assert sorted(registry.FUNCTIONS) == sorted(package.function_names())
    for entry in registry.FUNCTIONS.values():
        assert (package.REPO / entry.folder / "handler.py").is_file()


def test_each_entry_is_deployed_by_a_step_of_the_catalogue():
    assert {f.step for f in registry.FUNCTIONS.values()} <= set(CATALOGUE)


def test_importing_it_loads_neither_boto3_nor_pydantic():
    code = ("import sys, runbook.functions.registry\n"
            "print(sorted(m for m in ('boto3', 'botocore', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_config_has_a_section_per_function_with_the_entrys_defaults():
    config = config_mod.load(PROD_CONFIG)
    assert set(registry.FUNCTIONS) <= set(type(config.lambdas).model_fields)
    for key, entry in registry.FUNCTIONS.items():
        field = type(config.lambdas).model_fields[key]
        assert field.is_required() == (entry.defaults is None)
        if entry.defaults:
            settings = config.lambdas.settings(key)
            assert (settings.memory_mb, settings.timeout_s) == entry.defaults


def test_invoke_help_lists_every_function_and_who_invokes_it():
    result = CliRunner().invoke(cli, ["invoke", "--help"])
    assert result.exit_code == 0
    for entry in registry.FUNCTIONS.values():
        assert entry.key in result.output
        assert entry.step in result.output
    assert "database.connect: lambda" in result.output
    short = CliRunner().invoke(cli, ["--help"]).output
    # The short help is cut after a line's worth.
    assert "Invoke FUNCTION (pre_signup, post_confirmation, db_migrate," in short


@pytest.mark.parametrize("name", ["post-confirmation", "post_confirmation"])
def test_a_function_is_found_by_its_key_with_dashes_or_underscores(name):
    assert registry.find(name) is registry.POST_CONFIRMATION
    assert registry.find("db-migrat") is None


def outputs():
    database = DatabaseOutputs.standing_in("matbakh_main")
    return (IntegrateOutputs("sg-lambda", "sg-endpoints", ("subnet-1", "subnet-2"), "vpc-1", {}),
            database, SecretsOutputs("arn:db-secret", "arn:app-secret"))


def test_how_each_function_logs_in_follows_its_entry_and_the_file(write_config):
    network, database, secrets = outputs()

    def spec(entry, config):
        return function_spec(entry, config, account=ACCOUNT, region=REGION, network=network,
                             database=database, secrets=secrets, pool_arn="arn:pool")

    def without_roles(data):
        del data["database"]["roles"]
        data["phases"]["a3"].remove("db-proxy")
    by_secret = config_mod.load(write_config(without_roles))
    assert spec(registry.PRE_SIGNUP, by_secret).environment == {}
    assert spec(registry.PRE_SIGNUP, by_secret).statements == ()
    for entry in (registry.POST_CONFIRMATION, registry.DB_MIGRATE):
        assert spec(entry, by_secret).environment == {"DB_SECRET_ARN": "arn:db-secret"}

    def by_iam(data):
        data["database"].update(auth="iam", roles={
            "writer": {"trigger": "post-confirmation"}})
    iam = config_mod.load(write_config(by_iam))
    assert spec(registry.POST_CONFIRMATION, iam).environment["DB_USER"] == "writer"
    assert spec(registry.DB_MIGRATE, iam).environment["DB_USER"] == database.master_username


def test_with_db_proxy_a_function_with_a_role_logs_in_through_the_proxy_and_no_secret():
    network, database, secrets = outputs()
    config = config_mod.load(PROD_CONFIG)
    assert registry.through_proxy(config)
    proxy = DbProxyOutputs("matbakh-prod-proxy", "arn:aws:rds:eu-central-1:1:db-proxy:prx-0abc",
                           "prx-0abc", "matbakh-prod-proxy.proxy-c1.eu-central-1.rds.amazonaws.com",
                           "sg-proxy", "arn:role", {})
    for entry, user in ((registry.POST_CONFIRMATION, "matbakh_post_confirmation"),
                        (registry.PROCESS_USER_SIGNUP, "lambda_writer")):
        got = function_spec(entry, config, account=ACCOUNT, region=REGION, network=network,
                            database=database, secrets=secrets, pool_arn="arn:pool", proxy=proxy)
        assert got.environment == {
            "DB_AUTH": "iam", "DB_HOST": proxy.endpoint, "DB_PORT": "5432",
            "DB_NAME": "matbakh_main", "DB_USER": user, "DB_SSLROOTCERT": rds_ca.LAYER_PATH}
        assert got.statements == ({
            "Sid": "ConnectThroughProxy", "Effect": "Allow", "Action": "rds-db:connect",
            "Resource": f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:prx-0abc/{user}"},)
    # db_migrate keeps the master login, straight to the cluster.
    migrate = function_spec(registry.DB_MIGRATE, config, account=ACCOUNT, region=REGION,
                            network=network, database=database, secrets=secrets, proxy=proxy)
    assert migrate.environment == {"DB_SECRET_ARN": "arn:db-secret"}


def test_through_the_proxy_a_function_without_a_role_is_refused_naming_the_field(write_config):
    network, database, secrets = outputs()

    def no_signup_role(data):
        del data["database"]["roles"]["lambda_writer"]
    config = config_mod.load(write_config(no_signup_role))
    proxy = DbProxyOutputs("p", "arn", "prx-0abc", "p.proxy-c1", "sg", "arn:role", {})
    with pytest.raises(PlanError, match="database.roles.*trigger: process-user-signup"):
        function_spec(registry.PROCESS_USER_SIGNUP, config, account=ACCOUNT, region=REGION,
                      network=network, database=database, secrets=secrets, proxy=proxy)


def test_only_a_trigger_gets_an_invoker_and_only_an_in_vpc_function_subnets():
    network, database, secrets = outputs()
    config = config_mod.load(PROD_CONFIG)
    specs = {key: function_spec(entry, config, account=ACCOUNT, region=REGION, network=network,
                                database=database, secrets=secrets, pool_arn="arn:pool")
             for key, entry in registry.FUNCTIONS.items()}
    assert specs["pre_signup"].invoker.statement_id == "runbook-cognito-pre-signup"
    assert specs["post_confirmation"].invoker.source_arn == "arn:pool"
    assert specs["db_migrate"].invoker is None
    assert specs["pre_signup"].subnet_ids is None and not specs["pre_signup"].layer
    assert specs["db_migrate"].subnet_ids == ("subnet-1", "subnet-2")
    assert specs["db_migrate"].tags["runbook:step"] == "fix-tables"


def test_db_migrate_is_deployed_only_with_connect_lambda(write_config):
    direct = config_mod.load(PROD_CONFIG)

    def through_lambda(data):
        data["database"]["connect"] = "lambda"
    assert not registry.DB_MIGRATE.deployed(direct)
    assert registry.DB_MIGRATE.deployed(config_mod.load(write_config(through_lambda)))
    assert registry.POST_CONFIRMATION.deployed(direct)


def test_the_sqs_consumer_is_in_the_vpc_with_no_invoker_and_its_own_role(write_config):
    network, database, secrets = outputs()
    entry = registry.PROCESS_USER_SIGNUP
    assert registry.find("process-user-signup") is entry
    assert entry.event_source == registry.SQS and entry.trigger is None
    assert entry.caller == "SQS event source mapping (step deploy-process-user-signup)"
    assert "process-user-signup" in registry.trigger_roles()

    def by_iam(data):
        data["database"].update(auth="iam", roles={
            "signup_writer": {"trigger": "process-user-signup"},
            "writer": {"trigger": "post-confirmation"}})
    def without_roles(data):
        del data["database"]["roles"]
        data["phases"]["a3"].remove("db-proxy")
    for config, login in ((config_mod.load(write_config(without_roles, name="plain")),
                           {"DB_SECRET_ARN": "arn:db-secret"}),
                          (config_mod.load(write_config(by_iam)), {"DB_USER": "signup_writer"})):
        spec = function_spec(entry, config, account=ACCOUNT, region=REGION, network=network,
                             database=database, secrets=secrets, pool_arn="arn:pool")
        assert spec.invoker is None and spec.layer
        assert spec.subnet_ids == ("subnet-1", "subnet-2")
        assert login.items() <= spec.environment.items()


def test_the_legacy_loader_is_fed_by_msk_outside_the_vpc_with_no_database():
    entry = registry.LEGACY_LOADER
    assert registry.find("legacy-loader") is entry
    assert entry.event_source == registry.MSK and entry.trigger is None
    assert entry.caller == "MSK event source mapping (step deploy-legacy-loader)"
    assert entry.login == registry.NO_DATABASE and not entry.in_vpc and not entry.layer
    assert "legacy-loader" not in registry.trigger_roles()
    network, database, secrets = outputs()
    spec = function_spec(entry, config_mod.load(PROD_CONFIG), account=ACCOUNT, region=REGION,
                         network=network, database=database, secrets=secrets,
                         environment={"HASH_TABLE": "hashes"})
    assert spec.subnet_ids is None and spec.security_group_ids == ()
    assert spec.environment == {"HASH_TABLE": "hashes"} and spec.statements == ()
    assert spec.invoker is None
    assert (spec.memory_mb, spec.timeout_s) == (256, 60)
