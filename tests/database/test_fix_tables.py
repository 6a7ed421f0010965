"""fix-tables against a real PostgreSQL: the migrations on an empty and on the
Supabase-era database, the runner's checksums and lock, and the IAM-only roles.

The step runs as in a dry run: its database is the test server's, and the outputs of
`database` and `store-secrets` are given (the AWS side is covered elsewhere).
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from runbook import config as config_mod
from runbook.database import grants
from runbook.aws.clients import ClientFactory
from runbook.engine import UNKNOWN
from runbook.steps import new_runner
from runbook.steps.database import DatabaseOutputs
from runbook.steps.store_secrets import SecretsOutputs
from runbook.output.progress import Progress
from runbook.lambda_runtime.profiles import NewUser, upsert_profile
from runbook.steps.fix_tables import FixTables
from tests.conftest import MIGRATION_CHANGES, MIGRATIONS, REGION

ALL_VERSIONS = list(range(1, len(MIGRATIONS) + 1))   # every migration templates/ holds

UPSTREAM = {"database": DatabaseOutputs.standing_in("matbakh_main"),
    "store-secrets": SecretsOutputs(UNKNOWN, UNKNOWN)}
WORKING_TABLES = (("public", "profiles"), ("public", "private_profiles"), ("app", "users"),
                  ("app", "registration_outbox"), ("audit", "registrations"))


def make_config(write_config, roles=None):
    """config/prod.yaml with `roles` as database.roles (default: none, so that a test of
    the migrations sees only the migrations)."""
    def mutate(data):
        data["database"]["roles"] = roles or {}
    return config_mod.load(write_config(mutate))


def fix_tables(config, dsn, *, plan_only=False):
    runner = new_runner(config, ClientFactory(REGION), Progress(quiet=True), dry_run=True,
                    plan_only=plan_only, database_dsn=dsn)
    runner.outputs.update(UPSTREAM)
    return runner.run_step("fix-tables")


def query(dsn, sql, params=None):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def execute(dsn, sql):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def count_ddl(dsn):
    """Log every DDL command (and GRANT/REVOKE) the database runs from now on."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE public.ddl_log (tag text NOT NULL);
            CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO public.ddl_log VALUES (tg_tag); END $$;
            CREATE EVENT TRIGGER log_ddl ON ddl_command_start EXECUTE FUNCTION public.log_ddl();
        """)
    return lambda: [row[0] for row in query(dsn, "SELECT tag FROM public.ddl_log")]


def shape(dsn):
    """Columns, constraints, indexes and triggers of the working tables, each row led by
    its table's name (the names are unique across the three schemas)."""
    tables = [f"{schema}.{table}" for schema, table in WORKING_TABLES]
    where = "n.nspname || '.' || c.relname = ANY (%s)"
    return {
        "columns": query(dsn, """
            SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
                   column_default
              FROM information_schema.columns
             WHERE table_schema || '.' || table_name = ANY (%s) ORDER BY 1, 2""", (tables,)),
        "constraints": query(dsn, f"""
            SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {where} ORDER BY 1, 2""", (tables,)),
        "indexes": query(dsn, """
            SELECT tablename, indexname, indexdef FROM pg_indexes
             WHERE schemaname || '.' || tablename = ANY (%s) ORDER BY 1, 2""", (tables,)),
        "triggers": query(dsn, f"""
            SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE NOT t.tgisinternal AND {where} ORDER BY 1, 2""", (tables,)),
    }


# -- migrations ------------------------------------------------------------------------

def test_empty_database_gets_the_schema_and_a_second_run_runs_no_ddl(write_config, pg_dsn):
    config = make_config(write_config)
    first = fix_tables(config, pg_dsn)
    assert first.status == "ok", first.error
    assert [c.resource for c in first.changes] == MIGRATION_CHANGES
    assert first.applied == len(MIGRATIONS)
    assert first.outputs["schema_version"] == len(MIGRATIONS)
    recorded = query(pg_dsn, "SELECT version, name, length(checksum) FROM runbook.schema_migrations "
                             "ORDER BY version")
    assert recorded == [(int(name[:4]), name[5:-len(".sql.j2")], 64) for name in MIGRATIONS]
    columns = {row[1] for row in shape(pg_dsn)["columns"] if row[0] == "profiles"}
    assert columns == {"id", "email", "role", "display_name", "cognito_user_id", "language",
                       "avatar_url", "created_at", "updated_at"}

    ddl = count_ddl(pg_dsn)
    second = fix_tables(config, pg_dsn)
    assert second.status == "ok", second.error
    assert second.changes == [] and second.applied == 0
    assert ddl() == []
    assert query(pg_dsn, "SELECT count(*) FROM runbook.schema_migrations") == [(len(MIGRATIONS),)]


