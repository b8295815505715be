"""``pitbox compact``: write stored sessions as compacted sets into the outbox directory."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import Session

from driver_pc.protocol import data_dirs

logger = logging.getLogger(__name__)


def default_outbox() -> Path:
    """``outbox/`` under the user's data directory (the uploader's default too)."""
    return data_dirs.outbox_dir()


def add_command(sub: Any) -> None:
    """Add ``compact`` to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "compact",
        help="compact stored sessions (Parquet + manifest) into the outbox",
        description=__doc__,
    )
    parser.add_argument(
        "--session",
        type=int,
        action="append",
        help="session id to compact (repeatable; default: every session not yet compacted)",
    )
    parser.add_argument("--db", help="database URL (default: under the user data dir)")
    parser.add_argument(
        "--outbox",
        type=Path,
        help=f"outbox directory (default: {default_outbox()})",
    )
    parser.add_argument(
        "--team", help="team name for the layout (default: from the data)"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="compact again sessions already in the outbox (replaces the local set)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Compact the chosen sessions; 0 if all succeeded, 1 if any failed, 2 on bad input."""
    from pitbox_appliance.compaction.compactor import (
        AlreadyCompactedError,
        CompactionError,
        compact_session,
        compacted_path,
    )
    from pitbox_appliance.storage.database import default_db_url, make_engine
    from pitbox_appliance.storage.models import RaceSession

    url = args.db or default_db_url()
    database = make_url(url).database
    if database and database != ":memory:" and not Path(database).exists():
        sys.stderr.write(f"pitbox compact: no database at {database}\n")
        return 2
    outbox: Path = args.outbox or default_outbox()
    engine = make_engine(url, readonly=True)
    try:
        with Session(engine) as db:
            known = list(db.scalars(select(RaceSession.id).order_by(RaceSession.id)))
        wanted = args.session or known
        missing = sorted(set(wanted) - set(known))
        if missing:
            sys.stderr.write(f"pitbox compact: no session {missing} in {url}\n")
            return 2
        status = 0
        for session_id in wanted:
            if not args.session and not args.replace:
                path = compacted_path(engine, session_id, outbox, team=args.team)
                if path.exists():
                    continue
            try:
                manifest = compact_session(
                    engine, session_id, outbox, team=args.team, replace=args.replace
                )
            except AlreadyCompactedError as exc:
                sys.stderr.write(f"pitbox compact: {exc} (use --replace)\n")
                status = 1
                continue
            except CompactionError as exc:
                sys.stderr.write(f"pitbox compact: {exc}\n")
                status = 1
                continue
            size = sum(f.bytes for f in manifest.files)
            sys.stdout.write(
                f"session {session_id}: {manifest.path} "
                f"({manifest.telemetry.get('rows', 0)} telemetry rows, {size} bytes)\n"
            )
        return status
    finally:
        engine.dispose()


class StoredSessionSets:
    """``pitbox report SESSION``'s resolver: a stored session id → its compacted set.

    Compacts the session first when the outbox does not hold it yet.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("session", type=int, help="session id (see `pitbox laps`)")
        parser.add_argument(
            "--db", help="database URL (default: under the user data dir)"
        )
        parser.add_argument("--team", help="team name for the layout when compacting")

    def resolve(self, args: argparse.Namespace, outbox: Path) -> Path:
        from pitbox_appliance.compaction.compactor import (
            CompactionError,
            compact_session,
            compacted_path,
        )
        from pitbox_appliance.storage.database import default_db_url, make_engine

        url = args.db or default_db_url()
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            raise ValueError(f"no database at {database}")
        engine = make_engine(url, readonly=True)
        try:
            path = compacted_path(engine, args.session, outbox, team=args.team)
            if not path.exists():
                compact_session(engine, args.session, outbox, team=args.team)
        except CompactionError as exc:
            raise ValueError(str(exc)) from None
        finally:
            engine.dispose()
        return path
