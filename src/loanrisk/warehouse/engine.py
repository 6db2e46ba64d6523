"""Engines and migrations. The warehouse is SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from loanrisk.config import Settings, mask_url
from loanrisk.constants import BUILTIN_PROFILE, Table
from loanrisk.errors import UnreachableError, WarehouseError
from loanrisk.profiles.loader import load_profile, profile_fingerprint
from loanrisk.profiles.model import Profile
from loanrisk.warehouse.schema import warehouse_meta

log = logging.getLogger(__name__)


def make_engine(url: str, *, echo: bool = False) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        # pool_pre_ping: after a database restart, stale connections are replaced, not used.
        engine = sa.create_engine(url, echo=echo, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise WarehouseError(f"cannot use warehouse URL {mask_url(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# PostgreSQL advisory lock ids ("loan" and "load" in ASCII).
MIGRATION_LOCK = 0x6C6F616E
LOAD_LOCK = 0x6C6F6164


@contextmanager
def serialised(engine: sa.Engine, lock_id: int, name: str) -> Iterator[sa.Connection]:
    """A transaction that processes take one at a time: a transaction-scoped advisory lock
    on PostgreSQL, a lock file ``<database>.<name>-lock`` beside a SQLite database."""
    with _sqlite_lock(engine, name), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
        yield conn


def migrate(
    engine: sa.Engine, profile: Profile | None, *, default: str = BUILTIN_PROFILE
) -> Profile:
    """Bring the schema to the latest revision; refuse a warehouse built for another
    profile. Returns the warehouse's profile: ``profile`` when given (and remembered from
    now on), else the one the warehouse remembers, else ``default``.

    Processes that start together (service workers, replicas, a CronJob) migrate one at a
    time: a transaction-scoped advisory lock on PostgreSQL, a lock file beside a SQLite
    database. The ones that wait find the schema current and change nothing.
    """
    try:
        with serialised(engine, MIGRATION_LOCK, "migrate") as conn:
            meta = _meta(conn)
            if profile is None:
                remembered = meta.get(PROFILE_DOCUMENT)
                profile = (
                    Profile.model_validate_json(remembered) if remembered else load_profile(default)
                )
            _check_profile(meta, profile)
            config = Config()
            config.set_main_option(
                "script_location", str(resources.files("loanrisk.warehouse") / "migrations")
            )
            config.attributes["connection"] = conn
            config.attributes["profile"] = profile
            command.upgrade(config, "head")
            document = profile.model_dump_json()
            if meta.get(PROFILE_DOCUMENT) != document:
                _remember(conn, PROFILE_DOCUMENT, document)
                _remember(conn, "profile", profile.name)
        return profile
    except OperationalError as exc:
        raise UnreachableError(
            f"cannot reach the warehouse at {mask_url(str(engine.url.render_as_string(False)))}: "
            f"{exc.orig}"
        ) from exc


@contextmanager
def _sqlite_lock(engine: sa.Engine, name: str) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.{name}-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


PROFILE_DOCUMENT = "profile_document"  # the profile last given, as JSON


def _meta(conn: sa.Connection) -> dict[str, str]:
    if not sa.inspect(conn).has_table(Table.WAREHOUSE_META):
        return {}
    return dict(conn.execute(sa.select(warehouse_meta.c.key, warehouse_meta.c.value)).all())


def _remember(conn: sa.Connection, key: str, value: str) -> None:
    conn.execute(sa.delete(warehouse_meta).where(warehouse_meta.c.key == key))
    conn.execute(sa.insert(warehouse_meta).values(key=key, value=value))


def _check_profile(meta: dict[str, str], profile: Profile) -> None:
    stored = meta.get("profile_fingerprint")
    if stored is not None and stored != profile_fingerprint(profile):
        raise WarehouseError(
            f"this warehouse was created for profile {meta.get('profile')!r} with other columns "
            f"(fingerprint {stored}, now {profile_fingerprint(profile)}); give the warehouse's "
            "profile (--profile, once: it is remembered), or use another home folder or "
            "warehouse URL for this profile"
        )


class Warehouse:
    """The warehouse of one run: an engine and the profile it holds, migrated once.

    Made once by the entry point (a command, the pipeline, the service lifespan) and passed
    to every stage; ``with Warehouse.open(settings) as warehouse:`` closes its connections.
    """

    def __init__(self, engine: sa.Engine, profile: Profile) -> None:
        self.engine = engine
        self.profile = profile

    @classmethod
    def open(cls, settings: Settings) -> Warehouse:
        """Engine for the configured warehouse, migrated to the latest schema.

        The profile is the one given (``--profile``, ``LOANRISK_DATA__PROFILE``), else the
        one this warehouse remembers from the last time one was given, else the default.
        """
        chosen = load_profile(settings.data.profile) if settings.data.profile_chosen else None
        if settings.warehouse.url is None:
            settings.ensure_home()
        engine = make_engine(settings.warehouse_url, echo=settings.warehouse.echo_sql)
        try:
            profile = migrate(engine, chosen, default=settings.data.profile)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, profile)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
