"""The grants verifier (runbook.database.grants) against a real PostgreSQL: roles that
fix-tables converged hold exactly their declaration, and each way a role can differ from
it, made by hand as an operator would, is found and named.

The roles get names of their own per test: roles are server-wide, and a revoked rds_iam
membership must not reach another test.
"""

from __future__ import annotations

import secrets

import psycopg
import pytest

from runbook.database import grants
from runbook.database.grants import Finding
from runbook.lambda_runtime.schemas import Schemas
from tests.database.test_fix_tables import execute, fix_tables, make_config, query


@pytest.fixture
def names(pg_dsn):
    """A writer's and a trigger role's names, dropped with what they hold afterwards."""
    suffix = secrets.token_hex(3)
    made = {"writer": f"grants_writer_{suffix}", "trigger": f"grants_trigger_{suffix}"}
    yield made
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in made.values():
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(f"DROP OWNED BY {name}")
                conn.execute(f"DROP ROLE {name}")


@pytest.fixture
def converged(write_config, pg_dsn, names):
    """fix-tables has migrated the database and converged a writer on foo and bar (foo
    holding a table with a sequence) and Post-Confirmation's role."""
    execute(pg_dsn, "CREATE SCHEMA foo; CREATE TABLE foo.t (id serial PRIMARY KEY, note text);"
                    "CREATE TABLE foo.u (id int)")
    config = make_config(write_config, roles={names["writer"]: {"write": ["foo", "bar"]},
                                              names["trigger"]: {"trigger": "post-confirmation"}})
    result = fix_tables(config, pg_dsn)
    assert result.status == "ok", result.error
    return config


def verify(config, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return grants.verify(conn, config.database.roles, schemas=config.database.schemas)


def owner(dsn):
    return query(dsn, "SELECT current_user")[0][0]


def test_roles_converged_by_fix_tables_hold_exactly_their_declaration(converged, pg_dsn, names):
    assert verify(converged, pg_dsn) == []
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        roles = converged.database.roles
        snapshot = grants.read(conn, roles)
    assert grants.summary(snapshot, roles, schemas=Schemas()) == (
        f"{names['writer']}: INSERT/UPDATE/DELETE on foo, bar (2 tables, 1 sequence), "
        f"no SELECT, as declared; "
        f"{names['trigger']}: 25 column privileges of post-confirmation, "
        f"SELECT on 8 columns only, as declared")


def test_a_table_created_later_is_covered_by_the_default_privileges(converged, pg_dsn):
    execute(pg_dsn, "CREATE TABLE bar.later (id bigserial PRIMARY KEY)")
    assert verify(converged, pg_dsn) == []


def test_an_extra_table_level_select_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"GRANT SELECT ON foo.t TO {names['writer']}")
    assert verify(converged, pg_dsn) == [Finding(names["writer"], "extra", "SELECT", "foo.t")]


def test_a_select_through_public_is_found_though_it_is_not_the_roles_own(converged, pg_dsn,
                                                                          names):
    # dbroles leaves PUBLIC's privileges alone; the role can read the table all the same.
    execute(pg_dsn, "GRANT SELECT ON foo.u TO PUBLIC")
    found = verify(converged, pg_dsn)
    assert Finding(names["writer"], "extra", "SELECT", "foo.u") in found
    assert Finding(names["trigger"], "extra", "SELECT", "foo.u") in found
    assert len(found) == 2


def test_a_missing_delete_on_one_table_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"REVOKE DELETE ON foo.u FROM {names['writer']}")
    assert verify(converged, pg_dsn) == [Finding(names["writer"], "missing", "DELETE", "foo.u")]


def test_a_missing_sequence_usage_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"REVOKE USAGE ON SEQUENCE foo.t_id_seq FROM {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "missing", "USAGE", "sequence foo.t_id_seq")]


def test_a_grant_on_profiles_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"GRANT INSERT ON public.profiles TO {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "extra", "INSERT", "public.profiles")]


def test_a_missing_default_privilege_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"ALTER DEFAULT PRIVILEGES IN SCHEMA foo REVOKE DELETE ON TABLES "
                    f"FROM {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "missing", "DELETE",
                f"future tables of {owner(pg_dsn)} in schema foo")]


