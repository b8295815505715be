"""``pitbox-shim``: the driver-PC program that streams a sim to the pit appliance."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from driver_pc.adapters.base import (
    AdapterUnavailableError,
    adapter_names,
    create_adapter,
)
from driver_pc.pairing import ca_path, default_credentials_path, load_credentials
from driver_pc.protocol import data_dirs
from driver_pc.protocol.logs import setup_logging
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.service import ShimConfig, ShimService
from driver_pc.video import VideoSegmentWatcher, VideoTarget

logger = logging.getLogger("driver_pc")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pair"]:
        from driver_pc.pairing import main as pair_main

        return pair_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="pitbox-shim",
        description=__doc__,
        epilog="Pair first: pitbox-shim pair --appliance URL --code CODE",
    )
    parser.add_argument("--adapter", default="iracing", choices=adapter_names())
    parser.add_argument("--file", help="recording for the 'ibt' and 'dump' adapters")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="replay speed, 0 = fastest"
    )
    parser.add_argument("--laps", type=int, default=30, help="simulator race length")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed")
    parser.add_argument(
        "--opponents", type=int, default=0, help="simulator: cars besides ours (0-63)"
    )
    parser.add_argument("--session-key", help="override the session key")
    parser.add_argument(
        "--source",
        help="legacy (with PITBOX_TEAM_KEY): this PC's id, e.g. car42-pc1; "
        "paired PCs take it from their credentials",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        help="credentials from `pitbox-shim pair` (default: user config dir)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--username", help="broker user (default: the source id)")
    parser.add_argument(
        "--spool", type=Path, help="spool file (default: user data dir)"
    )
    parser.add_argument(
        "--video-dir",
        type=Path,
        help="upload finished POV video segments from this folder (e.g. OBS output)",
    )
    parser.add_argument(
        "--api-url",
        help="appliance API for video uploads (default: http://<host>:8081); "
        "token in PITBOX_API_TOKEN",
    )
    args = parser.parse_args(argv)
    setup_logging(logging.WARNING)
    key_hex = os.environ.get("PITBOX_TEAM_KEY", "")
    password = os.environ.get("PITBOX_MQTT_PASSWORD", "")
    if args.credentials is not None or not (args.source and key_hex):
        # Paired: TLS to the appliance's broker, this PC's own login and key.
        path = args.credentials or default_credentials_path()
        if not path.exists() and not key_hex:
            sys.stderr.write(
                f"pitbox-shim: not paired (no {path}); run `pitbox-shim pair`, "
                "or give --source with PITBOX_TEAM_KEY (legacy)\n"
            )
            return 2
        try:
            creds = load_credentials(path)
        except ValueError as exc:
            sys.stderr.write(f"pitbox-shim: {exc}\n")
            return 2
        source: str = creds.source
        team_key = creds.message_key
        broker = creds.broker_address(ca_path(path))
    else:
        try:
            team_key = bytes.fromhex(key_hex)
            if len(team_key) != 32:
                raise ValueError
        except ValueError:
            sys.stderr.write(
                "pitbox-shim: PITBOX_TEAM_KEY must hold the 64-hex-digit team key"
                + "\n"
            )
            return 2
        source = args.source
        broker = BrokerAddress(
            args.host, args.port, args.username or args.source, password
        )
    options: dict[str, Any] = {}
    if args.adapter in ("ibt", "dump"):
        if not args.file:
            sys.stderr.write(
                f"pitbox-shim: --file is required for the {args.adapter} adapter" + "\n"
            )
            return 2
        options = {"path": args.file, "speed": args.speed}
    elif args.adapter == "simulator":
        options = {
            "laps": args.laps,
            "speed": args.speed,
            "seed": args.seed,
            "opponents": args.opponents,
        }
    if args.session_key:
        options["session_key"] = args.session_key
    try:
        adapter = create_adapter(args.adapter, **options)
    except AdapterUnavailableError as exc:
        sys.stderr.write(f"pitbox-shim: {exc}" + "\n")
        return 1
    spool = args.spool or data_dirs.shim_spool_file(source)
    config = ShimConfig(
        source=source,
        broker=broker,
        team_key=team_key,
        spool_path=str(spool),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = ShimService(config, adapter)
    if args.video_dir is not None:
        _start_video_uploads(args, service, stop, spool.parent)
    service.run(stop)
    return 0


def _start_video_uploads(
    args: argparse.Namespace, service: ShimService, stop: threading.Event, data: Path
) -> None:
    """Run the video-segment watcher in its own thread (never on the 60 Hz path)."""
    target = VideoTarget(
        api_url=args.api_url or f"http://{args.host}:8081",
        source=args.source,
        token=os.environ.get("PITBOX_API_TOKEN", ""),
    )
    watcher = VideoSegmentWatcher(
        folder=args.video_dir,
        target=target,
        clock=service.session_clock,
        state_path=data / f"{args.source}.videos.json",
    )
    threading.Thread(
        target=watcher.run, args=(stop,), name="video", daemon=True
    ).start()


if __name__ == "__main__":
    sys.exit(main())
