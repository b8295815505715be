"""Dashboard logins: people, their roles and argon2id password hashes, in ``users.json``.

The file lives in the security directory beside the device registry (mode 0600), not in
the race database: that database is compacted and synced to the cloud, and password
hashes must never travel with it. Changes happen under an exclusive ``flock`` and are
written atomically, so ``pitbox users`` (its own process) and the dashboard (which only
reads, re-reading when the file changes) never see half a file.

Roles, from least to most: ``viewer`` (read-only: a sponsor, a spectating teammate),
``crew`` (also ticks the handoff checklist on ``/stints``), ``engineer`` (also sends
commands on ``/camera`` and pairs or revokes driver PCs on ``/devices``).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pitbox_appliance.config import SecurityConfig
from pitbox_appliance.security.devices import security_dir
from pitbox_appliance.security.files import write_private

USERS_FILE = "users.json"
USERS_VERSION = 1
MIN_PASSWORD = 8
MAX_PASSWORD = 256
# A login name: shown in the header and in the command log, so short and plain.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
#: argon2id with RFC 9106's second recommended profile (t=3, 64 MiB, p=4): about
#: 0.18 s per check on this (shared, loaded) machine; the memory cost is what slows a
#: GPU down.
HASHER = PasswordHasher()


class Role(IntEnum):
    """What a person may do on the dashboard; a higher role may do all a lower may."""

    VIEWER = 1
    CREW = 2
    ENGINEER = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """``viewer``, ``crew`` or ``engineer``; ValueError naming the choices otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(r.label for r in cls)
            raise ValueError(
                f"unknown role {text!r}: choose one of {choices}"
            ) from None


class UserError(ValueError):
    """A bad name, role or password, or a user that does not exist (or already does)."""


@dataclass(frozen=True, slots=True)
class User:
    """A person who may log in. ``password_hash`` never appears in repr or listings."""

    name: str
    role: Role
    created_at: float
    password_hash: str

    def __repr__(self) -> str:
        return f"User({self.name!r}, {self.role.label})"

    def public(self) -> dict[str, Any]:
        """What ``pitbox users list --json`` shows: never the hash."""
        return {
            "name": self.name,
            "role": self.role.label,
            "created_at": self.created_at,
        }


def users_file(config: SecurityConfig) -> Path:
    """``users.json`` in the appliance's security directory."""
    return security_dir(config) / USERS_FILE


def check_name(name: str) -> str:
    """The login name as stored (lower case); UserError says what is wrong."""
    clean = name.strip().lower()
    if not _NAME.fullmatch(clean):
        raise UserError(
            f"invalid user name {name!r}: 1-32 characters a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return clean


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password may have at most {MAX_PASSWORD} characters")


class UserStore:
    """Reads and changes ``users.json``; re-reads it when its mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    @classmethod
    def from_config(cls, config: SecurityConfig) -> UserStore:
        return cls(users_file(config))

    # ---- reading -----------------------------------------------------------------------
    def users(self) -> tuple[User, ...]:
        """Every user, by name."""
        self._refresh()
        return tuple(self._users[name] for name in sorted(self._users))

    def get(self, name: str) -> User | None:
        self._refresh()
        return self._users.get(name.strip().lower())

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password is theirs, else None. Slow on purpose (argon2id).

        An unknown name costs one hash check too, so timing does not tell which names
        exist.
        """
        user = self.get(name)
        target = user.password_hash if user is not None else _dummy_hash()
        try:
            HASHER.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user

    # ---- changing ----------------------------------------------------------------------
    def add(
        self, name: str, role: Role | str, password: str, *, replace: bool = False
    ) -> User:
        """Add a user (or, with ``replace``, set an existing user's role and password)."""
        clean = check_name(name)
        parsed = role if isinstance(role, Role) else Role.parse(role)
        check_password(password)
        user = User(clean, parsed, time.time(), HASHER.hash(password))
        with self._locked() as data:
            if clean in data and not replace:
                raise UserError(f"user {clean!r} already exists")
            data[clean] = user
        return user

    def remove(self, name: str) -> User:
        clean = name.strip().lower()
        with self._locked() as data:
            user = data.pop(clean, None)
            if user is None:
                raise UserError(f"no user {clean!r}")
        return user

    # ---- file --------------------------------------------------------------------------
    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users = _parse(self.path.read_bytes(), self.path)
            self._stamp = stamp

    @contextmanager
    def _locked(self) -> Iterator[dict[str, User]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                data = dict(_parse(self.path.read_bytes(), self.path))
            except FileNotFoundError:
                data = {}
            yield data
            write_private(self.path, _render(data))
            self._stamp = None  # read again next time
        finally:
            os.close(fd)


def _parse(raw: bytes, path: Path) -> dict[str, User]:
    try:
        data = json.loads(raw)
        if data.get("version") != USERS_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return {
            name: User(
                name,
                Role.parse(str(entry["role"])),
                float(entry["created_at"]),
                str(entry["hash"]),
            )
            for name, entry in data["users"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: unreadable users file ({exc})") from exc


def _render(users: dict[str, User]) -> bytes:
    return json.dumps(
        {
            "version": USERS_VERSION,
            "users": {
                name: {
                    "role": user.role.label,
                    "created_at": user.created_at,
                    "hash": user.password_hash,
                }
                for name, user in sorted(users.items())
            },
        },
        indent=1,
    ).encode()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, checked against for unknown names (same cost)."""
    return HASHER.hash(os.urandom(16).hex())