def test_profile_defaults_and_updated_at(write_config, pg_dsn):
    assert fix_tables(make_config(write_config), pg_dsn).status == "ok"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute("INSERT INTO profiles (email) VALUES ('a@example.test') "
                           "RETURNING id, role, language, created_at, updated_at").fetchone()
        assert row[0] is not None and row[1:3] == ("owner", "de")
        conn.execute("UPDATE profiles SET created_at = created_at - interval '1 day', "
                     "updated_at = '2000-01-01' WHERE id = %s", (row[0],))
        updated = conn.execute("SELECT updated_at > now() - interval '1 minute' FROM profiles "
                               "WHERE id = %s", (row[0],)).fetchone()[0]
    assert updated, "updated_at must follow every update, whatever the statement set"


def test_legacy_database_keeps_every_row_and_accepts_cognito_sign_ups(write_config, legacy_dsn):
    users_before = query(legacy_dsn, "SELECT to_jsonb(u) FROM auth.users u ORDER BY id")
    profiles_before = query(legacy_dsn, "SELECT to_jsonb(p) FROM public.profiles p ORDER BY id")
    assert len(users_before) == 3 and len(profiles_before) == 3

    result = fix_tables(make_config(write_config), legacy_dsn)
    assert result.status == "ok", result.error
    assert result.applied == len(MIGRATIONS)

    assert query(legacy_dsn, "SELECT to_jsonb(u) FROM auth.users u ORDER BY id") == users_before
    profiles_after = query(legacy_dsn, "SELECT to_jsonb(p) FROM public.profiles p ORDER BY id")
    assert len(profiles_after) == len(profiles_before)
    for (before,), (after,) in zip(profiles_before, profiles_after):
        assert {key: after[key] for key in before} == before  # legacy roles stay as they are
        assert after["cognito_user_id"] is None and after["display_name"] is None

    # A user who exists only in Cognito: not in auth.users.
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        with conn.transaction():
            profile_id = conn.execute(
                "INSERT INTO public.profiles (email, role, cognito_user_id, display_name) "
                "VALUES ('new.owner@example.test', 'owner', "
                "'0a1b2c3d-0000-4000-8000-00000000c0de', 'New Owner') RETURNING id").fetchone()[0]
            conn.execute("INSERT INTO public.private_profiles (user_id, first_name, phone) "
                         "VALUES (%s, 'New', '+4930123456')", (profile_id,))
        assert conn.execute("SELECT count(*) FROM auth.users WHERE id = %s",
                            (profile_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT preferences FROM private_profiles WHERE user_id = %s",
                            (profile_id,)).fetchone()[0] == {}
        # Languages and roles outside the old CHECK lists are accepted now.
        conn.execute("INSERT INTO public.profiles (email, role, language) "
                     "VALUES ('x@example.test', 'manager', 'tr')")


def test_empty_and_legacy_databases_end_with_the_same_schema(write_config, make_database):
    from tests.conftest import LEGACY_SQL

    dsns = [make_database(), make_database()]
    execute(dsns[1], LEGACY_SQL.read_text())
    config = make_config(write_config)
    for dsn in dsns:
        assert fix_tables(config, dsn).status == "ok"
    empty, legacy = shape(dsns[0]), shape(dsns[1])
    assert empty["columns"] and empty == legacy
    # The legacy CHECKs on the profiles' role and language are gone; the audit row's
    # source keeps its own.
    assert [c[:2] for c in legacy["constraints"] if "CHECK" in c[2] or "auth.users" in c[2]] == [
        ("registrations", "registrations_source_check")]


def test_a_users_table_from_the_old_db_init_gets_the_cognito_columns_and_keeps_its_rows(
        write_config, legacy_dsn):
    """0003 creates users only where there is none; 0004 brings the table the old db-init
    made (the TODO list's INSERT names id, email, name, created_at, updated_at) to the
    TODO list's shape, keeping its rows."""
    execute(legacy_dsn, """
        CREATE TABLE public.users (id varchar(36) PRIMARY KEY, email varchar(255) NOT NULL,
                                   name varchar(255), created_at timestamptz, updated_at timestamptz);
        INSERT INTO public.users VALUES ('u-1', 'old.user@example.com', 'Old', now(), now())""")
    result = fix_tables(make_config(write_config), legacy_dsn)
    assert result.status == "ok", result.error
    assert result.applied == len(MIGRATIONS)

    columns = {row[1]: row[2:] for row in shape(legacy_dsn)["columns"] if row[0] == "users"}
    assert set(columns) == {"id", "cognito_id", "email", "name", "phone", "email_verified",
                            "created_at", "updated_at"}
    assert columns["cognito_id"][:3] == ("character varying", 128, "YES")  # the old row has none
    assert columns["email_verified"][2:] == ("NO", "false")
    assert "gen_random_uuid()" in columns["id"][3]
    constraints = {row[1] for row in shape(legacy_dsn)["constraints"] if row[0] == "users"}
    assert {"users_cognito_id_key", "users_email_key"} <= constraints
    # 0006 moved it to the users' schema, rows and all.
    assert query(legacy_dsn, "SELECT to_regclass('public.users')") == [(None,)]
    assert query(legacy_dsn, "SELECT id, email, name, cognito_id, email_verified "
                             "FROM app.users") == [("u-1", "old.user@example.com", "Old", None, False)]
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO app.users (cognito_id, email) VALUES ('sub-1', 'new@example.com')")
    assert query(legacy_dsn, "SELECT length(id) FROM app.users WHERE cognito_id = 'sub-1'") == [(36,)]
    assert fix_tables(make_config(write_config), legacy_dsn).changes == []


def test_0006_moves_the_event_tables_and_refuses_two_copies(
        write_config, make_database):
    """users and registration_outbox leave the profiles' schema. A users
    table in both schemas is an error naming both, and nothing is moved."""
    moved, doubled = make_database(), make_database()
    execute(doubled, "CREATE SCHEMA app; CREATE TABLE app.users (id text PRIMARY KEY)")
    config = make_config(write_config)
    assert fix_tables(config, moved).status == "ok"
    assert query(moved, "SELECT to_regclass('public.users'), to_regclass('public.registration_outbox'), "
                        "to_regclass('app.users')::text, to_regclass('audit.registrations')::text"
                 ) == [(None, None, "app.users", "audit.registrations")]

    failed = fix_tables(config, doubled)
    assert failed.status == "failed"
    assert "both public.users and app.users exist" in failed.error
    assert query(doubled, "SELECT to_regclass('public.users')::text, "
                          "to_regclass('audit.registrations')") == [("users", None)]


def test_the_users_table_made_by_0003_gets_the_id_default_and_keeps_cognito_id_required(
        write_config, pg_dsn):
    assert fix_tables(make_config(write_config), pg_dsn).status == "ok"
    columns = {row[1]: row[2:] for row in shape(pg_dsn)["columns"] if row[0] == "users"}
    assert columns["cognito_id"][2] == "NO" and columns["email"][2] == "NO"
    assert "gen_random_uuid()" in columns["id"][3]


def test_deleting_a_profile_deletes_its_private_profile(write_config, legacy_dsn):
    assert fix_tables(make_config(write_config), legacy_dsn).status == "ok"
    legacy_id = "8c2d9e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f"
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO private_profiles (user_id, last_name) VALUES (%s, 'Schmidt')",
                     (legacy_id,))
        conn.execute("DELETE FROM profiles WHERE id = %s", (legacy_id,))
        left = conn.execute("SELECT count(*) FROM private_profiles WHERE user_id = %s",
                            (legacy_id,)).fetchone()[0]
    assert left == 0