def test_a_default_select_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"ALTER DEFAULT PRIVILEGES IN SCHEMA bar GRANT SELECT ON SEQUENCES "
                    f"TO {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "extra", "SELECT",
                f"future sequences of {owner(pg_dsn)} in schema bar")]


def test_a_missing_rds_iam_membership_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"REVOKE rds_iam FROM {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "missing", "MEMBER", "role rds_iam")]


def test_a_role_without_login_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"ALTER ROLE {names['trigger']} NOLOGIN")
    assert verify(converged, pg_dsn) == [
        Finding(names["trigger"], "missing", "LOGIN", f"role {names['trigger']}")]


def test_a_grant_option_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"GRANT INSERT ON foo.t TO {names['writer']} WITH GRANT OPTION")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "extra", "INSERT WITH GRANT OPTION", "foo.t")]


def test_an_extra_column_privilege_on_the_trigger_role_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"GRANT SELECT (avatar_url) ON public.profiles TO {names['trigger']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["trigger"], "extra", "SELECT", "public.profiles(avatar_url)")]


def test_a_missing_column_privilege_on_the_trigger_role_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"REVOKE UPDATE (phone) ON public.private_profiles FROM {names['trigger']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["trigger"], "missing", "UPDATE", "public.private_profiles(phone)")]


def test_a_table_level_grant_where_columns_are_declared_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"GRANT UPDATE ON public.profiles TO {names['trigger']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["trigger"], "extra", "UPDATE", "public.profiles")]


def test_a_grant_on_the_ledger_schema_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"GRANT USAGE ON SCHEMA runbook TO {names['writer']};"
                    f"GRANT UPDATE ON runbook.schema_migrations TO {names['writer']}")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "extra", "UPDATE", "runbook.schema_migrations")]


def test_a_role_that_does_not_exist_is_found(write_config, pg_dsn, names):
    config = make_config(write_config, roles={names["writer"]: {"write": ["foo"]}})
    assert verify(config, pg_dsn) == [
        Finding(names["writer"], "missing", "LOGIN", f"role {names['writer']} (it does not exist)")]


def test_findings_name_the_role_the_object_and_the_privilege_and_no_row(converged, pg_dsn, names):
    execute(pg_dsn, "INSERT INTO foo.t (note) VALUES ('a secret note')")
    execute(pg_dsn, f"GRANT SELECT (note) ON foo.t TO {names['writer']}")
    (found,) = verify(converged, pg_dsn)
    assert str(found) == (f"{names['writer']} holds SELECT on foo.t(note), which is "
                          "not declared")


def test_a_writer_that_is_also_a_trigger_role_may_read_only_its_triggers_columns(
        write_config, pg_dsn, names):
    # process-user-signup's ON CONFLICT (cognito_id) needs SELECT on that column (B.8).
    execute(pg_dsn, "CREATE SCHEMA foo; CREATE TABLE foo.t (id serial PRIMARY KEY)")
    roles = {names["writer"]: {"write": ["foo"], "trigger": "process-user-signup"}}
    config = make_config(write_config, roles=roles)
    assert fix_tables(config, pg_dsn).status == "ok"
    assert verify(config, pg_dsn) == []
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        snapshot = grants.read(conn, config.database.roles)
    assert grants.summary(snapshot, config.database.roles, schemas=Schemas()) == (
        f"{names['writer']}: INSERT/UPDATE/DELETE on foo (1 table, 1 sequence), 16 column "
        "privileges and DELETE on registration_outbox of process-user-signup, SELECT on 6 "
        "columns only, as declared")

    execute(pg_dsn, f"GRANT SELECT (email) ON app.users TO {names['writer']}")
    assert verify(config, pg_dsn) == [
        Finding(names["writer"], "extra", "SELECT", "app.users(email)")]


