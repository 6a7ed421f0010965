"""A whole `runbook run --phase a5 --dry-run` (a1..a5: the three tests included) leaks
nothing.

No generated secret (the DB password, the JWT secret), no password, token or whole
e-mail address of a test's user, no password hash or whole address of a legacy user
(the fixture's, staged through MSK, and migration-test's own, whose password the
UserMigration trigger sees in its event) appears in what the run printed, in any
file it wrote under reports/ (the reports, their history, the journal), or in any log
line the sandbox captured: every event of every CloudWatch Logs group and stream in its
moto server (the handlers' output, written there by the local invoker), the embedded
PostgreSQL's server log, and every record Python's logging emitted.

The values are observed from inside the run, because the sandbox is gone when the
command returns: just before the sandbox is torn down, the secrets are read from its
Secrets Manager and the log events from its CloudWatch Logs, and the test user's
password, address and tokens are recorded where the integration test makes or gets
them. The test itself never shows a value: a finding names the source and the kind of
secret only.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field

import boto3
import pytest

from runbook import config as config_mod
from runbook.sandbox.cognito import SandboxCognito
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from runbook.steps import integration_test, migration_test
from tests.conftest import FIXTURES, PROD_CONFIG, REGION, no_real_aws

PRE_SIGNUP_LOGS = "/aws/lambda/matbakh-cognito-pre-signup"
POST_CONFIRMATION_LOGS = "/aws/lambda/matbakh-cognito-post-confirmation"
USER_MIGRATION_LOGS = "/aws/lambda/matbakh-cognito-user-migration"
LEGACY_SQL = FIXTURES / "legacy_supabase.sql"


@dataclass
class Observed:
    """What the run printed and wrote, and what the test saw from inside it."""

    exit_code: int = -1
    stdout: str = ""
    stderr: str = ""
    logging: str = ""                       # records emitted through Python's logging
    reports: dict[str, str] = field(default_factory=dict)       # path -> text
    secrets: dict[str, dict] = field(default_factory=dict)      # secret name -> value
    log_streams: dict[str, list[str]] = field(default_factory=dict)  # group stream -> messages
    postgres_log: str | None = None         # the embedded server's log, when it has one
    passwords: list[str] = field(default_factory=list)  # what new_password generated
    signed_up: list[tuple[str, str]] = field(default_factory=list)  # (address, password)
    signed_in: list[str] = field(default_factory=list)  # addresses, as typed
    subs: list[str] = field(default_factory=list)
    tokens: list[dict] = field(default_factory=list)
    legacy_passwords: list[str] = field(default_factory=list)  # migration-test's
    legacy_hashes: list[str] = field(default_factory=list)     # and their bcrypt hashes

    def __repr__(self) -> str:
        # pytest shows a failing test's arguments: counts only, never a value.
        return (f"Observed(exit_code={self.exit_code}, {len(self.reports)} report files, "
                f"{len(self.log_streams)} log streams, {len(self.secrets)} secrets, "
                f"{len(self.signed_up)} sign-ups, {len(self.tokens)} token sets, "
                f"{len(self.legacy_hashes)} legacy test users)")

    def sources(self) -> dict[str, str]:
        """Every text the scan reads, by a name that says where it came from."""
        out = {"stdout": self.stdout, "stderr": self.stderr, "Python logging": self.logging}
        out.update({f"report file {path}": text for path, text in self.reports.items()})
        out.update({f"CloudWatch Logs {name}": "\n".join(messages)
                    for name, messages in self.log_streams.items()})
        if self.postgres_log is not None:
            out["PostgreSQL server log"] = self.postgres_log
        return out


@dataclass(frozen=True)
class Finding:
    source: str
    kind: str


def scan(sources: dict[str, str], secrets: dict[str, list[str]]) -> list[Finding]:
    """Where each kind of secret appears, also JSON-escaped or URL-encoded."""
    found = []
    for source, text in sources.items():
        for kind, values in secrets.items():
            if any(form in text for value in values for form in _forms(value)):
                found.append(Finding(source, kind))
    return found


def _forms(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
            urllib.parse.quote_plus(value)}


def secrets_of(seen: Observed, config) -> dict[str, list[str]]:
    """Each kind of secret the run must not show, with every value of that kind."""
    db, app = seen.secrets[config.secrets.db], seen.secrets[config.secrets.app_config]
    kinds = {
        f"DB password (secret {config.secrets.db})": [db["password"]],
        f"JWT secret (secret {config.secrets.app_config})": [app["jwt_secret"]],
        "test user's password": sorted({*seen.passwords, *(p for _, p in seen.signed_up),
                                        *seen.legacy_passwords}),
        "test user's e-mail address": sorted({*(address for address, _ in seen.signed_up),
                                              *(f(a) for a in seen.signed_in
                                                for f in (str, str.lower, str.upper))}),
        "legacy test user's password hash": list(seen.legacy_hashes),
        "legacy user's password hash": legacy_fixture("hashes"),
        "legacy user's e-mail address": legacy_fixture("addresses"),
    }
    for name, key in (("ID token", "IdToken"), ("access token", "AccessToken"),
                      ("refresh token", "RefreshToken")):
        kinds[name] = [t[key] for t in seen.tokens]
        # A token cut short still shows its signature: look for that part alone too.
        kinds[f"{name} signature"] = [t[key].rsplit(".", 1)[1] for t in seen.tokens
                                      if t[key].count(".") == 2]
    return {kind: values for kind, values in kinds.items() if values}


def legacy_fixture(what: str) -> list[str]:
    """The legacy users' hashes, or addresses, in tests/fixtures/legacy_supabase.sql: the
    users stage-legacy-users sends through MSK in a dry run."""
    text = LEGACY_SQL.read_text()
    if what == "hashes":
        return sorted(set(re.findall(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", text)))
    return sorted(set(re.findall(r"'([\w.+-]+@example\.com)'", text)))


# -- the run, observed from inside -------------------------------------------------------

def _snapshot(sandbox: Sandbox, seen: Observed, config) -> None:
    """Read the sandbox's secrets and every log event while its moto server still runs."""
    def client(service):
        return boto3.client(service, region_name=REGION, endpoint_url=sandbox.aws_url,
                            **SANDBOX_CREDENTIALS)

    sm = client("secretsmanager")
    for name in (config.secrets.db, config.secrets.app_config):
        seen.secrets[name] = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    logs = client("logs")
    for page in logs.get_paginator("describe_log_groups").paginate():
        for group in page["logGroups"]:
            name = group["logGroupName"]
            for streams in logs.get_paginator("describe_log_streams").paginate(
                    logGroupName=name):
                for stream in streams["logStreams"]:
                    seen.log_streams[f"{name} {stream['logStreamName']}"] = _events(
                        logs, name, stream["logStreamName"])
    server_log = sandbox.workdir / "pgdata" / "log" if sandbox.workdir else None
    if server_log is not None and server_log.is_file():
        seen.postgres_log = server_log.read_text(errors="replace")


