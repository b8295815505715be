"""``python -m cloud_sync sync …``: the uploader without the appliance's CLI (the supervisor program)."""

from __future__ import annotations

import argparse
import logging

from cloud_sync.command import add_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud_sync")
    sub = parser.add_subparsers(dest="command", required=True)
    add_command(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
