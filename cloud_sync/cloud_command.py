"""``pitbox-cloud build``: from the compacted sessions in a bucket, build missing reports and every team's statboard."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from cloud_sync.targets import add_target_arguments
from driver_pc.protocol.logs import setup_logging

logger = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pitbox-cloud", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build missing reports and the statboards")
    add_target_arguments(
        build,
        "--bucket",
        "s3://bucket/prefix or file:///dir holding compacted sessions",
    )
    build.add_argument(
        "--cache", type=Path, help="local copy of the sets (default: temp)"
    )
    build.add_argument(
        "--public",
        action="append",
        default=[],
        metavar="TEAM",
        help="team (partition slug) whose board is public; repeatable; others are private",
    )
    build.add_argument(
        "--expires",
        type=int,
        default=7 * 24 * 3600,
        help="lifetime in seconds of presigned links (private boards, reports; "
        "at most 604800)",
    )
    build.add_argument("--no-pdf", action="store_true", help="reports as HTML only")
    build.add_argument("--no-reports", action="store_true", help="statboards only")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(logging.WARNING)
    if not args.bucket:
        sys.stderr.write(
            "pitbox-cloud: --bucket (or $PITBOX_SYNC_TARGET) is required\n"
        )
        return 2
    if not 1 <= args.expires <= 7 * 24 * 3600:
        sys.stderr.write("pitbox-cloud: --expires must be 1…604800 seconds\n")
        return 2
    from cloud_sync.targets import TargetError, parse_target

    try:
        target = parse_target(args.bucket, endpoint_url=args.endpoint_url)
    except ValueError as exc:
        sys.stderr.write(f"pitbox-cloud: {exc}\n")
        return 2
    try:
        if args.cache:
            result = build_all(target, args.cache, args)
        else:
            with tempfile.TemporaryDirectory(prefix="pitbox-cloud-") as tmp:
                result = build_all(target, Path(tmp), args)
    except TargetError as exc:
        sys.stderr.write(f"pitbox-cloud: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result, indent=1, default=str) + "\n")
    else:
        for path, url in result["reports"].items():
            sys.stdout.write(f"report   {path}: {url}\n")
        for team, url in result["boards"].items():
            sys.stdout.write(f"board    {team}: {url}\n")
        for problem in result["problems"]:
            sys.stdout.write(f"problem  {problem}\n")
    return 1 if result["problems"] else 0


def build_all(target: Any, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fetch every set, build the reports not yet on the target, then each team's board."""
    from cloud_sync.compacted import fetch_sets, load_session
    from cloud_sync.report.publish import REPORT_DIR, build_report, publish_report
    from cloud_sync.statboard.builder import StatboardBuilder
    from cloud_sync.statboard.publish import publish_board
    from driver_pc.protocol.manifest import ManifestError

    problems: list[str] = []
    sessions = []
    for local in fetch_sets(target, cache / "sets"):
        try:
            sessions.append(load_session(local))
        except ManifestError as exc:
            problems.append(str(exc))
    sessions.sort(key=lambda s: (str(s.manifest.session.get("stored_at")), s.path))
    keys = set(target.list_keys())
    reports: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    for i, session in enumerate(sessions):
        marker = target.key(f"{session.path}/{REPORT_DIR}/")
        existing = sorted(
            k for k in keys if k.startswith(marker) and k.endswith("/report.html")
        )
        if existing:
            reports[session.path] = existing[-1]
            continue
        if args.no_reports:
            continue
        team = session.partition["team"]
        history = [h for h in sessions[:i] if h.partition["team"] == team]
        built = build_report(
            session,
            cache / "reports" / session.path,
            history=history,
            pdf=not args.no_pdf,
        )
        if built.pdf_error:
            problems.append(f"{session.path}: {built.pdf_error}")
        publish_report(built, target)
        if built.key:
            reports[session.path] = built.key
        events += [{"kind": k, **p} for k, p in built.events]
    links = {path: target.presign(key, args.expires) for path, key in reports.items()}
    boards: dict[str, str] = {}
    for team in sorted({s.partition["team"] for s in sessions}):
        mine = [s for s in sessions if s.partition["team"] == team]
        board = StatboardBuilder(team, mine)
        boards[team] = publish_board(
            target,
            team,
            board.html(links),
            board.data(),
            public=team in args.public,
            expires_in=args.expires,
        )
    return {
        "sessions": [s.path for s in sessions],
        "reports": {p: links.get(p) for p in reports},
        "boards": boards,
        "events": events,
        "problems": problems,
    }


if __name__ == "__main__":
    raise SystemExit(main())
