"""``pitbox tokens``: mint, list and revoke API tokens bound to a person, device or service.

The token file (``api_tokens.json`` in the security directory, 0600) holds digests only;
the running core re-reads it when it changes, so a new token works and a revoked one
stops at once. A new token's secret is printed once, here, and never stored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pitbox_appliance.api.auth import SCOPES, TokenFile, check_principal, token_file
from pitbox_appliance.config import ConfigError, load_config
from pitbox_appliance.security.devices import security_dir


def add_command(sub: Any) -> None:
    """Add ``tokens`` (add, list, revoke) to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "tokens", help="API tokens: add, list, revoke", description=__doc__
    )
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    actions = parser.add_subparsers(dest="action", required=True)
    p_add = actions.add_parser("add", help="mint a token (its secret is shown once)")
    p_add.add_argument(
        "principal", help="whose it is: user:<name>, device:<source> or service:<name>"
    )
    p_add.add_argument(
        "--scopes",
        required=True,
        help=f"'+'-separated, among {', '.join(sorted(SCOPES))} (e.g. read+commands)",
    )
    p_add.add_argument(
        "--days", type=float, help="stop working after this many days (default: never)"
    )
    p_list = actions.add_parser("list", help="every token's principal and scopes")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_revoke = actions.add_parser("revoke", help="remove every token of a principal")
    p_revoke.add_argument("principal")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one ``pitbox tokens`` action; 2 on bad input."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"pitbox tokens: {exc}\n")
        return 2
    tokens = token_file(security_dir(config.security))
    try:
        if args.action == "add":
            ttl_s = None if args.days is None else args.days * 86400
            return _add(tokens, args.principal, args.scopes, ttl_s)
        if args.action == "list":
            return _list(tokens, args.json)
        return _revoke(tokens, check_principal(args.principal))
    except ValueError as exc:
        sys.stderr.write(f"pitbox tokens: {exc}\n")
        return 2


def _add(tokens: TokenFile, principal: str, scopes: str, ttl_s: float | None) -> int:
    minted = tokens.add(principal, filter(None, scopes.split("+")), ttl_s)
    until = minted.token.expires_at
    sys.stdout.write(
        f"API token for {minted.token.principal} "
        f"({'+'.join(sorted(minted.token.scopes))}"
        f"{', until ' + _when(until) if until is not None else ''}), shown only now:\n"
        f"{minted.secret}\n"
    )
    return 0


def _list(tokens: TokenFile, as_json: bool) -> int:
    listing = tokens.listing()
    if as_json:
        rows = [
            {
                "principal": token.principal,
                "scopes": sorted(token.scopes),
                "created_at": created,
                "expires_at": token.expires_at,
                "sha256_prefix": token.digest[:12],
            }
            for token, created in listing
        ]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return 0
    for token, created in listing:
        scopes = "+".join(sorted(token.scopes))
        until = "never" if token.expires_at is None else _when(token.expires_at)
        state = " (expired)" if token.expired() else ""
        sys.stdout.write(
            f"{token.principal:<32} {scopes:<28} made {_when(created)}, "
            f"until {until}{state}\n"
        )
    return 0


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))


def _revoke(tokens: TokenFile, principal: str) -> int:
    removed = tokens.revoke(principal)
    if not removed:
        sys.stderr.write(f"pitbox tokens: no token of {principal} in {tokens.path}\n")
        return 2
    sys.stdout.write(f"revoked {removed} token(s) of {principal}\n")
    return 0
