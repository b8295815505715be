"""``python -m cloud_sync sync …``: the uploader without the appliance's CLI (the supervisor program)."""

from __future__ import annotations

import argparse
import logging

from cloud_sync.command import add_command
from driver_pc.protocol.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud_sync")
    sub = parser.add_subparsers(dest="command", required=True)
    add_command(sub)
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