def test_the_shipped_writer_writes_the_users_and_audit_schemas_whole_and_reads_two_tables(
        write_config, pg_dsn, names):
    """config/prod.yaml's lambda_writer: write: [app, audit] and process-user-signup's
    trigger. Its write grants cover the trigger's INSERT, UPDATE and DELETE; what is left
    of the trigger is SELECT on the columns its statements read."""
    roles = {names["writer"]: {"write": ["app", "audit"], "trigger": "process-user-signup"}}
    config = make_config(write_config, roles=roles)
    assert fix_tables(config, pg_dsn).status == "ok"
    assert verify(config, pg_dsn) == []
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        snapshot = grants.read(conn, config.database.roles)
    assert grants.summary(snapshot, config.database.roles, schemas=config.database.schemas) == (
        f"{names['writer']}: INSERT/UPDATE/DELETE on app, audit (3 tables, 1 sequence), "
        "6 column privileges of process-user-signup, SELECT on 6 columns only, as declared")
    assert {(g.schema, g.name, g.column) for g in snapshot.roles[names["writer"]].columns} == {
        ("app", "users", "cognito_id"),
        *{("app", "registration_outbox", c) for c in
          ("cognito_id", "detail", "created_at", "attempts", "next_attempt_at")}}
    # The profiles' schema is out of its reach, whatever the table.
    for table in ("profiles", "private_profiles"):
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert not query(pg_dsn, "SELECT has_table_privilege(%s, %s, %s)",
                             (names["writer"], f"public.{table}", privilege))[0][0]


def test_describe_lists_the_first_findings_and_counts_the_rest():
    found = [Finding("w", "missing", "DELETE", f"foo.t{i}") for i in range(7)]
    assert grants.describe(found, limit=2) == (
        "7 grants differ from database.roles: w lacks DELETE on foo.t0; "
        "w lacks DELETE on foo.t1; and 5 more")
    assert grants.describe(found[:1]) == \
        "1 grant differs from database.roles: w lacks DELETE on foo.t0"


def test_a_role_attribute_beyond_login_is_found(converged, pg_dsn, names):
    execute(pg_dsn, f"ALTER ROLE {names['writer']} CREATEROLE")
    assert verify(converged, pg_dsn) == [
        Finding(names["writer"], "extra", "CREATEROLE", f"role {names['writer']}")]


def test_a_master_login_that_is_no_superuser_sees_what_another_grantor_gave(
        write_config, make_database, pg_server, names):
    """On RDS the master login is no superuser, and the grant views show it only the
    grants made by or to its own roles: has_table_privilege still sees the rest."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    master = f"grants_master_{secrets.token_hex(3)}"
    dsn = make_database(owner=master)
    superuser = make_conninfo(pg_server, dbname=conninfo_to_dict(dsn)["dbname"])
    execute(dsn, "CREATE SCHEMA foo; CREATE TABLE foo.t (id serial PRIMARY KEY)")
    # As rds_superuser, which the master belongs to on RDS, may: grant rds_iam.
    execute(superuser, "DO $$ BEGIN CREATE ROLE rds_iam; EXCEPTION WHEN duplicate_object "
                       f"THEN NULL; END $$; GRANT rds_iam TO {master} WITH ADMIN OPTION")
    config = make_config(write_config, roles={names["writer"]: {"write": ["foo"]},
                                              names["trigger"]: {"trigger": "post-confirmation"}})
    try:
        result = fix_tables(config, dsn)
        assert result.status == "ok", result.error
        assert verify(config, dsn) == []
        other = f"{master}_other"
        execute(superuser, f"CREATE ROLE {other}; GRANT USAGE ON SCHEMA foo TO {other};"
                           f"GRANT SELECT ON foo.t TO {other} WITH GRANT OPTION;"
                           f"SET ROLE {other}; GRANT SELECT ON foo.t TO {names['writer']}")
        assert query(dsn, "SELECT count(*) FROM information_schema.role_table_grants "
                          "WHERE grantee = %s AND privilege_type = 'SELECT'",
                     (names["writer"],)) == [(0,)]   # hidden from the master login
        assert verify(config, dsn) == [Finding(names["writer"], "extra", "SELECT", "foo.t")]
    finally:
        with psycopg.connect(superuser, autocommit=True) as conn:
            for role in (*names.values(), f"{master}_other"):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {master}_other")