def _events(logs, group: str, stream: str) -> list[str]:
    messages, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(logGroupName=group, logStreamName=stream,
                                   startFromHead=True, **kwargs)
        messages += [event["message"] for event in page["events"]]
        if not page["events"] or page.get("nextForwardToken") in (None, token):
            return messages
        token = page["nextForwardToken"]


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> Observed:
    """`runbook run --phase a5 --dry-run` in-process, in a fresh working directory,
    with the seams above recording what the run generated and held."""
    from runbook.cli import main

    config = config_mod.load(PROD_CONFIG)
    seen = Observed()
    workdir = tmp_path_factory.mktemp("leak-scan")
    (workdir / "config").mkdir()
    (workdir / "config" / "prod.yaml").write_text(PROD_CONFIG.read_text())

    exit_sandbox = Sandbox.__exit__
    new_password = integration_test.new_password
    legacy_hash = migration_test.legacy_hash
    sign_up, sign_in = SandboxCognito.sign_up, SandboxCognito.sign_in

    def exit_after_snapshot(self, *exc):
        try:
            _snapshot(self, seen, config)
        finally:
            exit_sandbox(self, *exc)

    def recorded_password(min_length):
        seen.passwords.append(new_password(min_length))
        return seen.passwords[-1]

    def recorded_sign_up(self, email, password, attributes=None):
        seen.signed_up.append((email, password))
        result = sign_up(self, email, password, attributes)
        seen.subs.append(result["UserSub"])
        return result

    def recorded_legacy_hash(password):
        seen.legacy_passwords.append(password)
        seen.legacy_hashes.append(legacy_hash(password))
        return seen.legacy_hashes[-1]

    def recorded_sign_in(self, email, password, **flow):
        seen.signed_in.append(email)
        result = sign_in(self, email, password, **flow)
        seen.tokens.append(dict(result))
        return result

    records = _Records()
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        no_real_aws(mp)
        mp.chdir(workdir)
        mp.setattr(Sandbox, "__exit__", exit_after_snapshot)
        mp.setattr(integration_test, "new_password", recorded_password)
        mp.setattr(migration_test, "new_password", recorded_password)
        mp.setattr(migration_test, "legacy_hash", recorded_legacy_hash)
        mp.setattr(SandboxCognito, "sign_up", recorded_sign_up)
        mp.setattr(SandboxCognito, "sign_in", recorded_sign_in)
        root = logging.getLogger()
        root.addHandler(records)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(["run", "--phase", "a5", "--dry-run"])
                except SystemExit as exc:
                    seen.exit_code = exc.code if isinstance(exc.code, int) else 1
        finally:
            root.removeHandler(records)
    seen.stdout, seen.stderr, seen.logging = out.getvalue(), err.getvalue(), records.text()
    reports = workdir / "reports"
    seen.reports = {str(p.relative_to(workdir)): p.read_text(errors="replace")
                    for p in sorted(reports.rglob("*")) if p.is_file()}
    return seen