def test_plan_lists_pending_migrations_and_changes_nothing(write_config, pg_dsn):
    ddl = count_ddl(pg_dsn)
    result = fix_tables(make_config(write_config), pg_dsn, plan_only=True)
    assert result.status == "ok", result.error
    assert [c.action for c in result.changes] == ["create"] * len(MIGRATIONS)
    assert all("CREATE TABLE IF NOT EXISTS" in c.detail for c in result.changes[:3])
    assert "ALTER TABLE" in result.changes[3].detail
    assert result.applied == 0 and ddl() == []
    assert query(pg_dsn, "SELECT to_regclass('runbook.schema_migrations')") == [(None,)]


def test_an_applied_migration_that_was_edited_is_refused_and_not_rerun(write_config, pg_dsn,
                                                                        templates):
    config = make_config(write_config)
    assert fix_tables(config, pg_dsn).status == "ok"
    path = templates / "0002_private_profiles.sql.j2"
    path.write_text(path.read_text().replace("phone       text,", "phone       text,\n  fax text,"))
    (templates / "0099_more.sql.j2").write_text("CREATE TABLE more (id int);\n")

    ddl = count_ddl(pg_dsn)
    result = fix_tables(config, pg_dsn)
    assert result.status == "failed" and result.error_kind == "input"  # exit code 2
    assert "0002_private_profiles.sql.j2" in result.error
    assert "was changed after it was applied" in result.error
    assert ddl() == []  # neither re-run nor the next one applied
    assert query(pg_dsn, "SELECT max(version) FROM runbook.schema_migrations") == [
        (len(MIGRATIONS),)]


