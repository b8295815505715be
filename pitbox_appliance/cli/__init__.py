"""The ``pitbox`` command, the composition root: wires every package's subcommands.

This package alone may import any package (the shim's adapters and pipeline for
``import`` and ``demo``, cloud_sync's commands, training); tests/test_import_direction.py
holds everything else to the allow-list.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driver_pc.protocol.logs import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pitbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_import = sub.add_parser("import", help="import .ibt files into the database")
    p_import.add_argument("files", nargs="+", type=Path)
    p_import.add_argument(
        "--db", help="database URL (default: under the user data dir)"
    )
    p_import.add_argument("--car", default="import", help="car the files belong to")
    p_import.add_argument("--quiet", action="store_true", help="no progress bar")
    p_laps = sub.add_parser("laps", help="print stored laps")
    p_laps.add_argument("--db", help="database URL (default: under the user data dir)")
    p_laps.add_argument("--session", type=int, help="only this session id")
    p_laps.add_argument("--json", action="store_true", help="print JSON")
    p_demo = sub.add_parser(
        "demo", help="run broker, appliance, dashboard and a simulated shim"
    )
    p_demo.add_argument(
        "--replay", nargs="*", type=Path, help=".ibt files to replay too"
    )
    p_demo.add_argument("--port", type=int, default=8080, help="dashboard port")
    p_demo.add_argument("--laps", type=int, default=200, help="simulated race length")
    p_demo.add_argument(
        "--speed", type=float, default=1.0, help="simulation speed factor"
    )
    p_demo.add_argument(
        "--opponents", type=int, default=19, help="simulated cars besides ours (0-63)"
    )
    p_demo.add_argument(
        "--team-pcs",
        type=int,
        default=1,
        help="team PCs streaming for car 42 (one drives, the others spectate)",
    )
    p_demo.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds"
    )
    p_demo.add_argument(
        "--dir", type=Path, help="working directory (default: ~/.pitbox-demo)"
    )
    for add_command in _command_plugins():
        add_command(sub)
    args = parser.parse_args(argv)
    setup_logging(logging.WARNING)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    if args.command == "import":
        return _cmd_import(args)
    if args.command == "laps":
        return _cmd_laps(args)
    if args.command == "demo":
        from pitbox_appliance.cli.demo import run_demo

        return run_demo(args)
    return 2


def _command_plugins() -> list[Callable[[Any], None]]:
    """Subcommands owned by other modules.

    Each exposes ``add_command(subparsers)``, which adds its parser and sets
    ``handler`` as a parser default.
    """
    from cloud_sync.command import add_command as add_sync
    from cloud_sync.report.command import add_command as add_report_to
    from pitbox_appliance.compaction.command import StoredSessionSets
    from pitbox_appliance.compaction.command import add_command as add_compact

    def add_report(sub: Any) -> None:
        # Reports read compacted sets; the appliance finds (or compacts) the session's.
        add_report_to(sub, StoredSessionSets())

    from pitbox_appliance.cli.deadletters import add_command as add_deadletters
    from pitbox_appliance.cli.tokens import add_command as add_tokens
    from pitbox_appliance.cli.users import add_command as add_users
    from pitbox_appliance.security.command import add_command as add_devices
    from pitbox_appliance.security.remote import add_command as add_remote
    from pitbox_appliance.strategy.command import add_command as add_timing
    from training.train_command import add_command as add_train

    return [
        add_timing,
        add_compact,
        add_sync,
        add_train,
        add_report,
        add_devices,
        add_remote,
        add_deadletters,
        add_users,
        add_tokens,
    ]


def _cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pitbox_appliance.cli.importer import ImportError_, import_file, local_codec
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    for path in args.files:
        if not path.is_file():
            print(f"pitbox import: {path}: no such file", file=sys.stderr)  # noqa: T201
            return 2
    engine = open_database(args.db)
    writer = SessionWriter(engine)
    codec = local_codec()
    ingestor = Ingestor(codec, writer)
    status = 0
    for path in args.files:
        bar = tqdm(desc=path.name, unit="tick", disable=args.quiet, file=sys.stderr)
        done = [0]

        def progress(ticks: int, bar: Any = bar, done: list[int] = done) -> None:
            bar.update(ticks - done[0])
            done[0] = ticks

        try:
            import_file(path, ingestor, codec, car=args.car, progress=progress)
        except ImportError_ as exc:
            bar.close()
            writer.rollback()
            print(f"pitbox import: {exc}", file=sys.stderr)  # noqa: T201
            status = 1
            continue
        bar.close()
    writer.close()
    engine.dispose()
    return status


def _cmd_laps(args: argparse.Namespace) -> int:
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.reader import SessionReader

    engine = open_database(args.db)
    laps = [
        {
            "session": lap.session_id,
            "lap": lap.lap_number,
            "time_s": lap.lap_time,
            "driver": lap.driver_name,
            "fuel_used_l": lap.fuel_used,
            "pit": lap.pit_lap,
            "invalid": lap.invalid,
            "refuelled": lap.refuelled,
            "smoothness": lap.input_smoothness,
            "aggression": lap.input_aggression,
            "precision": lap.input_precision,
        }
        for lap in SessionReader(engine).laps(args.session)
    ]
    engine.dispose()
    if args.json:
        print(json.dumps(laps, indent=1))  # noqa: T201
    else:
        for lap in laps:
            if lap["invalid"]:
                t = "INVALID"
            else:
                t = f"{lap['time_s']:.3f}" if lap["time_s"] is not None else "  -   "
            print(f"{lap['session']:4} {lap['lap']:5} {t:>9}  {lap['driver'] or ''}")  # noqa: T201
    return 0
