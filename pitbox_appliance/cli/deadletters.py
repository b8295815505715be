"""``pitbox deadletters``: list, show and retry the messages the core kept aside.

``list`` and ``show`` read the database (read-only; they work with the core stopped).
``retry`` asks the running core, through ``POST /api/v1/deadletters/{id}/retry``: the
core is the database's only writer, so a retry goes through the very ingest path that
failed, next to the live messages, and never races it. With the core stopped, retry
says so and does nothing (docs/decisions.md). It needs a token with the ``commands``
scope from ``PITBOX_API_TOKENS`` (or ``--token``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from pitbox_appliance.api.auth import TokenConfigError, parse_tokens
from pitbox_appliance.config import ApplianceConfig, ConfigError, load_config
from pitbox_appliance.storage.database import default_db_url, make_engine
from pitbox_appliance.storage.dead_letters import (
    DeadLetterInfo,
    get_dead_letter,
    list_dead_letters,
)

NAME = "pitbox deadletters"
REQUEST_TIMEOUT_S = 30.0


def add_command(sub: Any) -> None:
    """Add ``deadletters`` (list, show, retry) to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "deadletters",
        help="list, show and retry messages the core could not ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    parser.add_argument(
        "--db", help="database URL (default: the config's, else the user data dir)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p_list = actions.add_parser("list", help="id, time, source, kind and reason")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_show = actions.add_parser("show", help="everything of one, with its traceback")
    p_show.add_argument("id", type=int, help="dead letter id")
    p_show.add_argument("--json", action="store_true", help="print JSON")
    p_retry = actions.add_parser(
        "retry", help="ingest again through the running core (after a fix)"
    )
    which = p_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", help="dead letter id")
    which.add_argument("--all", action="store_true", help="every dead letter")
    p_retry.add_argument(
        "--api", help="the core's API (default: from the config's api_host/api_port)"
    )
    p_retry.add_argument(
        "--token", help="API token with scope commands (default: PITBOX_API_TOKENS)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one ``pitbox deadletters`` action: 0 done, 1 a retry failed, 2 cannot."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    url = args.db or config.core.db_url or default_db_url()
    engine = make_engine(url, readonly=True)
    try:
        if args.action == "list":
            return _list(list_dead_letters(engine), args.json)
        if args.action == "show":
            return _show(engine, args.id, args.json)
        ids = sorted(i.id for i in list_dead_letters(engine)) if args.all else [args.id]
    except OperationalError as exc:
        if "no such table" in str(exc.orig):
            sys.stdout.write(
                "no dead letters: the database has no dead-letter table yet (the "
                "core adds it when this version first starts)\n"
            )
            return 0
        return _fail(f"cannot read the dead letters in {url}: {exc.orig}")
    finally:
        engine.dispose()
    return _retry(config, ids, args.api, args.token)


def _list(letters: list[DeadLetterInfo], as_json: bool) -> int:
    if as_json:
        rows = [_info_json(letter) for letter in letters]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return 0
    if not letters:
        sys.stdout.write("no dead letters\n")
        return 0
    for letter in letters:
        sys.stdout.write(
            f"{letter.id:6}  {_when(letter.received_at)}  "
            f"{letter.source or '?':<16} {letter.kind:<14} {letter.reason}"
            f"{f'  (tried {letter.attempts}x)' if letter.attempts > 1 else ''}\n"
        )
    return 0


def _show(engine: Any, letter_id: int, as_json: bool) -> int:
    record = get_dead_letter(engine, letter_id)
    if record is None:
        return _fail(f"no dead letter {letter_id}")
    info = record.info
    if as_json:
        out = {
            **_info_json(info),
            "detail": record.detail,
            "traceback": record.traceback,
            "payload_base64": base64.b64encode(record.payload).decode(),
        }
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
        return 0
    sys.stdout.write(
        f"dead letter {info.id}\n"
        f"  received   {_when(info.received_at)}\n"
        f"  topic      {info.topic or '-'}\n"
        f"  source     {info.source or '?'}  seq {info.seq}\n"
        f"  kind       {info.kind}\n"
        f"  reason     {info.reason}\n"
        f"  attempts   {info.attempts} (last {_when(info.last_attempt_at)})\n"
        f"  message    {info.size} bytes: {record.payload[:48].hex()}"
        f"{'…' if info.size > 48 else ''}\n"
        f"  error      {record.detail}\n"
    )
    if record.traceback:
        sys.stdout.write("  traceback\n")
        for line in record.traceback.rstrip().splitlines():
            sys.stdout.write(f"    {line}\n")
    return 0


def _retry(
    config: ApplianceConfig, ids: list[int], api: str | None, token: str | None
) -> int:
    if not ids:
        sys.stdout.write("no dead letters\n")
        return 0
    base = (api or _api_url(config)).rstrip("/")
    token = token or _commands_token(os.environ.get("PITBOX_API_TOKENS", ""))
    if token is None:
        return _fail(
            "retry needs an API token with scope 'commands': set PITBOX_API_TOKENS "
            "(as for the core) or pass --token"
        )
    status = 0
    for letter_id in ids:
        try:
            answer = _post(f"{base}/api/v1/deadletters/{letter_id}/retry", token)
        except urllib.error.HTTPError as exc:
            error = _error_of(exc)
            if exc.code in (401, 403, 503):
                return _fail(f"{letter_id}: {error}")
            sys.stdout.write(f"{letter_id}: not retried: {error}\n")
            status = 1
            continue
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return _fail(
                f"the core's API at {base} does not answer ({reason}). Retries are "
                "done by the running core, the database's only writer: start it "
                "(supervisorctl start pitbox-core) and retry"
            )
        outcome = answer.get("outcome")
        if outcome == "stored":
            sys.stdout.write(f"{letter_id}: stored (dead letter removed)\n")
        else:
            sys.stdout.write(
                f"{letter_id}: {outcome} again: {answer.get('reason')} (kept)\n"
            )
            status = 1
    return status


# ---- helpers ----------------------------------------------------------------------------
def _post(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url, method="POST", data=b"", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
        data: Any = json.loads(reply.read() or b"{}")
    return data if isinstance(data, dict) else {}


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        data: Any = json.loads(exc.read() or b"{}")
    except ValueError:
        data = {}
    if isinstance(data, dict) and data.get("error"):
        return f"HTTP {exc.code}: {data['error']}"
    return f"HTTP {exc.code}"


def _api_url(config: ApplianceConfig) -> str:
    host = config.core.api_host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.core.api_port}"


def _commands_token(tokens: str) -> str | None:
    try:
        parsed = parse_tokens(tokens)
    except TokenConfigError:
        return None
    return next((t for t, scopes in parsed.items() if "commands" in scopes), None)


def _info_json(letter: DeadLetterInfo) -> dict[str, Any]:
    return {
        "id": letter.id,
        "received_at": letter.received_at,
        "topic": letter.topic,
        "source": letter.source,
        "seq": letter.seq,
        "kind": letter.kind,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "last_attempt_at": letter.last_attempt_at,
        "bytes": letter.size,
    }


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix)) + "Z"


def _fail(message: str) -> int:
    sys.stderr.write(f"{NAME}: {message}\n")
    return 2
