"""Engine set-up: URL resolution, SQLite pragmas, migrations on open.

The URL comes from the argument, else `DISCOVERY_DB_URL`, else `sqlite:///./discovery.db`.
SQLite runs in WAL mode with a busy timeout and foreign keys on, and writers take the write
lock up front (`BEGIN IMMEDIATE`), because a deferred transaction that reads and then writes
fails at once under contention instead of waiting for the busy timeout.

PostgreSQL (`postgresql+psycopg://user:pw@host:port/db`; a bare `postgresql://` URL is read as
psycopg 3) runs on a bounded, pre-pinged pool, with every session in UTC. Two things SQLite
stores and PostgreSQL refuses are mapped on the way in: NaN and infinities inside JSON values
(PostgreSQL's json type rejects them; they are stored as {"__float__": "nan"} and read back as
floats) and NUL characters in text (replaced by U+FFFD, as undecodable output already is), so a
candidate that prints a NUL or a metric that is NaN never costs a row. On every database, a lone
UTF-16 surrogate in text (which UTF-8 cannot encode: a model's "\\ud800" escape decoded by a JSON
reader, say) is replaced by U+FFFD the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///./discovery.db"
ENV_VAR = "DISCOVERY_DB_URL"
BUSY_TIMEOUT_MS = 30_000


class DatabaseError(RuntimeError):
    """A one-line, actionable database problem (bad URL, unreachable server, corrupt file)."""


def outage_cause(exc: BaseException) -> str | None:
    """The one-line cause when `exc` (or an exception it wraps, as Prefect and SQLAlchemy do) is
    the database going away under a running program: a SQLite lock held longer than the busy
    timeout, a PostgreSQL server restarted or unreachable, a dropped connection. None otherwise
    (a constraint violation or a bug is not an outage)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (OperationalError, InterfaceError)) or (
                isinstance(exc, DBAPIError) and exc.connection_invalidated):
            orig = getattr(exc, "orig", None)
            text = str(orig if orig is not None else exc).strip()
            return (text.splitlines()[0] if text else type(exc).__name__)[:300]
        exc = exc.__cause__ or exc.__context__
    return None


def resolve_url(url: str | None = None) -> str:
    return normalize_url(url or os.environ.get(ENV_VAR) or DEFAULT_URL)


def normalize_url(url: str) -> str:
    """A bare `postgresql://` (or Heroku-style `postgres://`) URL -> `postgresql+psycopg://`.

    SQLAlchemy reads a bare postgresql:// as psycopg2, which is not installed: the PostgreSQL
    driver of this project is psycopg 3 (the `postgres` extra). Other URLs are left as they are.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _check_url(url: str) -> None:
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        raise DatabaseError(
            f"invalid database URL {url!r}: use a SQLAlchemy URL such as sqlite:///discovery.db "
            f"or postgresql+psycopg://user:pw@host/db (set {ENV_VAR})"
        ) from None
    try:
        dialect = parsed.get_dialect()
        if parsed.get_backend_name() == "postgresql":
            if dialect.is_async:
                raise ImportError("an asyncio driver")
            dialect.import_dbapi()  # get_dialect() alone does not import the driver
    except Exception:
        if parsed.get_backend_name() == "postgresql":
            raise DatabaseError(
                f"cannot use the driver {parsed.get_driver_name()!r} of {parsed.render_as_string(hide_password=True)!r}: "
                f"use postgresql://user:pw@host:port/db (psycopg 3: pip install 'discovery-platform[postgres]')"
            ) from None
        raise DatabaseError(
            f"unsupported database URL {url!r}: the driver {parsed.drivername!r} is not installed or unknown; "
            f"use sqlite:///PATH or install the driver for {parsed.get_backend_name()}"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise DatabaseError(f"database folder {folder} does not exist: create it or set {ENV_VAR} to another path")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _encodable(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        # SQLite stores NUL, but no text with a lone surrogate passes the UTF-8 encoder.
        return statement, _clean_text(parameters, nul=False)


# ---------------------------------------------------------------- PostgreSQL

PG_TIMEZONE = "UTC"  # timestamptz values come back in UTC, as SQLite's naive UTC values are meant
_FLOAT_TAG = "__float__"


def _tag_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_TAG: repr(float(value))}  # 'nan', 'inf', '-inf'
    if isinstance(value, dict):
        return {k: _tag_nonfinite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_nonfinite(v) for v in value]
    return value


def _untag_nonfinite(obj: dict) -> Any:
    if len(obj) == 1 and obj.get(_FLOAT_TAG) in ("nan", "inf", "-inf"):
        return float(obj[_FLOAT_TAG])
    return obj


def pg_json_dumps(value: Any) -> str:
    """json.dumps for PostgreSQL's json type, which rejects NaN and Infinity: a non-finite float
    is written as {"__float__": "nan" | "inf" | "-inf"} (pg_json_loads turns it back)."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere inside
        return json.dumps(_tag_nonfinite(value), allow_nan=False)


