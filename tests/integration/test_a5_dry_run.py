"""Phase a5 in the sandbox: `runbook run --phase a5 --dry-run` from an empty account
(a1..a5, then the verify pass), and a5's steps on a legacy database with users to skip,
after which the hash table is read back against the legacy database itself."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import boto3
import psycopg
import pytest

from runbook import config as config_mod
from runbook.lambda_runtime.legacy_hashes import LegacyHash
from tests.conftest import read_report

A5 = ["hash-table", "msk-cluster", "deploy-legacy-loader", "stage-legacy-users"]
EXTRA = Path(__file__).parents[1] / "database" / "legacy_users_extra.sql"
# What the fixture's users hold (legacy_supabase.sql): each is staged exactly so.
FIXTURE_USERS = {
    "legacy.owner@example.com": ("$2a$10$P9K.6PR42kIzhRUxj/inYOnj5IBu2CrzaSWeCKmRuSu8VEvpqm49O",
                                 {"display_name": "Legacy Owner", "role": "user",
                                  "language": "de"}),
    "anna.schmidt@example.com": ("$2a$10$FWUK2euidU4xuNnM7CukDe3wO7mZ05e9Hol2jcSAmWanUpZoSsWPC",
                                 {"display_name": "Anna Schmidt", "role": "user",
                                  "language": "de"}),
    "karim.haddad@example.com": ("$2a$10$YZC3A82zPycCp8oGy0Kjt.CKDpFJu3XAD5Kh8JqxLQZRvfhGz.aZe",
                                 {"display_name": "Karim Haddad", "role": "admin",
                                  "language": "en"}),
}


@pytest.mark.slow
def test_dry_run_of_a5_stages_every_legacy_user_and_the_verify_pass_stages_none(
        workdir, cli, monkeypatch):
    monkeypatch.delenv("LEGACY_DATABASE_URL", raising=False)
    result = cli("run", "--phase", "a5", "--dry-run")

    assert result.exit_code == 0, result.output
    report = read_report(workdir, "a5", dry_run=True)
    assert report["status"] == "ok"
    names = [s["name"] for s in report["steps"]]
    assert names[-4:] == A5 and all(s["status"] == "ok" for s in report["steps"])
    steps = {s["name"]: s for s in report["steps"]}
    staged = steps["stage-legacy-users"]["outputs"]
    assert {k: staged[k] for k in ("source", "users", "planned", "produced", "stored",
                                   "skipped")} == {
        "source": "the sandbox's legacy database", "users": 3, "planned": 3, "produced": 3,
        "stored": 3, "skipped": {}}
    cluster = steps["msk-cluster"]["outputs"]
    assert cluster["bootstrap_public"].startswith("127.0.0.1:")
    mapping = steps["deploy-legacy-loader"]["outputs"]
    assert mapping["consumer_group"] == "matbakh-prod-legacy-user-hashes-loader"

    # The verify pass: every a5 step again, no write, and nothing staged.
    verify = {s["name"]: s for s in report["verify_pass"]["steps"]}
    assert report["verify_pass"]["writes"] == 0
    assert list(verify) == A5 and all(s["changes"] == [] for s in verify.values())
    assert (verify["stage-legacy-users"]["outputs"]["planned"],
            verify["stage-legacy-users"]["outputs"]["produced"]) == (0, 0)

    simulated = " ".join(report["simulated"])
    assert "MSK control plane" in simulated and "Tansu" in simulated
    assert "legacy_supabase.sql" in simulated

    # No hash and no whole address in what the operator sees or keeps.
    for text in (result.output, json.dumps(report)):
        assert "$2a$" not in text
        for email in FIXTURE_USERS:
            assert email not in text
        assert not re.search(r"[\w.+-]+@example\.com", text.replace("***@example.com", ""))


@pytest.mark.slow
def test_a5_on_a_legacy_database_with_users_to_skip_stores_exactly_the_others(
        legacy_dsn, monkeypatch, tmp_path):
    """a5's steps (after network, which msk-cluster needs) in a sandbox, reading the
    operator's legacy database through LEGACY_DATABASE_URL: the fixture plus users the
    migration must skip. The table is then read back and compared with the database."""
    from runbook.aws.clients import ClientFactory
    from runbook.functions.invoke import sandbox_invoker
    from runbook.output.progress import Progress
    from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
    from runbook.steps import new_runner
    from tests.conftest import PROD_CONFIG

    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute(EXTRA.read_text())
    monkeypatch.setenv("LEGACY_DATABASE_URL", legacy_dsn)
    config = config_mod.load(PROD_CONFIG)
    progress = Progress(quiet=True)

    with Sandbox(progress, region=config.region, invoker=sandbox_invoker) as sandbox:
        aws = ClientFactory(config.region, endpoint_url=sandbox.aws_url,
                            credentials=SANDBOX_CREDENTIALS)
        results = new_runner(config, aws, progress, dry_run=True,
                             sleep=lambda s: time.sleep(min(s, 0.2)),
                             **sandbox.step_context()).run(["network", *A5])
        assert [(r.name, r.status) for r in results] == [
            (name, "ok") for name in ["network", *A5]], [r.error for r in results]
        outputs = results[-1].outputs
        table = boto3.client("dynamodb", region_name=config.region,
                             endpoint_url=sandbox.aws_url, **SANDBOX_CREDENTIALS)
        items = [item for page in table.get_paginator("scan").paginate(
            TableName=config.legacy.hash_table) for item in page["Items"]]

    assert outputs["skipped"] == {"no_password_hash": 2, "email_not_confirmed": 1,
                                  "no_email": 1, "unsupported_hash_format": 1}
    stored = {user.email: (user.hash, user.profile)
              for user in (LegacyHash.from_item(item) for item in items)}
    with psycopg.connect(legacy_dsn) as conn:
        argon = conn.execute("SELECT encrypted_password FROM auth.users "
                             "WHERE email = 'Argon.User@Example.COM'").fetchone()[0]
    assert stored == {**FIXTURE_USERS,
                      "argon.user@example.com": (argon, {"display_name": "Argon User"})}
    assert (outputs["planned"], outputs["produced"], outputs["stored"]) == (4, 4, 4)