def test_changing_a_rendered_value_counts_as_an_edit(write_config, pg_dsn):
    assert fix_tables(make_config(write_config), pg_dsn).status == "ok"
    moved = config_mod.load(write_config(lambda d: d["database"].update(schema="shop")))
    result = fix_tables(moved, pg_dsn)
    assert result.error_kind == "input" and "0001_profiles.sql.j2" in result.error
    assert "database.schema" in result.error


def test_two_runs_started_together_apply_each_migration_once(write_config, pg_dsn, templates,
                                                             monkeypatch):
    # A slow migration keeps the first runner inside the lock while the second waits.
    (templates / "0098_slow.sql.j2").write_text(
        "CREATE TABLE IF NOT EXISTS ran (migration int);\n"
        "INSERT INTO ran VALUES (98);\nSELECT pg_sleep(0.5);\n")
    (templates / "0099_after.sql.j2").write_text("INSERT INTO ran VALUES (99);\n")
    every = len(MIGRATIONS) + 2

    both_planned = threading.Barrier(2, timeout=30)
    original_lock = FixTables._lock

    def lock_after_both_planned(self, state):
        if not state.locked:
            both_planned.wait()  # both runners have read and planned them all
        return original_lock(self, state)

    monkeypatch.setattr(FixTables, "_lock", lock_after_both_planned)
    config = make_config(write_config)
    results = [None, None]

    def run(index):
        results[index] = fix_tables(config, pg_dsn)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    assert [len(r.changes) for r in results] == [every, every]
    assert sorted(r.applied for r in results) == [0, every]
    assert query(pg_dsn, "SELECT migration, count(*) FROM ran GROUP BY 1 ORDER BY 1") == \
        [(98, 1), (99, 1)]
    assert query(pg_dsn, "SELECT version FROM runbook.schema_migrations ORDER BY 1") == \
        [(v,) for v in ALL_VERSIONS + [98, 99]]


def test_a_failing_migration_leaves_nothing_half_applied(write_config, pg_dsn, templates):
    (templates / "0099_broken.sql.j2").write_text(
        "CREATE TABLE half (id int);\nSELECT no_such_function();\n")
    result = fix_tables(make_config(write_config), pg_dsn)
    assert result.status == "failed" and result.error_kind == "failure"
    assert "0099_broken.sql.j2" in result.error and "no_such_function" in result.error
    assert result.applied == len(MIGRATIONS)
    assert query(pg_dsn, "SELECT to_regclass('public.half')") == [(None,)]
    assert query(pg_dsn, "SELECT max(version) FROM runbook.schema_migrations") == [
        (len(MIGRATIONS),)]


# -- IAM-only roles ----------------------------------------------------------------------

WRITER = {"lambda_writer": {"write": ["foo", "bar"]}}


def connect_as(dsn, role):
    """A real login as `role` (the test server trusts local connections)."""
    return psycopg.connect(dsn, user=role, autocommit=True)


def role_privileges(dsn, role):
    from runbook.lambda_runtime import dbroles

    with psycopg.connect(dsn, autocommit=True) as conn:
        return dbroles.read_role(conn, role)


