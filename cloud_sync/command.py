"""``pitbox sync``: upload the compacted sessions in the outbox directory to S3 or a directory."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cloud_sync.outbox import OUTBOX_DB_NAME, EntryState, Outbox
from cloud_sync.targets import add_target_arguments, target_url
from driver_pc.protocol import data_dirs

logger = logging.getLogger(__name__)


def default_outbox() -> Path:
    """``outbox/`` under the user's data directory (where ``pitbox compact`` writes)."""
    return data_dirs.outbox_dir()


def add_command(sub: Any) -> None:
    """Add ``sync`` to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "sync",
        help="upload compacted sessions from the outbox (s3:// or file://)",
        description=__doc__,
    )
    add_target_arguments(
        parser,
        "--target",
        "s3://bucket/prefix or file:///dir (default: $PITBOX_SYNC_TARGET)",
    )
    parser.add_argument(
        "--outbox",
        type=Path,
        help=f"outbox directory written by `pitbox compact` (default: {default_outbox()})",
    )
    parser.add_argument(
        "--db",
        help=f"outbox queue database URL, sqlite:///FILE (default: OUTBOX/{OUTBOX_DB_NAME})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--status", action="store_true", help="show the queue and upload nothing"
    )
    mode.add_argument(
        "--retry",
        action="store_true",
        help="try failed sessions again, and pending ones without waiting for backoff",
    )
    mode.add_argument(
        "--force",
        action="store_true",
        help="check and complete sessions already done too (never overwrites)",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="tries per object in this run while the target is unreachable "
        "(exponential backoff from 1 s; default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    mode.add_argument(
        "--watch",
        action="store_true",
        help="keep running (the supervisor program): upload new sets as they appear, "
        "back off while offline; stops on SIGTERM/SIGINT",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=30.0,
        help="with --watch: longest wait between rounds in seconds (default 30)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """0: every queued session is on the target; 1: some are pending or failed; 2: bad input."""
    outbox_dir: Path = args.outbox or default_outbox()
    try:
        db_path = _db_path(args.db, outbox_dir)
    except ValueError as exc:
        sys.stderr.write(f"pitbox sync: {exc}\n")
        return 2
    if args.status:
        with Outbox(db_path) as outbox:
            entries = outbox.entries(target_url(args.target) if args.target else None)
        _print_status(entries, args.json)
        return 0
    if args.watch:
        return _watch(args, outbox_dir, db_path)
    if not args.target:
        sys.stderr.write("pitbox sync: --target (or $PITBOX_SYNC_TARGET) is required\n")
        return 2
    from cloud_sync.targets import parse_target
    from cloud_sync.uploader import Backoff, Uploader

    try:
        target = parse_target(args.target, endpoint_url=args.endpoint_url)
    except ValueError as exc:
        sys.stderr.write(f"pitbox sync: {exc}\n")
        return 2
    with Outbox(db_path) as outbox:
        if args.retry:
            outbox.requeue(target.url, EntryState.FAILED)
        if args.force:
            outbox.requeue(target.url, EntryState.DONE)
        backoff = Backoff(attempts=max(1, args.attempts))
        report = Uploader(outbox, outbox_dir, target, backoff).run_once(
            ignore_wait=args.retry or args.force
        )
        left = [e for e in outbox.entries(target.url) if e.state is not EntryState.DONE]
    if report.busy:
        sys.stderr.write("pitbox sync: another uploader is running on this outbox\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report.__dict__, indent=1) + "\n")
    else:
        for path in report.done:
            sys.stdout.write(f"done     {path}\n")
        for path in report.pending:
            sys.stdout.write(f"pending  {path}: {report.errors.get(path, '')}\n")
        for path in report.failed:
            sys.stdout.write(f"failed   {path}: {report.errors[path]}\n")
        sys.stdout.write(
            f"{len(report.done)} sessions done ({report.uploaded} objects written, "
            f"{report.already_there} already there), {len(report.pending)} pending, "
            f"{len(report.failed)} failed\n"
        )
        if left:
            sys.stdout.write(
                f"{len(left)} sessions not on the target yet "
                "(see --status; --retry tries failed ones again)\n"
            )
    return 0 if not left else 1


def _watch(args: argparse.Namespace, outbox_dir: Path, db_path: Path) -> int:
    """The uploader program: rounds until SIGTERM/SIGINT; 2 only for a bad target.

    With no target configured it idles (logging why) instead of exiting, so the
    supervisor does not restart it in a loop on an appliance with no cloud.
    """
    import signal
    import threading

    from cloud_sync.targets import parse_target
    from cloud_sync.uploader import Backoff, Uploader

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if not args.target:
        logger.warning("no upload target configured ($PITBOX_SYNC_TARGET); idle")
        sys.stdout.write("pitbox sync --watch: no target configured; idle\n")
        sys.stdout.flush()
        stop.wait()
        return 0
    try:
        target = parse_target(args.target, endpoint_url=args.endpoint_url)
    except ValueError as exc:
        sys.stderr.write(f"pitbox sync: {exc}\n")
        return 2
    outbox_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.write(f"pitbox sync --watch: {outbox_dir} → {target.url}\n")
    sys.stdout.flush()
    with Outbox(db_path) as outbox:
        uploader = Uploader(
            outbox, outbox_dir, target, Backoff(attempts=max(1, args.attempts))
        )
        uploader.run_forever(stop, poll=max(0.1, args.poll))
    return 0


def _db_path(url: str | None, outbox_dir: Path) -> Path:
    if not url:
        return outbox_dir / OUTBOX_DB_NAME
    parsed = urlparse(url)
    if parsed.scheme != "sqlite" or parsed.netloc or len(parsed.path) < 2:
        raise ValueError(f"--db {url!r}: expected sqlite:///FILE")
    # As SQLAlchemy reads them: sqlite:///relative/file, sqlite:////absolute/file
    return Path(parsed.path[1:])


def _print_status(entries: list[Any], as_json: bool) -> None:
    rows = [
        {
            "session": e.path,
            "target": e.target,
            "state": str(e.state),
            "attempts": e.attempts,
            "queued_at": _iso(e.queued_at),
            "done_at": _iso(e.done_at),
            "next_attempt_at": _iso(e.next_attempt_at) if e.next_attempt_at else None,
            "last_error": e.last_error,
        }
        for e in entries
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    if not rows:
        sys.stdout.write("outbox queue is empty\n")
    for row in rows:
        line = (
            f"{row['state']:8} {row['attempts']:3}  {row['session']}  → {row['target']}"
        )
        if row["last_error"]:
            line += f"\n         last error: {row['last_error']}"
        if row["state"] == "pending" and row["next_attempt_at"]:
            line += f"\n         next attempt: {row['next_attempt_at']}"
        sys.stdout.write(line + "\n")


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="seconds")
