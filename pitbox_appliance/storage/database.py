"""Opening the appliance database: engine with WAL pragmas, Alembic upgrade, default location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.url import make_url

from driver_pc.protocol import data_dirs

MIGRATIONS = Path(__file__).with_name("migrations")


def default_db_url() -> str:
    """``sqlite:///`` URL under the user's data directory."""
    path = data_dirs.database_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """Engine for the PitBox DB; SQLite gets WAL, NORMAL sync and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"unsupported database {url!r}: PitBox stores into SQLite")
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        if readonly:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    return engine


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def open_database(url: str | None = None) -> Engine:
    """Migrate then open the writer engine for ``url`` (default location if None)."""
    url = url or default_db_url()
    upgrade(url)
    return make_engine(url)
