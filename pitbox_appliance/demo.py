"""``pitbox demo``: not built yet in this commit."""

from __future__ import annotations

import argparse


def run_demo(args: argparse.Namespace) -> int:
    raise SystemExit("pitbox demo: not built yet")
