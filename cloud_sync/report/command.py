"""``pitbox report SESSION``: build the report of a compacted session, publish it and announce its events.

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
import threading
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
        "--broker",
        default=os.environ.get("PITBOX_MQTT_BROKER"),
        help="HOST:PORT of the broker to announce the events on ($PITBOX_MQTT_BROKER; "
        "password from $PITBOX_MQTT_PASSWORD)",
    )
    parser.add_argument(
        "--broker-user",
        default="pitbox-report",
        help="broker login (default pitbox-report; the broker makes it the client id, "
        "so two reports at once would disconnect each other)",
    )
    parser.add_argument("--no-pdf", action="store_true", help="HTML only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=functools.partial(run, sets=sets))


def run(args: argparse.Namespace, sets: SetResolver) -> int:
    """0: built (and published/announced as asked); 1: a step failed; 2: bad input."""
    from cloud_sync.compacted import load_session
    from cloud_sync.manifest import find_sets
    from cloud_sync.report.publish import build_report, publish_report
    from cloud_sync.targets import TargetError, parse_target
    from driver_pc.protocol.manifest import ManifestError

    broker = None
    if args.broker:
        try:
            broker = _broker(args.broker)
        except ValueError as exc:
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
    built = build_report(session, out_dir, history=history, pdf=not args.no_pdf)
    status = 0 if built.pdf_error is None else 1
    if target is not None:
        try:
            publish_report(built, target)
        except TargetError as exc:
            sys.stderr.write(f"pitbox report: publishing failed: {exc}\n")
            status = 1
    published = 0
    if broker is not None:
        try:
            published = announce(session.car, built.events, *broker, args.broker_user)
        except RuntimeError as exc:
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


def _broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker {text!r}: expected HOST:PORT")
    return host, int(port)


def announce(
    car: str,
    events: list[tuple[str, dict[str, Any]]],
    host: str,
    port: int,
    user: str,
    *,
    timeout: float = 10.0,
) -> int:
    """Publish ``events`` on ``topics.events(car)`` (QoS 1); waits for every PUBACK."""
    from driver_pc.protocol import topics
    from driver_pc.protocol.events import encode_event
    from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection

    messages = [
        json.dumps(encode_event(car, kind, payload)) for kind, payload in events
    ]
    topic = topics.events(car)
    password = os.environ.get("PITBOX_MQTT_PASSWORD", "")
    # The broker replaces the client id with the login (use_username_as_clientid).
    connection = MqttConnection(user, BrokerAddress(host, port, user, password))
    acked: set[int] = set()
    done = threading.Condition()

    def on_published(mid: int) -> None:
        with done:
            acked.add(mid)
            done.notify_all()

    connection.on_published = on_published
    connection.start()
    try:
        if not connection.connected.wait(timeout):
            reason = connection.refused or "no answer"
            raise RuntimeError(f"broker {host}:{port} not reachable ({reason})")
        mids = [connection.publish(topic, body) for body in messages]
        if -1 in mids:
            raise RuntimeError(f"broker {host}:{port}: publish refused (disconnected)")
        with done:
            if not done.wait_for(lambda: acked >= set(mids), timeout):
                raise RuntimeError(f"broker {host}:{port}: events not acknowledged")
        return len(mids)
    finally:
        connection.stop()
