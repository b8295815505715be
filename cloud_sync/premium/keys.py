"""Partner API keys: scopes per team and season, stored hashed (SHA-256) in SQLite, with usage metered per key and day."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_PREFIX = "pbx"
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
SLUG = re.compile(r"^[a-z0-9-]{1,64}$")
SEASON = re.compile(r"^(\*|[0-9]{4})$")
DEFAULT_RATE_PER_MIN = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    rate_per_min INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS api_usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    route TEXT NOT NULL,
    status INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, route, status)
);
"""


class KeyStoreError(ValueError):
    """A key command with bad input (unknown key, malformed scope)."""


@dataclass(frozen=True)
class Scope:
    """Read access to one team's sessions of one season (``*``: every season)."""

    team: str
    season: str

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``team:season`` (``night-owls:2026``, ``night-owls:*``); KeyStoreError if malformed."""
        team, sep, season = text.partition(":")
        if not sep or not SLUG.match(team) or not SEASON.match(season):
            raise KeyStoreError(
                f"scope {text!r}: expected TEAM:SEASON (team slug, a year or *)"
            )
        return cls(team, season)

    def covers(self, team: str, season: int | str) -> bool:
        return self.team == team and self.season in ("*", str(season))

    def __str__(self) -> str:
        return f"{self.team}:{self.season}"


@dataclass(frozen=True)
class ApiKey:
    """A partner key as stored (never the token itself)."""

    id: str
    name: str
    scopes: tuple[Scope, ...]
    rate_per_min: int
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, team: str, season: int | str) -> bool:
        return any(s.covers(team, season) for s in self.scopes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": [str(s) for s in self.scopes],
            "rate_per_min": self.rate_per_min,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def _hash(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 cannot be brute-forced back, and
    # it is fast enough to check on every request (unlike a password hash).
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class KeyStore:
    """The key and usage tables in one SQLite file (the server's only writer)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def add(
        self, name: str, scopes: list[Scope], rate_per_min: int = DEFAULT_RATE_PER_MIN
    ) -> tuple[ApiKey, str]:
        """A new key and its token (shown once; only its hash is stored)."""
        if not scopes:
            raise KeyStoreError("a key needs at least one scope (TEAM:SEASON)")
        if not 1 <= rate_per_min <= 100_000:
            raise KeyStoreError("rate must be 1…100000 requests per minute")
        if not name.strip():
            raise KeyStoreError("a key needs a name (who it is for)")
        key_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        created = _now()
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    key_id,
                    name.strip(),
                    _hash(token),
                    json.dumps([str(s) for s in scopes]),
                    rate_per_min,
                    created,
                ),
            )
        return ApiKey(
            key_id, name.strip(), tuple(scopes), rate_per_min, created, None
        ), token

    def keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, scopes, rate_per_min, created_at, revoked_at "
                "FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        return [_key(r) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, scopes, rate_per_min, created_at, revoked_at "
                "FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        return _key(row) if row else None

    def revoke(self, key_id: str) -> ApiKey:
        if not KEY_ID.match(key_id):
            raise KeyStoreError(f"{key_id!r} is not a key id (12 hex digits)")
        with self._lock:
            done = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_now(), key_id),
            ).rowcount
        key = self.get(key_id)
        if key is None:
            raise KeyStoreError(f"no key {key_id}")
        if not done and key.active:  # pragma: no cover - the update above ran
            raise KeyStoreError(f"key {key_id} could not be revoked")
        return key

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key whose token this is, else None (constant-time compare)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not KEY_ID.match(parts[1]):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, scopes, rate_per_min, created_at, revoked_at, "
                "token_sha256 FROM api_keys WHERE id = ?",
                (parts[1],),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[6], _hash(token)):
            return None
        key = _key(row[:6])
        return key if key.active else None

    def meter(self, key_id: str, route: str, status: int, rows: int, size: int) -> None:
        """Count one request of ``key_id`` (per day, route and status)."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        with self._lock:
            self._db.execute(
                "INSERT INTO api_usage VALUES (?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT (key_id, day, route, status) DO UPDATE SET "
                "requests = requests + 1, rows = rows + excluded.rows, "
                "bytes = bytes + excluded.bytes",
                (key_id, day, route, status, rows, size),
            )

    def usage(self, key_id: str | None = None) -> list[dict[str, Any]]:
        """Usage rows (per key, day, route, status), oldest day first."""
        query = (
            "SELECT key_id, day, route, status, requests, rows, bytes FROM api_usage"
        )
        args: tuple[str, ...] = ()
        if key_id is not None:
            query += " WHERE key_id = ?"
            args = (key_id,)
        with self._lock:
            rows = self._db.execute(
                query + " ORDER BY day, key_id, route, status", args
            ).fetchall()
        names = ("key_id", "day", "route", "status", "requests", "rows", "bytes")
        return [dict(zip(names, r, strict=True)) for r in rows]


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        scopes=tuple(Scope.parse(s) for s in json.loads(row[2])),
        rate_per_min=int(row[3]),
        created_at=row[4],
        revoked_at=row[5],
    )
