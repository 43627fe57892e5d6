"""Migrations on SQLite and on a real PostgreSQL: from empty to head, equal to the models, down
and up again; and the released migrations keep writing the SQLite schema they always wrote.

sqlite_schema_released.json holds `SELECT type, name, tbl_name, sql FROM sqlite_master` after
upgrading an empty SQLite file to each released revision, recorded with the migrations as they
were released (before 0001 learned to add its cyclic foreign keys on PostgreSQL). A released
migration may change only in ways that leave these bytes alone, so existing SQLite databases and
new ones stay the same schema.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from db import repository as repo
from db.engine import alembic_config, alembic_head, dispose_engines, get_engine
from db.models import Base
from tests.migrations import alembic, kept_campaign, schema_diff
from tests.migrations import revision as revision_of

RELEASED = json.loads(Path(__file__).with_name("sqlite_schema_released.json").read_text())
CYCLIC_FKS = {  # name -> (table, column, referred table, ondelete)
    "fk_candidate_step_id_step": ("candidate", "step_id", "step", "CASCADE"),
    "fk_candidate_evaluation_id_evaluation": ("candidate", "evaluation_id", "evaluation", None),
    "fk_evaluation_candidate_id_candidate": ("evaluation", "candidate_id", "candidate", None),
}


def _sqlite_schema(engine) -> list[list]:
    with engine.connect() as conn:
        return [list(r) for r in conn.execute(
            text("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"))]


def _assert_schema_is_head(engine) -> None:
    assert revision_of(engine) == alembic_head()
    assert schema_diff(engine) == []


# ---------------------------------------------------------------- SQLite


@pytest.mark.parametrize("revision", sorted(RELEASED))
def test_released_migrations_write_the_recorded_sqlite_schema(tmp_path, revision):
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    alembic(engine, command.upgrade, revision)
    assert _sqlite_schema(engine) == RELEASED[revision]
    engine.dispose()


def test_a_database_made_by_the_released_0001_upgrades_to_head(tmp_path):
    """The recorded 0001 schema, replayed statement by statement, is an old database: it opens."""
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for kind, _, _, sql in sorted(RELEASED["0001"], key=lambda row: row[0] != "table"):  # tables first
            if sql is not None:
                conn.exec_driver_sql(sql)
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('0001')")
    engine.dispose()
    engine = get_engine(f"sqlite:///{path}")  # migrates to head
    cid = kept_campaign(engine)
    tid = repo.ensure_trajectory(engine, cid, 0)
    assert repo.ensure_trajectory(engine, cid, 0) == tid
    _assert_schema_is_head(engine)
    dispose_engines()


# ---------------------------------------------------------------- PostgreSQL


def test_postgres_migrations_from_empty_match_the_models(pg_url):
    engine = get_engine(pg_url)
    _assert_schema_is_head(engine)
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    found = {}
    for table in ("candidate", "evaluation"):
        for fk in insp.get_foreign_keys(table):
            found[fk["name"]] = (table, fk["constrained_columns"][0], fk["referred_table"],
                                 fk["options"].get("ondelete"))
    assert {name: found.get(name) for name in CYCLIC_FKS} == CYCLIC_FKS
    columns = {c["name"]: c for c in insp.get_columns("step")}
    assert str(columns["committed"]["type"]) == "BOOLEAN" and str(columns["messages"]["type"]) == "JSON"
    assert columns["created_at"]["type"].timezone is True


def test_postgres_migrations_go_down_to_empty_and_up_again_keeping_rows(pg_url):
    engine = get_engine(pg_url, migrate=False)
    alembic(engine, command.upgrade, "0001")
    cid = kept_campaign(engine)
    alembic(engine, command.upgrade, "head")
    _assert_schema_is_head(engine)
    assert repo.get_campaign(engine, cid).name == "kept"
    repo.create_export(engine, username="u", command="c", params={"campaigns": [cid]}, out_dir="/x")
    alembic(engine, command.downgrade, "0001")
    assert not inspect(engine).has_table("export") and repo.get_campaign(engine, cid).name == "kept"
    alembic(engine, command.downgrade, "base")
    assert inspect(engine).get_table_names() == ["alembic_version"]
    alembic(engine, command.upgrade, "head")
    _assert_schema_is_head(engine)


def test_postgres_offline_sql_adds_the_cyclic_foreign_keys_after_the_tables(pg_url):
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", pg_url)
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "head", sql=True)
    sql = cfg.output_buffer.getvalue()
    last_table = max(sql.index(f"CREATE TABLE {t} ") for t in ("candidate", "evaluation", "step"))
    for name in CYCLIC_FKS:
        assert sql.index(f"ADD CONSTRAINT {name} ") > last_table