def test_lambda_writer_may_write_but_not_read_and_not_touch_public(write_config, pg_dsn):
    execute(pg_dsn, "CREATE SCHEMA foo; CREATE TABLE foo.existing (id serial PRIMARY KEY, col text);"
                    "DROP ROLE IF EXISTS rds_iam")  # as on a server outside RDS
    config = make_config(write_config, roles=WRITER)
    result = fix_tables(config, pg_dsn)
    assert result.status == "ok", result.error
    assert [c.resource for c in result.changes][-2:] == ["postgres:role rds_iam",
                                                         "postgres:role lambda_writer"]
    # A table created after fix-tables gets the grants from the default privileges.
    execute(pg_dsn, "CREATE TABLE foo.table1 (id serial PRIMARY KEY, col text)")

    state = role_privileges(pg_dsn, "lambda_writer")
    assert state.login and state.rds_iam_member
    # TLS is the cluster parameter group's (rds.force_ssl=1), not a role setting: plain
    # PostgreSQL would take `ALTER ROLE … SET rds.force_ssl` as a placeholder that does
    # nothing, so no setting is left on the role.
    assert query(pg_dsn, "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r "
                         "ON r.oid = s.setrole WHERE r.rolname = 'lambda_writer'") == []
    with connect_as(pg_dsn, "lambda_writer") as conn:
        for table in ("foo.table1", "foo.existing"):
            conn.execute(f"INSERT INTO {table} (col) VALUES ('written')")
        for statement in ("SELECT * FROM foo.table1",
                          "INSERT INTO public.profiles (email) VALUES ('w@example.test')",
                          "INSERT INTO app.users (cognito_id, email) VALUES ('1', '1')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert query(pg_dsn, "SELECT count(*) FROM foo.table1") == [(1,)]
    assert query(pg_dsn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'rds_iam'") == [(False,)]


def test_writer_roles_converge_and_a_removed_schema_loses_its_grants(write_config, pg_dsn):
    config = make_config(write_config, roles=WRITER)
    assert fix_tables(config, pg_dsn).status == "ok"
    execute(pg_dsn, "CREATE TABLE bar.t (id serial PRIMARY KEY)")
    again = fix_tables(config, pg_dsn)
    assert again.status == "ok" and again.changes == []  # default privileges covered bar.t

    ddl = count_ddl(pg_dsn)
    only_foo = make_config(write_config, roles={"lambda_writer": {"write": ["foo"]}})
    planned = fix_tables(only_foo, pg_dsn, plan_only=True)
    assert len(planned.changes) == 1 and ddl() == []
    assert "INSERT on bar.t" in planned.changes[0].diff["revoke"]
    result = fix_tables(only_foo, pg_dsn)
    assert result.status == "ok" and result.applied == 1

    held = role_privileges(pg_dsn, "lambda_writer").privileges
    assert held and not [p for p in held if p.schema == "bar"]
    assert query(pg_dsn, "SELECT has_table_privilege('lambda_writer', 'bar.t', 'INSERT'), "
                         "has_schema_privilege('lambda_writer', 'bar', 'USAGE')") == [(False, False)]
    assert fix_tables(only_foo, pg_dsn).changes == []


def test_a_read_grant_added_by_hand_is_revoked(write_config, pg_dsn):
    config = make_config(write_config, roles=WRITER)
    assert fix_tables(config, pg_dsn).status == "ok"
    execute(pg_dsn, "CREATE TABLE foo.t (id int); GRANT SELECT ON foo.t TO lambda_writer")
    result = fix_tables(config, pg_dsn)
    assert result.changes[0].diff == {"revoke": ["SELECT on foo.t"]}
    assert query(pg_dsn, "SELECT has_table_privilege('lambda_writer', 'foo.t', 'SELECT')") == \
        [(False,)]


TRIGGER_ROLE = {"matbakh_trigger": {"trigger": "post-confirmation"}}


def test_trigger_role_can_run_its_upsert_and_nothing_more(write_config, legacy_dsn):
    result = fix_tables(make_config(write_config, roles=TRIGGER_ROLE), legacy_dsn)
    assert result.status == "ok", result.error

    sub = "7d3e1f00-2b4c-4d5e-8f60-718293a4b5c6"
    new_user = NewUser(sub=sub, email="fresh@example.test", display_name="Fresh",
                       first_name="Fre", last_name="Sh", phone="+491701234567")
    legacy = NewUser(sub="11111111-2222-4333-8444-555555555555",
                     email="anna.schmidt@example.com", first_name="Anna")
    with connect_as(legacy_dsn, "matbakh_trigger") as conn:
        first = upsert_profile(conn, new_user)
        assert upsert_profile(conn, new_user) == first  # a Cognito retry changes nothing
        linked = upsert_profile(conn, legacy)
        for statement in ("SELECT avatar_url FROM profiles", "SELECT preferences FROM private_profiles",
                          "DELETE FROM profiles", "UPDATE profiles SET role = 'admin'",
                          "SELECT * FROM auth.users"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)

    assert linked == "8c2d9e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f"  # the legacy profile, linked
    rows = query(legacy_dsn, "SELECT p.role, p.cognito_user_id, pp.first_name, pp.phone FROM profiles p "
                             "JOIN private_profiles pp ON pp.user_id = p.id ORDER BY p.email")
    assert rows == [("user", legacy.sub, "Anna", None),
                    ("owner", sub, "Fre", "+491701234567")]
    assert fix_tables(make_config(write_config, roles=TRIGGER_ROLE), legacy_dsn).changes == []


def test_table_level_grants_are_narrowed_to_columns_in_one_run(write_config, legacy_dsn):
    # A trigger role from the bash era, with whole-table privileges.
    execute(legacy_dsn, "DO $$ BEGIN CREATE ROLE matbakh_trigger LOGIN; "
                        "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    config = make_config(write_config, roles=TRIGGER_ROLE)
    assert fix_tables(config, legacy_dsn).status == "ok"  # creates the tables
    execute(legacy_dsn, "GRANT SELECT, INSERT, UPDATE ON profiles, private_profiles "
                        "TO matbakh_trigger")
    result = fix_tables(config, legacy_dsn)
    assert result.status == "ok", result.error
    assert "SELECT on public.profiles" in result.changes[0].diff["revoke"]

    with connect_as(legacy_dsn, "matbakh_trigger") as conn:
        upsert_profile(conn, NewUser(sub="22222222-3333-4444-8555-666666666666",
                                     email="narrowed@example.test"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT avatar_url FROM profiles")
    assert fix_tables(config, legacy_dsn).changes == []


def test_a_grant_made_by_another_grantor_is_revoked_too(write_config, pg_dsn):
    config = make_config(write_config, roles=WRITER)
    assert fix_tables(config, pg_dsn).status == "ok"
    execute(pg_dsn, "DO $$ BEGIN CREATE ROLE other_admin; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
                    "CREATE TABLE foo.t (id int);"
                    "GRANT USAGE ON SCHEMA foo TO other_admin;"
                    "GRANT SELECT ON foo.t TO other_admin WITH GRANT OPTION;"
                    "SET ROLE other_admin; GRANT SELECT ON foo.t TO lambda_writer; RESET ROLE")
    result = fix_tables(config, pg_dsn)
    assert result.status == "ok", result.error
    assert 'SET ROLE "other_admin";\nREVOKE SELECT ON TABLE "foo"."t" FROM "lambda_writer";\n' \
        'RESET ROLE' in result.changes[0].detail
    assert query(pg_dsn, "SELECT has_table_privilege('lambda_writer', 'foo.t', 'SELECT')") == \
        [(False,)]
    assert fix_tables(config, pg_dsn).changes == []


def test_a_returning_user_and_a_differently_cased_address_reuse_their_profile(
        write_config, legacy_dsn):
    assert fix_tables(make_config(write_config, roles=TRIGGER_ROLE), legacy_dsn).status == "ok"
    karim = "1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    with connect_as(legacy_dsn, "matbakh_trigger") as conn:
        first = upsert_profile(conn, NewUser(sub="33333333-0000-4000-8000-000000000001",
                                             email="Karim.Haddad@example.com"))
        # Deleted in Cognito, signed up again: a new sub for the same address.
        again = upsert_profile(conn, NewUser(sub="33333333-0000-4000-8000-000000000002",
                                             email="karim.haddad@example.com"))
    assert first == again == karim
    assert query(legacy_dsn, "SELECT role, cognito_user_id FROM profiles WHERE id = %s",
                 (karim,)) == [("admin", "33333333-0000-4000-8000-000000000002")]
    assert query(legacy_dsn, "SELECT count(*) FROM profiles") == [(3,)]


def test_foreign_keys_outside_the_auth_schema_are_kept(write_config, legacy_dsn):
    execute(legacy_dsn, "CREATE TABLE public.teams (id uuid PRIMARY KEY);"
                        "ALTER TABLE public.profiles ADD COLUMN team_id uuid "
                        "CONSTRAINT profiles_team_fk REFERENCES public.teams (id)")
    assert fix_tables(make_config(write_config), legacy_dsn).status == "ok"
    kept = query(legacy_dsn, "SELECT conname FROM pg_constraint WHERE conrelid = "
                             "'public.profiles'::regclass AND contype = 'f'")
    assert kept == [("profiles_team_fk",)]


def test_postgres_errors_are_described_without_row_values(write_config, legacy_dsn):
    from runbook.lambda_runtime.db import describe_error

    assert fix_tables(make_config(write_config), legacy_dsn).status == "ok"
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute("INSERT INTO profiles (email) VALUES ('anna.schmidt@example.com')")
    assert "anna.schmidt@example.com" in str(caught.value)  # psycopg's own text has it
    text = describe_error(caught.value)
    assert text.startswith("PostgreSQL error 23505: duplicate key value")
    assert "anna.schmidt" not in text


def test_migrations_need_no_superuser(write_config, make_database):
    """On RDS the master login owns the database and its tables but is no superuser."""
    import secrets

    from tests.conftest import LEGACY_SQL

    dsn = make_database(owner=f"rb_master_{secrets.token_hex(4)}")
    execute(dsn, LEGACY_SQL.read_text())
    result = fix_tables(make_config(write_config), dsn)
    assert result.status == "ok", result.error
    assert result.applied == len(MIGRATIONS)
    assert fix_tables(make_config(write_config), dsn).changes == []


def test_the_shipped_roles_converge_without_a_superuser(write_config, make_database, pg_server,
                                                         request):
    """prod's two roles, shaped as config/prod.yaml declares them, converged by a master
    login that is no superuser but may create roles, as on RDS."""
    import secrets

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from tests.conftest import LEGACY_SQL, drop_roles, prod_data

    owner = f"rb_master_{secrets.token_hex(4)}"
    dsn = make_database(owner=owner)
    suffix = secrets.token_hex(3)
    roles = {f"{name}_{suffix}": spec for name, spec in prod_data()["database"]["roles"].items()}

    # Before make_database drops the owner, who granted them rds_iam.
    as_superuser = make_conninfo(pg_server, dbname=conninfo_to_dict(dsn)["dbname"])
    request.addfinalizer(lambda: drop_roles(as_superuser, roles))

    # On RDS, rds_iam exists and the master user may grant it without being a member
    # (a member could log in by IAM only). The session's server stands in: rds_iam made
    # where missing, and the owner given ADMIN OPTION on it, but no membership.
    execute(pg_server, "DO $$ BEGIN CREATE ROLE rds_iam NOLOGIN; "
                       "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    execute(pg_server, f"GRANT rds_iam TO {owner} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
    execute(dsn, LEGACY_SQL.read_text())
    config = make_config(write_config, roles=roles)
    result = fix_tables(config, dsn)
    assert result.status == "ok", result.error
    assert query(dsn, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
                 ) == [(owner, False)]
    assert fix_tables(config, dsn).changes == []
    with psycopg.connect(dsn) as conn:
        assert grants.verify(conn, config.database.roles, schemas=config.database.schemas) == []


def test_the_templates_hold_these_migrations_in_this_order():
    """The tests above count what templates/sql holds; this names it, so that a
    migration removed or renamed by mistake fails here."""
    assert MIGRATIONS == ("0001_profiles.sql.j2", "0002_private_profiles.sql.j2",
                          "0003_users.sql.j2", "0004_users_cognito.sql.j2",
                          "0005_registration_outbox.sql.j2", "0006_event_schemas.sql.j2",
                          "0007_trigger_functions.sql.j2",
                          "0008_trigger_functions_set_based.sql.j2")
