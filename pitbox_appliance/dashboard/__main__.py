"""``python -m pitbox_appliance.dashboard``: the NiceGUI pit-wall dashboard process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from driver_pc.protocol.logs import setup_logging
from pitbox_appliance.config import ConfigError, load_config, mqtt_password_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pitbox-dashboard", description=__doc__)
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    parser.add_argument("--host", help="bind address (overrides dashboard.host)")
    parser.add_argument("--port", type=int, help="HTTP port (overrides dashboard.port)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"pitbox-dashboard: {exc}\n")
        return 2
    overrides = {
        key: value
        for key, value in (("host", args.host), ("port", args.port))
        if value is not None
    }
    dashboard = config.dashboard.model_copy(update=overrides)
    # NiceGUI treats any process with PYTEST_CURRENT_TEST as a test run and then
    # ignores host/port; a dashboard started from a test inherits that variable.
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    # Imported here so that --help and config errors do not pay for NiceGUI's import.
    from pitbox_appliance.dashboard.app import run

    run(
        dashboard,
        config.mqtt,
        mqtt_password_from_env(),
        config.core,
        config.theme,
        config.security,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
