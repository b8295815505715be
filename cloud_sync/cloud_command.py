"""``pitbox-cloud build``: from the compacted sessions in a bucket, build missing reports and every team's statboard."""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    build.add_argument(
        "--teams",
        type=Path,
        default=os.environ.get("PITBOX_TEAMS_DIR"),
        help="directory of team configs (plan, white-label, livery); a team "
        "without one is on the free plan ($PITBOX_TEAMS_DIR)",
    )
    build.add_argument("--no-pdf", action="store_true", help="reports as HTML only")
    build.add_argument("--no-reports", action="store_true", help="statboards only")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    _premium_parsers(sub)
    return p


def _keys_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys-db",
        type=Path,
        default=os.environ.get("PITBOX_KEYS_DB") or "pitbox-keys.sqlite3",
        help="partner keys and usage (SQLite; $PITBOX_KEYS_DB)",
    )


def _teams(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teams",
        type=Path,
        default=os.environ.get("PITBOX_TEAMS_DIR"),
        help="directory of team configs; only pro teams get the premium API "
        "($PITBOX_TEAMS_DIR)",
    )


def _premium_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="the premium data API for partners")
    add_target_arguments(
        serve, "--bucket", "s3://bucket/prefix or file:///dir of compacted sessions"
    )
    _keys_db(serve)
    _teams(serve)
    serve.add_argument(
        "--mirror", type=Path, required=True, help="local mirror of the served tables"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument(
        "--refresh", type=float, default=300.0, help="seconds between bucket scans"
    )
    keys = sub.add_parser("keys", help="partner API keys: add, list, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    add = ksub.add_parser("add", help="a new key; its token is printed once")
    _keys_db(add)
    _teams(add)
    add.add_argument("--name", required=True, help="who the key is for")
    add.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="TEAM:SEASON",
        help="team slug and season (a year or *); repeatable",
    )
    add.add_argument("--rate", type=int, default=60, help="requests per minute")
    add.add_argument("--json", action="store_true")
    lst = ksub.add_parser("list", help="keys (never their tokens) and their usage")
    _keys_db(lst)
    lst.add_argument("--json", action="store_true")
    revoke = ksub.add_parser("revoke", help="revoke a key at once")
    _keys_db(revoke)
    revoke.add_argument("key_id")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(logging.WARNING)
    if args.command == "keys":
        return keys_command(args)
    if not args.bucket:
        sys.stderr.write(
            "pitbox-cloud: --bucket (or $PITBOX_SYNC_TARGET) is required\n"
        )
        return 2
    if args.command == "build" and not 1 <= args.expires <= 7 * 24 * 3600:
        sys.stderr.write("pitbox-cloud: --expires must be 1…604800 seconds\n")
        return 2
    from cloud_sync.plans import ConfigFileError, TeamDirectory
    from cloud_sync.targets import TargetError, parse_target

    try:
        target = parse_target(args.bucket, endpoint_url=args.endpoint_url)
        args.team_configs = TeamDirectory.load(args.teams)
    except (ValueError, ConfigFileError) as exc:
        sys.stderr.write(f"pitbox-cloud: {exc}\n")
        return 2
    if args.command == "serve":
        return serve_command(args, target)
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


def keys_command(args: argparse.Namespace) -> int:
    """``pitbox-cloud keys add|list|revoke``: exit 0, or 2 on bad input."""
    from cloud_sync.plans import ConfigFileError, Feature, TeamDirectory
    from cloud_sync.premium.keys import KeyStore, KeyStoreError, Scope

    store = KeyStore(args.keys_db)
    try:
        if args.keys_command == "add":
            scopes = [Scope.parse(s) for s in args.scope]
            teams = TeamDirectory.load(args.teams)
            for scope in scopes:
                if not teams.allows(scope.team, Feature.PREMIUM_API):
                    plan = teams.get(scope.team).plan.value
                    raise KeyStoreError(
                        f"team {scope.team!r} is on the {plan} plan, which does not "
                        "include the premium data API (pro does)"
                    )
            key, token = store.add(args.name, scopes, args.rate)
            if args.json:
                sys.stdout.write(json.dumps({**key.as_dict(), "token": token}) + "\n")
            else:
                sys.stdout.write(
                    f"key {key.id} for {key.name} ({', '.join(map(str, scopes))}, "
                    f"{key.rate_per_min}/min)\ntoken (shown once, stored hashed): "
                    f"{token}\n"
                )
        elif args.keys_command == "list":
            usage: dict[str, int] = {}
            for row in store.usage():
                usage[row["key_id"]] = usage.get(row["key_id"], 0) + row["requests"]
            rows = [
                {**k.as_dict(), "requests": usage.get(k.id, 0)} for k in store.keys()
            ]
            if args.json:
                sys.stdout.write(json.dumps(rows, indent=1) + "\n")
            else:
                for r in rows:
                    state = (
                        f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
                    )
                    sys.stdout.write(
                        f"{r['id']}  {r['name']}  {' '.join(r['scopes'])}  "
                        f"{r['rate_per_min']}/min  {r['requests']} requests  {state}\n"
                    )
        else:
            key = store.revoke(args.key_id)
            sys.stdout.write(f"key {key.id} revoked at {key.revoked_at}\n")
    except (KeyStoreError, ConfigFileError) as exc:
        sys.stderr.write(f"pitbox-cloud keys: {exc}\n")
        return 2
    finally:
        store.close()
    return 0


def serve_command(args: argparse.Namespace, target: Any) -> int:
    """``pitbox-cloud serve``: the premium data API until SIGTERM/SIGINT."""
    import asyncio

    from aiohttp import web

    from cloud_sync.premium.app import PremiumDataAPI
    from cloud_sync.premium.keys import KeyStore
    from cloud_sync.premium.store import SessionStore
    from cloud_sync.targets import TargetError

    store = SessionStore(target, args.mirror)
    keys = KeyStore(args.keys_db)
    api = PremiumDataAPI(store, keys, args.team_configs)

    async def refresh_forever() -> None:
        while True:
            try:
                new = await asyncio.to_thread(store.refresh)
                if new:
                    logger.warning("premium API: %d new sessions mirrored", new)
            except TargetError as exc:
                logger.warning("premium API: bucket scan failed: %s", exc)
            await asyncio.sleep(args.refresh)

    tasks: list[asyncio.Task[None]] = []

    async def on_startup(app: web.Application) -> None:
        tasks.append(asyncio.create_task(refresh_forever()))

    async def on_cleanup(app: web.Application) -> None:
        for task in tasks:
            task.cancel()
        keys.close()
        store.close()

    app = api.app()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    sys.stdout.write(f"premium data API on http://{args.host}:{args.port}/\n")
    sys.stdout.flush()
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


def build_all(target: Any, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fetch every set, build the reports not yet on the target, then each team's board."""
    from cloud_sync.compacted import fetch_sets, load_session
    from cloud_sync.plans import Feature, TeamDirectory
    from cloud_sync.report.publish import REPORT_DIR, build_report, publish_report
    from cloud_sync.statboard.builder import StatboardBuilder
    from cloud_sync.statboard.publish import publish_board
    from driver_pc.protocol.manifest import ManifestError

    teams: TeamDirectory = getattr(args, "team_configs", None) or TeamDirectory()
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
            brand=teams.get(team).branding(),
        )
        if built.pdf_error:
            problems.append(f"{session.path}: {built.pdf_error}")
        publish_report(built, target)
        if built.key:
            reports[session.path] = built.key
        events += [{"kind": k, **p} for k, p in built.events]
    links = {path: target.presign(key, args.expires) for path, key in reports.items()}
    sponsor = _sponsor_reports(target, cache, sessions, teams, keys, args, problems)
    boards: dict[str, str] = {}
    gated: dict[str, str] = {}
    for team in sorted({s.partition["team"] for s in sessions}):
        config = teams.get(team)
        public = team in args.public or config.statboard.visibility == "public"
        if not public and not config.allows(Feature.PRIVATE_STATBOARD):
            # Plan gate: a free team's board is public or not published at all.
            gated[team] = (
                f"private statboard not published: team {team!r} is on the "
                f"{config.plan.value} plan (pro includes private boards; or make "
                "it public with statboard.visibility: public or --public)"
            )
            continue
        mine = [s for s in sessions if s.partition["team"] == team]
        exposure = [
            r for r in sponsor["exposure"] if r.session in {s.path for s in mine}
        ]
        from cloud_sync.sponsor.report import board_section

        board = StatboardBuilder(
            team,
            mine,
            config.branding(),
            [board_section(exposure)] if exposure else None,
        )
        data = board.data()
        data["sponsor_exposure"] = [r.as_dict() for r in exposure]
        boards[team] = publish_board(
            target,
            team,
            board.html(links),
            data,
            public=public,
            expires_in=args.expires,
        )
    return {
        "sessions": [s.path for s in sessions],
        "reports": {p: links.get(p) for p in reports},
        "sponsor_reports": {
            p: target.presign(k, args.expires) for p, k in sponsor["keys"].items()
        },
        "boards": boards,
        "gated": gated,
        "events": events,
        "problems": problems,
    }


def _sponsor_reports(
    target: Any,
    cache: Path,
    sessions: list[Any],
    teams: Any,
    keys: set[str],
    args: argparse.Namespace,
    problems: list[str],
) -> dict[str, Any]:
    """Exposure of every session with camera or standings data; a sponsor report for each.

    Sessions of a team whose config names a livery get per-sponsor figures; a report
    already on the target for a session is not built again.
    """
    from cloud_sync.plans import ConfigFileError
    from cloud_sync.sponsor.exposure import SponsorExposureTracker
    from cloud_sync.sponsor.livery import LiveryConfig, load_livery
    from cloud_sync.sponsor.report import (
        SPONSOR_DIR,
        build_sponsor_report,
        publish_sponsor_report,
    )

    liveries: dict[str, LiveryConfig | None] = {}
    exposure = []
    published: dict[str, str] = {}
    for session in sessions:
        team = session.partition["team"]
        config = teams.get(team)
        if team not in liveries:
            liveries[team] = None
            if config.livery is not None:
                try:
                    liveries[team] = load_livery(config.path(config.livery))
                except ConfigFileError as exc:
                    problems.append(str(exc))
        report = SponsorExposureTracker(
            session, liveries[team], config.broadcast_source
        ).report()
        if report.on_camera_s is None and report.laps_led is None:
            continue
        exposure.append(report)
        marker = target.key(f"{session.path}/{SPONSOR_DIR}/")
        existing = sorted(
            k for k in keys if k.startswith(marker) and k.endswith("/sponsor.html")
        )
        if existing:
            published[session.path] = existing[-1]
            continue
        if args.no_reports:
            continue
        files = build_sponsor_report(
            report,
            cache / "sponsor" / session.path,
            config.branding(),
            pdf=not args.no_pdf,
        )
        if files.pdf_error:
            problems.append(f"{session.path}: sponsor report: {files.pdf_error}")
        publish_sponsor_report(files, target)
        if files.key:
            published[session.path] = files.key
    return {"exposure": exposure, "keys": published}


if __name__ == "__main__":
    raise SystemExit(main())
