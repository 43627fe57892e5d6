"""Helpers for the migration tests: run Alembic to a revision on an engine, check a schema
against the models, and store a row that an upgrade or downgrade must keep."""

from __future__ import annotations

from sqlalchemy import Engine, text


def alembic(engine: Engine, action, revision: str) -> None:
    """Runs `action` (alembic.command.upgrade or .downgrade) to `revision` on engine."""
    from db.engine import alembic_config

    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        action(cfg, revision)


def old_database(url: str, revision: str) -> Engine:
    """An engine on url whose schema is migrated only up to `revision` (not to head)."""
    from alembic import command

    from db.engine import get_engine

    engine = get_engine(url, migrate=False)
    alembic(engine, command.upgrade, revision)
    return engine


def schema_diff(engine: Engine) -> list:
    """What differs between the database's schema and the models (empty: they match)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.models import Base

    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def kept_campaign(engine: Engine) -> int:
    """A campaign row that a migration must keep."""
    from db import repository as repo

    return repo.create_campaign(engine, name="kept", problem="p", strategy="simpletes", model="offline", seed=0,
                                budget=4, direction="minimize", evaluator_version="1", config={"problem": "p"})