def pg_json_loads(data: str | bytes) -> Any:
    marker = f'"{_FLOAT_TAG}"'
    if (marker.encode() if isinstance(data, (bytes, bytearray)) else marker) not in data:
        return json.loads(data)
    return json.loads(data, object_hook=_untag_nonfinite)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_text(value: Any, nul: bool = True) -> Any:
    """`value` with lone surrogates (and, with `nul`, NUL characters) in its strings replaced
    by U+FFFD, recursively through dicts, lists and tuples."""
    if isinstance(value, str):
        if nul and "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {k: _clean_text(v, nul) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean_text(v, nul) for v in value)
    return value


def _postgresql_kwargs(url: str, *, options: str = "") -> dict:
    """create_engine arguments for PostgreSQL: session options (merged with any `options` in the
    URL's query), the JSON codec above. Pool settings are the caller's."""
    parsed = make_url(url)
    wanted = f"-c timezone={PG_TIMEZONE} {options}".strip()
    given = parsed.query.get("options")
    if isinstance(given, tuple):
        given = " ".join(given)
    return {
        "connect_args": {"options": f"{given} {wanted}" if given else wanted},
        "json_serializer": pg_json_dumps,
        "json_deserializer": pg_json_loads,
    }


def _postgresql_events(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _no_nul(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        # PostgreSQL text cannot hold NUL (psycopg refuses the whole statement): U+FFFD instead.
        return statement, _clean_text(parameters)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """Returns a (cached) engine for url, with the schema migrated to the newest revision."""
    url = resolve_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        _check_url(url)
        backend = make_url(url).get_backend_name()
        kwargs: dict = {}
        if backend == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        elif backend == "postgresql":
            # Bounded: at most 30 connections per process (a worker's threads share them and wait
            # up to pool_timeout for one), each pinged on checkout so a restarted server costs no write.
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20, **_postgresql_kwargs(url))
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        engine = create_engine(url, **kwargs)
        if backend == "sqlite":
            _sqlite_pragmas(engine)
        elif backend == "postgresql":
            _postgresql_events(engine)
        if migrate:
            upgrade(engine)
        _engines[url] = engine
        return engine


_readers: dict[str, Engine] = {}


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def get_reader(url: str | None = None) -> Engine:
    """A (cached) read-only engine for browsing: never migrates, never creates a file, never writes.

    SQLite: the file is opened with `mode=ro` (a missing file is a DatabaseError, not a new empty
    database) and `query_only`, in plain deferred transactions, so a reader never takes the write
    lock that running campaigns need. PostgreSQL and others: every transaction is read only
    (`default_transaction_read_only`), on a small pool.
    """
    url = resolve_url(url)
    with _engines_lock:
        engine = _readers.get(url)
        if engine is not None:
            return engine
        _check_url(url)
        path = sqlite_path(url)
        if path is not None:
            if not path.is_file():
                raise DatabaseError(f"no database at {path}: run a campaign first (`discovery run erdos_min_overlap`) "
                                    f"or point {ENV_VAR} at an existing database")
            engine = create_engine(
                f"sqlite:///file:{path}?mode=ro&uri=true",
                connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection, _record):  # noqa: ANN001
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                cursor.execute("PRAGMA query_only=ON")
                cursor.close()
        elif make_url(url).get_backend_name() == "postgresql":
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                                   **_postgresql_kwargs(url, options="-c default_transaction_read_only=on"))
            _postgresql_events(engine)
        else:
            engine = create_engine(url)
        _readers[url] = engine
        return engine


def dispose_engines() -> None:
    """Closes every cached engine (tests and forked workers)."""
    with _engines_lock:
        for engine in [*_engines.values(), *_readers.values()]:
            engine.dispose()
        _engines.clear()
        _readers.clear()


def alembic_config():
    """An Alembic Config pointing at db/migrations (no database URL set)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    return cfg


def alembic_head() -> str:
    """The newest migration's revision id (what an up-to-date database is stamped with)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


MIGRATION_LOCK = 0x646973636F76  # a PostgreSQL advisory lock key ("discov"): one migrator at a time


def upgrade(engine: Engine) -> None:
    """Applies Alembic migrations up to head (idempotent).

    Workers that open one database at once take turns: on PostgreSQL the migration transaction
    first takes an advisory lock (released at its commit), so the second worker finds the schema
    at head instead of creating the same tables again; SQLite's BEGIN IMMEDIATE does the same.
    """
    from alembic import command

    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(_explain(engine, exc)) from None


def _explain(engine: Engine, exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if "file is not a database" in first or "malformed" in first:
        return f"database file {engine.url.database} is corrupt or not SQLite ({first}): move it aside or set {ENV_VAR}"
    if "unable to open" in first:
        return f"cannot open database file {engine.url.database} ({first}): check the path and permissions"
    if "locked" in first:
        return f"database {engine.url.database} is locked by another process ({first}): retry when it finishes"
    return f"cannot reach database {engine.url.render_as_string(hide_password=True)} ({first}): check {ENV_VAR}"


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("campaign")


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: commits on success, rolls back on error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as session:
        yield session