class _Records(logging.Handler):
    """Every record of every logger at WARNING and above: what an operator would see
    on stderr, had the run's logging no handler of its own."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


# -- the tests -----------------------------------------------------------------------------

def test_observed_values_are_real_and_were_used_by_the_run(observed):
    """The values the scan looks for are the run's own. Comparisons are made into
    booleans first, so that a failure shows no value."""
    config = config_mod.load(PROD_CONFIG)
    assert observed.exit_code == 0, "the dry run failed; see its report"
    # integration-test and registration-test sign up (a3, a4); migration-test's user
    # signs in with a wrong password, then twice with the right one (a5).
    assert len(observed.signed_up) == 2 and len(observed.passwords) == 3
    assert len(observed.signed_in) == 4 and len(observed.tokens) == 3
    assert len(observed.legacy_passwords) == len(observed.legacy_hashes) == 1
    (address, password), tokens = observed.signed_up[0], observed.tokens[0]
    generated = password == observed.passwords[0]
    assert generated, "the test user signed up with the password new_password generated"
    a5 = json.loads(observed.reports["reports/prod/dry-run/a5.json"])
    steps = {step["name"]: step for step in a5["steps"]}
    run_id = steps["integration-test"]["outputs"]["run_id"]
    named = address == f"runbook-it+{run_id}@example.com"
    assert named, "the test user's address is runbook-it+<the report's run id>@example.com"
    claims = json.loads(_b64(tokens["IdToken"].split(".")[1]))
    issued = claims["sub"] == observed.subs[0]
    assert issued, "the ID token was issued to the test user (its sub)"
    legacy = observed.legacy_passwords[0]
    made = (legacy.startswith(observed.passwords[2]) and
            observed.legacy_hashes[0].startswith("$2a$10$") and
            observed.signed_in[-1].lower().startswith(
                f"runbook-it+{steps['migration-test']['outputs']['run_id']}@"))
    assert made, "migration-test's user, password and hash are the ones the run used"
    assert all(c["status"] == "ok" for c in steps["migration-test"]["checks"])
    stored = {name: bool(value.get(key)) for name, value, key in (
        (config.secrets.db, observed.secrets[config.secrets.db], "password"),
        (config.secrets.app_config, observed.secrets[config.secrets.app_config], "jwt_secret"))}
    assert stored == {"matbakh-db-postgres": True, "matbakh-app-config": True}
    secrets = secrets_of(observed, config)
    short = [kind for kind, values in secrets.items() if any(len(v) < 12 for v in values)]
    assert short == [], "too short to scan for without false hits"
    assert {"DB password (secret matbakh-db-postgres)",
            "JWT secret (secret matbakh-app-config)", "test user's password",
            "test user's e-mail address", "ID token", "access token",
            "refresh token", "legacy test user's password hash",
            "legacy user's password hash", "legacy user's e-mail address"} <= set(secrets)
    assert len(secrets["legacy user's password hash"]) == 3


def test_scan_covers_reports_journal_and_every_log_the_sandbox_captured(observed):
    files = set(observed.reports)
    assert {"reports/prod/dry-run/a5.json", "reports/prod/dry-run/migration-test.json"} <= files
    assert any(re.fullmatch(r"reports/prod/dry-run/history/a5-.*\.json", f) for f in files)
    assert any(re.fullmatch(r"reports/prod/dry-run/journal/a5-.*\.jsonl", f) for f in files)
    groups = {name.split(" ", 1)[0] for name in observed.log_streams}
    assert {PRE_SIGNUP_LOGS, POST_CONFIRMATION_LOGS, USER_MIGRATION_LOGS} <= groups
    # The trigger that saw the legacy test user's password logged both its sign-ins.
    migration = [m for name, messages in observed.log_streams.items()
                 if name.startswith(USER_MIGRATION_LOGS) for m in messages]
    assert any("User migrated" in m for m in migration)
    assert any("User migration refused" in m for m in migration)
    # The handlers' lines about this very sign-up are among the lines scanned.
    sub = observed.subs[0]
    lines = [m for name, messages in observed.log_streams.items()
             if name.startswith(POST_CONFIRMATION_LOGS) for m in messages]
    assert any("Profile created/updated" in m and sub in m for m in lines)
    assert any("Sign-up accepted" in m for name, messages in observed.log_streams.items()
               if name.startswith(PRE_SIGNUP_LOGS) for m in messages)
    assert "step integration-test" in observed.stdout and "step migration-test" in observed.stdout
    sources = observed.sources()
    print(f"\nleak scan: {len(sources)} sources, "
          f"{sum(t.count(chr(10)) + 1 for t in sources.values())} lines: "
          f"stdout {observed.stdout.count(chr(10))} lines, stderr "
          f"{observed.stderr.count(chr(10))} lines, {len(observed.reports)} report files "
          f"({sum(t.count(chr(10)) + 1 for t in observed.reports.values())} lines), "
          f"{len(groups)} log groups / {len(observed.log_streams)} streams / "
          f"{sum(len(m) for m in observed.log_streams.values())} events, PostgreSQL log "
          f"{'scanned' if observed.postgres_log is not None else 'none (RUNBOOK_PG_DSN)'}")


def test_scan_finds_each_kind_of_secret_planted_in_a_file(observed, tmp_path):
    secrets = secrets_of(observed, config_mod.load(PROD_CONFIG))
    for kind, values in secrets.items():
        planted = tmp_path / "planted.json"
        planted.write_text(json.dumps({"note": "written by mistake", "value": values[0]}))
        found = scan({str(planted): planted.read_text()}, secrets)
        assert Finding(str(planted), kind) in found, f"the scan misses a planted {kind}"
    assert scan({"clean": "nothing secret here"}, secrets) == []


def test_a5_dry_run_shows_no_secret_password_hash_token_or_address(observed):
    findings = scan(observed.sources(), secrets_of(observed, config_mod.load(PROD_CONFIG)))
    assert findings == [], "\n".join(f"{f.kind} in {f.source}" for f in findings)


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
