"""``python -m pitbox_appliance.postrace``: the post-race worker (a supervisor program).

Reads the appliance config for the database and the API; the sync target from
``$PITBOX_SYNC_TARGET`` (none: compact and report locally); the API token from
``$PITBOX_API_TOKEN``, else the first ``pipeline`` token in ``$PITBOX_API_TOKENS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from driver_pc.protocol import data_dirs
from driver_pc.protocol.logs import setup_logging
from pitbox_appliance.api.auth import TokenConfigError, parse_tokens
from pitbox_appliance.config import ConfigError, load_config
from pitbox_appliance.postrace.progress import progress_file_for
from pitbox_appliance.postrace.worker import PostRaceConfig, PostRaceService
from pitbox_appliance.storage.database import default_db_url

LOOPBACK = {"0.0.0.0", "::", ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pitbox-postrace", description=__doc__)
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    parser.add_argument("--outbox", type=Path, help="outbox (default: user data dir)")
    parser.add_argument("--reports", type=Path, help="local reports folder")
    parser.add_argument(
        "--progress",
        type=Path,
        help="progress file (default: postrace.sqlite3 beside the database)",
    )
    parser.add_argument(
        "--idle-s",
        type=float,
        default=600.0,
        help="a session with nothing new stored for this long is finished (600)",
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=20.0,
        help="after the checkered flag, wait this long with nothing new stored (20)",
    )
    parser.add_argument("--poll-s", type=float, default=5.0, help="round interval (5)")
    parser.add_argument("--no-pdf", action="store_true", help="HTML reports only")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    try:
        config = load_config(args.config)
        token = os.environ.get("PITBOX_API_TOKEN") or _pipeline_token()
    except (ConfigError, TokenConfigError) as exc:
        sys.stderr.write(f"pitbox-postrace: {exc}\n")
        return 2
    core = config.core
    host = "127.0.0.1" if core.api_host in LOOPBACK else core.api_host
    db_url = core.db_url or default_db_url()
    service = PostRaceService(
        PostRaceConfig(
            db_url=db_url,
            outbox=args.outbox or data_dirs.outbox_dir(),
            progress=args.progress or progress_file_for(db_url),
            reports=args.reports or data_dirs.reports_dir(),
            target=os.environ.get("PITBOX_SYNC_TARGET") or None,
            endpoint_url=os.environ.get("PITBOX_S3_ENDPOINT_URL") or None,
            api=f"http://{host}:{core.api_port}" if token else None,
            api_token=token,
            idle_s=args.idle_s,
            settle_s=args.settle_s,
            poll_s=args.poll_s,
            pdf=not args.no_pdf,
        )
    )
    if not token:
        logging.getLogger(__name__).warning(
            "no API token of scope 'pipeline': reports are built, not announced"
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.run(stop)
    return 0


def _pipeline_token() -> str:
    for token, scopes in parse_tokens(os.environ.get("PITBOX_API_TOKENS", "")).items():
        if "pipeline" in scopes:
            return token
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
