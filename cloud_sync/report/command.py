"""``pitbox report SESSION``: build the report of a compacted session, publish it and announce its events.

The events go to the appliance's API (``POST /api/v1/events``, a token of scope
``pipeline``), so the core stores them in the session and publishes them; this
package opens no MQTT connection.

Which compacted set SESSION names is not this package's business: the ``pitbox``
command (the composition root) passes a ``SetResolver`` that finds (or first
compacts) it, so cloud_sync reads only compacted files, never the appliance's storage.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from cloud_sync.command import default_outbox
from cloud_sync.targets import add_target_arguments
from driver_pc.protocol import data_dirs

logger = logging.getLogger(__name__)


def default_reports() -> Path:
    """``reports/`` under the user's data directory."""
    return data_dirs.reports_dir()


class SetResolver(Protocol):
    """Turns the command line's session argument into a compacted set's directory."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the arguments that name the session (at least a positional)."""

    def resolve(self, args: argparse.Namespace, outbox: Path) -> Path:
        """The set's directory under ``outbox``; ValueError (with why) if there is none."""


def add_command(sub: Any, sets: SetResolver) -> None:
    """Add ``report`` to the ``pitbox`` subparsers; ``sets`` finds the session's set."""
    parser = sub.add_parser(
        "report",
        help="build (and publish) the post-session report of a stored session",
        description=__doc__,
    )
    sets.add_arguments(parser)
    parser.add_argument(
        "--outbox", type=Path, help=f"outbox (default: {default_outbox()})"
    )
    parser.add_argument(
        "--out", type=Path, help=f"local report folder (default: {default_reports()}/…)"
    )
    add_target_arguments(
        parser,
        "--target",
        "publish to s3://bucket/prefix or file:///dir (default: $PITBOX_SYNC_TARGET; "
        "none: local only)",
    )
    parser.add_argument(
        "--api",
        default=os.environ.get("PITBOX_API_URL"),
        help="the appliance API (http://HOST:PORT) to announce the events through "
        "($PITBOX_API_URL; token of scope 'pipeline' from $PITBOX_API_TOKEN)",
    )
    parser.add_argument(
        "--team-config",
        type=Path,
        default=os.environ.get("PITBOX_TEAM_CONFIG"),
        help="team config whose white-label the report shows when the plan "
        "includes it ($PITBOX_TEAM_CONFIG; docs/business.md)",
    )
    parser.add_argument("--no-pdf", action="store_true", help="HTML only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=functools.partial(run, sets=sets))


def run(args: argparse.Namespace, sets: SetResolver) -> int:
    """0: built (and published/announced as asked); 1: a step failed; 2: bad input."""
    from cloud_sync.compacted import load_session
    from cloud_sync.manifest import find_sets
    from cloud_sync.report.publish import build_report, local_ready, publish_report
    from cloud_sync.targets import TargetError, parse_target
    from driver_pc.protocol.manifest import ManifestError
    from driver_pc.protocol.team_config import ConfigFileError, load_team_config

    if args.api and not args.api.startswith(("http://", "https://")):
        sys.stderr.write(
            f"pitbox report: --api {args.api!r}: expected http://HOST:PORT\n"
        )
        return 2
    brand = None
    if args.team_config is not None:
        try:
            brand = load_team_config(args.team_config).branding()
        except ConfigFileError as exc:
            sys.stderr.write(f"pitbox report: {exc}\n")
            return 2
    target = None
    if args.target:
        try:
            target = parse_target(args.target, endpoint_url=args.endpoint_url)
        except ValueError as exc:
            sys.stderr.write(f"pitbox report: {exc}\n")
            return 2
    outbox: Path = args.outbox or default_outbox()
    try:
        path = sets.resolve(args, outbox)
    except ValueError as exc:
        sys.stderr.write(f"pitbox report: {exc}\n")
        return 2
    try:
        session = load_session(path)
        history = []
        for rel in find_sets(outbox):
            other = outbox / rel
            if other != path:
                history.append(load_session(other, telemetry=True))
    except ManifestError as exc:
        sys.stderr.write(f"pitbox report: {exc}\n")
        return 1
    history.sort(key=lambda s: (str(s.manifest.session.get("stored_at")), s.path))
    history = [
        h
        for h in history
        if str(h.manifest.session.get("stored_at"))
        <= str(session.manifest.session.get("stored_at"))
    ]
    out_dir = args.out or default_reports() / session.path
    built = build_report(
        session, out_dir, history=history, pdf=not args.no_pdf, brand=brand
    )
    status = 0 if built.pdf_error is None else 1
    if target is not None:
        try:
            publish_report(built, target)
        except TargetError as exc:
            sys.stderr.write(f"pitbox report: publishing failed: {exc}\n")
            status = 1
    else:
        local_ready(built)
    published = 0
    if args.api and (target is None or built.url is not None):
        try:
            published = announce(
                args.api,
                session.car,
                session.session_key,
                built.events,
                os.environ.get("PITBOX_API_TOKEN", ""),
            )
        except AnnounceError as exc:
            sys.stderr.write(f"pitbox report: {exc}\n")
            status = 1
    result = {
        "session": session.path,
        "html": str(built.local_html),
        "pdf": str(built.local_pdf) if built.local_pdf else None,
        "pdf_error": built.pdf_error,
        "url": built.url,
        "pdf_url": built.pdf_url,
        "events": [{"kind": k, **p} for k, p in built.events],
        "announced": published,
    }
    if args.json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
    else:
        sys.stdout.write(f"report: {result['html']}\n")
        if result["pdf"]:
            sys.stdout.write(f"pdf:    {result['pdf']}\n")
        if built.url:
            sys.stdout.write(f"published: {built.url}\n")
        for kind, payload in built.events:
            sys.stdout.write(f"event {kind}: {json.dumps(payload)}\n")
    return status


class AnnounceError(RuntimeError):
    """The appliance did not take the events; the message says why (never the token)."""


def announce(
    api: str,
    car: str,
    session_key: str,
    events: list[tuple[str, dict[str, Any]]],
    token: str,
    *,
    timeout: float = 10.0,
) -> int:
    """POST ``events`` of the session to the appliance (``/api/v1/events``); stored count.

    The core stores each in the session and publishes it; one it already holds is
    not stored again, so announcing twice is harmless.
    """
    body = json.dumps(
        {
            "car": car,
            "session_key": session_key,
            "events": [{"kind": k, "payload": p} for k, p in events],
        }
    ).encode()
    request = urllib.request.Request(
        api.rstrip("/") + "/api/v1/events",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        raise AnnounceError(
            f"appliance {api} refused the events: {exc.code} {detail}"
        ) from None
    except (OSError, ValueError) as exc:
        raise AnnounceError(f"appliance {api} not reachable ({exc})") from None
    stored: int = answer.get("stored", 0)
    return stored
