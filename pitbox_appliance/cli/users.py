"""``pitbox users``: add, list and remove the people who may log in to the dashboard."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from pitbox_appliance.config import ConfigError, load_config
from pitbox_appliance.security.users import Role, UserError, UserStore, check_name


def add_command(sub: Any) -> None:
    """Add ``users`` (add, list, remove) to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "users", help="dashboard logins: add, list, remove", description=__doc__
    )
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    actions = parser.add_subparsers(dest="action", required=True)
    p_add = actions.add_parser(
        "add", help="add a person (the password is asked for, never an argument)"
    )
    p_add.add_argument("name", help="login name: a-z, 0-9, '.', '_', '-' (≤ 32)")
    p_add.add_argument(
        "--role",
        required=True,
        help="viewer (read-only), crew (handoff checklist) or engineer (commands, devices)",
    )
    p_add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    p_add.add_argument(
        "--replace",
        action="store_true",
        help="set a new role and password for an existing user",
    )
    p_list = actions.add_parser("list", help="every user and role (never a hash)")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_remove = actions.add_parser("remove", help="remove a user (logs them out)")
    p_remove.add_argument("name")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one ``pitbox users`` action; 2 on bad input."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"pitbox users: {exc}\n")
        return 2
    store = UserStore.from_config(config.security)
    try:
        if args.action == "add":
            return _add(store, args)
        if args.action == "list":
            return _list(store, args.json)
        if args.action == "remove":
            user = store.remove(args.name)
            sys.stdout.write(
                f"removed {user.name} ({user.role.label}); their dashboard sessions end\n"
            )
            return 0
    except (UserError, ValueError) as exc:
        sys.stderr.write(f"pitbox users {args.action}: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"pitbox users {args.action}: {exc}\n")
        return 1
    return 2


def _add(store: UserStore, args: argparse.Namespace) -> int:
    check_name(args.name)  # before asking for a password
    role = Role.parse(args.role)
    if store.get(args.name) is not None and not args.replace:
        raise UserError(f"user {args.name!r} already exists (--replace to change it)")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            raise UserError("the two passwords differ")
    user = store.add(args.name, role, password, replace=args.replace)
    sys.stdout.write(
        f"{'updated' if args.replace else 'added'} {user.name} as {user.role.label} "
        f"(in {store.path})\n"
    )
    return 0


def _list(store: UserStore, as_json: bool) -> int:
    users = store.users()
    if as_json:
        sys.stdout.write(json.dumps([u.public() for u in users], indent=1) + "\n")
        return 0
    if not users:
        sys.stdout.write("no users yet: pitbox users add NAME --role engineer\n")
        return 0
    for user in users:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(user.created_at))
        sys.stdout.write(f"{user.name:<32} {user.role.label:<9} added {when}\n")
    return 0
