"""``python -m pitbox_appliance.core``: the core process (ingest, storage, live state, API)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from driver_pc.protocol.logs import setup_logging
from pitbox_appliance.api.app import start_api
from pitbox_appliance.api.auth import TokenConfigError, tokens_from_env
from pitbox_appliance.config import ConfigError, load_config, team_key_from_env
from pitbox_appliance.core.service import CoreService

logger = logging.getLogger("pitbox_appliance.core")

# How long a thread holding the GIL keeps it once another thread asks (Python's
# default is 5 ms). The live thread and paho's thread wait that long for ingest to
# hand it over; 1 ms keeps that wait under the live-state budget (docs/decisions.md,
# "The live path under the full load").
SWITCH_INTERVAL_S = 0.001


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pitbox-core", description=__doc__)
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    parser.add_argument(
        "--switch-interval-s",
        type=float,
        default=SWITCH_INTERVAL_S,
        help="GIL hand-over interval (seconds; for measurements, see bench/load.py)",
    )
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    sys.setswitchinterval(args.switch_interval_s)
    try:
        config = load_config(args.config)
        key = team_key_from_env()
        tokens_from_env()  # fail at start, not at the first request
    except (ConfigError, TokenConfigError) as exc:
        sys.stderr.write(f"pitbox-core: {exc}\n")
        return 2
    service = CoreService(config, key)
    asyncio.run(_serve(service))
    return 0


async def _serve(service: CoreService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service.start()
    runner = await start_api(service)
    await stop.wait()
    await runner.cleanup()
    service.stop()


if __name__ == "__main__":
    sys.exit(main())
