"""API tokens bound to a principal, with scopes: who may read and who may change what.

Every route but ``GET /api/v1/health`` and ``POST /api/v1/pair`` (authenticated by its
code) needs ``Authorization: Bearer <token>`` (or a driver PC's signature, below), and
the token must hold the route's scope (``ROUTE_SCOPES``):

- ``read``: every GET and WebSocket read (sessions, commands, devices, the event stream,
  the OpenAPI document);
- ``commands``: send commands to driver PCs, retry dead letters, pair and revoke PCs;
- ``driver``: what a driver PC does (register, report status, upload video, stream
  telemetry);
- ``pipeline``: the post-race pipeline posts report, goal and badge events.

**Principals.** Each token belongs to one principal: ``device:<source>`` (a driver PC),
``user:<name>`` (a person) or ``service:<name>`` (an appliance program: the dashboard,
the post-race worker). A request that names a driver PC (``source`` of a registration,
a status update, a video upload) is refused with 403 unless it comes from *that* PC: its
signature or a ``device:<source>`` token (:func:`source_refusal`). Handlers read who
called from ``request[PRINCIPAL]`` and what it may do from ``request[SCOPES_GRANTED]``;
a command's ``by`` (the person it is audited under) comes from :func:`acting_user`: a
``user:`` token acts for its own person only, the dashboard's ``service:`` token names
the person logged in on it.

**Storage.** The core keeps only SHA-256 digests of the secrets (:class:`TokenStore`);
the secrets are 256-bit random strings (:func:`mint_token`), so a fast hash is enough
(nothing to brute-force) and a lookup by digest gives nothing away by its timing.
Tokens are never logged.

**Configuration.** ``PITBOX_API_TOKENS``: comma-separated entries
``[principal@]secret:scope+scope`` or ``[principal@]sha256=<64 hex>:scope+scope``, e.g.
``service:dashboard@sha256=9f2c…:read+commands``. An entry without a principal belongs to
``service:token-<n>`` (n = its position). The core's environment holds digests only;
each program gets its own secret in ``PITBOX_API_TOKEN`` (``program_tokens`` mints
them for ``supervisord.conf``).

**Minting and verifying in code** (the dashboard's per-user tokens, tests)::

    minted = mint_token("user:alice", {"read", "commands"})
    store = TokenStore([minted.token])      # the core side: digests only
    store.verify(minted.secret)             # -> ApiToken(principal="user:alice", ...)
    minted.token.spec()                     # "user:alice@sha256=…:commands+read"

``create_app(service, tokens=store)`` serves with that store; ``store.add(token)`` adds
one later (the core's own process only). From another process (the CLI, the dashboard):
``token_file(security_dir).add("user:alice", {"read"})`` writes the digest to
``api_tokens.json`` beside the device registry; the core re-reads that file when it
changes, so the token works at once, and ``.revoke("user:alice")`` stops it at once
(``pitbox tokens add|list|revoke``). Tokens in ``PITBOX_API_TOKENS`` change only with a
restart.

A paired driver PC needs no token: it signs its request with its own message key
(``Authorization: PitBox-Device ...``, ``driver_pc/protocol/device_auth.py``). That grants
the ``driver`` scope as ``device:<its source>``; a revoked PC is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from driver_pc.protocol.device_auth import SCHEME, DeviceAuthError
from pitbox_appliance.api.context import (
    DEVICE_SOURCE,
    DEVICES,
    PRINCIPAL,
    SCOPES_GRANTED,
    error_response,
)
from pitbox_appliance.security.files import write_private

logger = logging.getLogger(__name__)

SCOPES = frozenset({"read", "commands", "driver", "pipeline"})
TOKENS_FILE = "api_tokens.json"
#: Routes anyone may call: the health check (load balancers, the kiosk's watchdog) and
#: pairing, which its one-time code authenticates.
OPEN_ROUTES = frozenset({("GET", "/api/v1/health"), ("POST", "/api/v1/pair")})
#: (method, route pattern) → the scope needed. Every route of the app is in this table
#: or in OPEN_ROUTES (a test holds it); a GET not listed still needs ``read``.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/cars/{car}/commands"): "commands",
    ("POST", "/api/v1/deadletters/{id}/retry"): "commands",
    ("POST", "/api/v1/events"): "pipeline",
    ("POST", "/api/v1/driver/register"): "driver",
    ("POST", "/api/v1/status/update"): "driver",
    ("GET", "/api/v1/telemetry/stream"): "driver",
    ("POST", "/api/v1/video/upload"): "driver",
    ("POST", "/api/v1/devices/pairings"): "commands",
    ("POST", "/api/v1/devices/{id}/revoke"): "commands",
    ("GET", "/api/v1/commands/{command_id}"): "read",
    ("GET", "/api/v1/deadletters"): "read",
    ("GET", "/api/v1/deadletters/{id}"): "read",
    ("GET", "/api/v1/devices"): "read",
    ("GET", "/api/v1/driver/registrations"): "read",
    ("GET", "/api/v1/events/stream"): "read",
    ("GET", "/api/v1/openapi.json"): "read",
    ("GET", "/api/v1/sessions"): "read",
    ("GET", "/api/v1/sessions/{id}"): "read",
    ("GET", "/api/v1/sessions/{id}/laps"): "read",
    ("GET", "/api/v1/sessions/{id}/stints"): "read",
}
# Kept for callers of the old name (state-changing routes only were listed).
REQUIRED_SCOPE = ROUTE_SCOPES

PRINCIPAL_KINDS = ("device", "user", "service")
_PRINCIPAL = re.compile(r"(device|user|service):[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIGEST = re.compile(r"sha256=([0-9a-f]{64})")
MIN_SECRET = 16

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenConfigError(ValueError):
    """``PITBOX_API_TOKENS`` is malformed; the message says which entry (never the token)."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """What the core knows of a token: whose it is, what it may do, its secret's digest."""

    principal: str
    scopes: frozenset[str]
    digest: str = field(repr=False)
    expires_at: float | None = None  # Unix time; None: until revoked

    def expired(self, now: float | None = None) -> bool:
        """Whether the token's time is up."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at

    def spec(self) -> str:
        """The ``PITBOX_API_TOKENS`` entry for this token (digest only, no secret)."""
        return f"{self.principal}@sha256={self.digest}:{'+'.join(sorted(self.scopes))}"

    @property
    def device(self) -> str | None:
        """The driver PC's source for a ``device:`` principal, else None."""
        kind, _, name = self.principal.partition(":")
        return name if kind == "device" else None


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A new token: the secret (give it to its holder once) and what the core stores."""

    secret: str = field(repr=False)
    token: ApiToken

    def plain_spec(self) -> str:
        """The entry with the secret itself (for a holder that also serves the API)."""
        return f"{self.token.principal}@{self.secret}:{'+'.join(sorted(self.token.scopes))}"


def check_principal(principal: str) -> str:
    """Raise ValueError unless ``principal`` is ``device:|user:|service:<name>``."""
    if not _PRINCIPAL.fullmatch(principal):
        raise ValueError(
            f"principal {principal!r}: use device:<source>, user:<name> or "
            "service:<name> (letters, digits, '_', '.', '-')"
        )
    return principal


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes as a frozenset; ValueError when empty or unknown."""
    wanted = frozenset(scopes)
    if not wanted or not wanted <= SCOPES:
        raise ValueError(f"scopes must be among {sorted(SCOPES)}, got {sorted(wanted)}")
    return wanted


def token_digest(secret: str) -> str:
    """The SHA-256 (hex) under which a secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_token(
    principal: str, scopes: Iterable[str], ttl_s: float | None = None
) -> MintedToken:
    """A new random token (256 bits, URL-safe) for ``principal`` with ``scopes``.

    With ``ttl_s`` it stops working that many seconds from now.
    """
    if ttl_s is not None and not ttl_s > 0:
        raise ValueError(f"a token's lifetime must be positive, got {ttl_s}")
    secret = secrets.token_urlsafe(32)
    expires_at = None if ttl_s is None else time.time() + ttl_s
    token = ApiToken(
        check_principal(principal),
        check_scopes(scopes),
        token_digest(secret),
        expires_at,
    )
    return MintedToken(secret, token)


class TokenStore:
    """The tokens the API accepts, by digest; the secrets themselves are never kept.

    With ``file`` (a :class:`TokenFile`), the tokens in it count too, re-read when
    the file changes: ``pitbox tokens add|revoke`` takes effect without a restart.
    """

    def __init__(
        self, tokens: Iterable[ApiToken] = (), file: TokenFile | None = None
    ) -> None:
        self._by_digest: dict[str, ApiToken] = {}
        for token in tokens:
            self.add(token)
        self.file = file
        self._file_stamp: tuple[int, int] | None = None
        self._from_file: dict[str, ApiToken] = {}

    @classmethod
    def from_spec(cls, text: str) -> TokenStore:
        """Parse a ``PITBOX_API_TOKENS`` value (raises TokenConfigError)."""
        return cls(entry.token for entry in parse_token_entries(text))

    @classmethod
    def from_secrets(cls, tokens: Mapping[str, Iterable[str]]) -> TokenStore:
        """``{secret: scopes}`` as ``service:token-<n>`` tokens (tests, tools)."""
        return cls(
            ApiToken(f"service:token-{n}", check_scopes(scopes), token_digest(secret))
            for n, (secret, scopes) in enumerate(tokens.items(), 1)
        )

    def add(self, token: ApiToken) -> None:
        """Accept ``token`` from now on (replacing one with the same digest)."""
        self._by_digest[token.digest] = token

    def verify(self, secret: str) -> ApiToken | None:
        """The token whose secret this is, or None."""
        if not secret:
            return None
        digest = token_digest(secret)
        token = self._by_digest.get(digest) or self._file_tokens().get(digest)
        if token is None or token.expired():
            return None
        return token

    def _file_tokens(self) -> dict[str, ApiToken]:
        if self.file is None:
            return {}
        stamp = self.file.stamp()
        if stamp != self._file_stamp:
            try:
                self._from_file = {t.digest: t for t in self.file.tokens()}
            except ValueError as exc:  # a damaged file: its tokens stop working
                logger.error("API tokens file not read: %s", exc)
                self._from_file = {}
            self._file_stamp = stamp
        return self._from_file

    def __len__(self) -> int:
        return len(self._by_digest) + len(self._file_tokens())

    def __iter__(self) -> Iterator[ApiToken]:
        return iter([*self._by_digest.values(), *self._file_tokens().values()])


class TokenFile:
    """API tokens minted on the appliance (``pitbox tokens``): digests, 0600 JSON.

    Beside the device registry in the security directory (never in the race
    database, which is synced to the cloud). Changes happen under ``flock`` and are
    written atomically; the core re-reads the file when it changes.
    """

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    def tokens(self) -> list[ApiToken]:
        """Every token in the file (ValueError if it is not a token file)."""
        return [token for token, _ in self._entries()]

    def listing(self) -> list[tuple[ApiToken, float]]:
        """Each token with the time it was made."""
        return self._entries()

    def add(
        self, principal: str, scopes: Iterable[str], ttl_s: float | None = None
    ) -> MintedToken:
        """Mint a token for ``principal`` and keep its digest; the secret is returned once."""
        minted = mint_token(principal, scopes, ttl_s)
        with self._locked() as entries:
            entries.append((minted.token, time.time()))
        return minted

    def revoke(self, principal: str) -> int:
        """Remove every token of ``principal``; how many there were."""
        with self._locked() as entries:
            kept = [e for e in entries if e[0].principal != principal]
            removed = len(entries) - len(kept)
            entries[:] = kept
        return removed

    def stamp(self) -> tuple[int, int] | None:
        """Changes when the file does."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _entries(self) -> list[tuple[ApiToken, float]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(text)
            if data.get("version") != self.VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            return [
                (
                    ApiToken(
                        check_principal(e["principal"]),
                        check_scopes(e["scopes"]),
                        _DIGEST.fullmatch("sha256=" + e["sha256"]).group(1),  # type: ignore[union-attr]
                        None if e.get("expires_at") is None else float(e["expires_at"]),
                    ),
                    float(e["created_at"]),
                )
                for e in data["tokens"]
            ]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(
                f"{self.path}: not a PitBox API token file ({exc})"
            ) from None

    @contextmanager
    def _locked(self) -> Iterator[list[tuple[ApiToken, float]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self._entries()
            yield entries
            document = {
                "version": self.VERSION,
                "tokens": [
                    {
                        "principal": token.principal,
                        "scopes": sorted(token.scopes),
                        "sha256": token.digest,
                        "created_at": created,
                        "expires_at": token.expires_at,
                    }
                    for token, created in entries
                ],
            }
            write_private(self.path, json.dumps(document, indent=1).encode())
        finally:
            os.close(fd)


def token_file(directory: Path) -> TokenFile:
    """The appliance's token file: ``api_tokens.json`` in its security directory."""
    return TokenFile(directory / TOKENS_FILE)


TOKENS = web.AppKey("tokens", TokenStore)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One parsed ``PITBOX_API_TOKENS`` entry; ``secret`` is None for a digest entry."""

    token: ApiToken
    secret: str | None = field(default=None, repr=False)


def parse_token_entries(text: str) -> list[TokenEntry]:
    """Every entry of a ``PITBOX_API_TOKENS`` value; TokenConfigError names a bad one."""
    entries: list[TokenEntry] = []
    for number, entry in enumerate(
        filter(None, (e.strip() for e in text.split(","))), 1
    ):
        where = f"PITBOX_API_TOKENS entry {number}"
        principal, at, rest = entry.partition("@")
        if not at:
            principal, rest = f"service:token-{number}", entry
        secret, _, scopes_text = rest.rpartition(":")
        try:
            check_principal(principal)
            scopes = check_scopes(filter(None, scopes_text.split("+")))
        except ValueError as exc:
            raise TokenConfigError(f"{where}: {exc}") from None
        hashed = _DIGEST.fullmatch(secret)
        if hashed is not None:
            entries.append(TokenEntry(ApiToken(principal, scopes, hashed.group(1))))
            continue
        if secret.startswith("sha256="):
            raise TokenConfigError(f"{where}: sha256= needs 64 lowercase hex digits")
        if len(secret) < MIN_SECRET:
            raise TokenConfigError(f"{where}: token shorter than {MIN_SECRET}")
        entries.append(
            TokenEntry(ApiToken(principal, scopes, token_digest(secret)), secret)
        )
    return entries


def parse_tokens(text: str) -> dict[str, frozenset[str]]:
    """The entries that carry their secret: secret → scopes (for a client picking one)."""
    return {
        e.secret: e.token.scopes
        for e in parse_token_entries(text)
        if e.secret is not None
    }


def tokens_from_env() -> TokenStore:
    """The tokens of ``PITBOX_API_TOKENS`` (raises TokenConfigError)."""
    return TokenStore.from_spec(os.environ.get("PITBOX_API_TOKENS", ""))


@dataclass(frozen=True, slots=True)
class ProgramTokens:
    """Each appliance program's own token, and what the core is told of them."""

    core: str = field(repr=False)  # PITBOX_API_TOKENS of the core: digests only
    dashboard: str = field(repr=False)  # PITBOX_API_TOKEN of the dashboard
    postrace: str = field(repr=False)  # PITBOX_API_TOKEN of the post-race worker


def program_tokens(extra: str = "") -> ProgramTokens:
    """Mint the dashboard's (read+commands) and the post-race worker's (read+pipeline).

    ``extra`` entries (a ``PITBOX_API_TOKENS`` value, e.g. a tool's token) are added to
    the core's list as digests.
    """
    dashboard = mint_token("service:dashboard", {"read", "commands"})
    postrace = mint_token("service:postrace", {"read", "pipeline"})
    core = [dashboard.token, postrace.token]
    core += [e.token for e in parse_token_entries(extra)]
    return ProgramTokens(
        core=",".join(t.spec() for t in core),
        dashboard=dashboard.secret,
        postrace=postrace.secret,
    )


def source_refusal(request: web.Request, source: str) -> web.Response | None:
    """403 unless the request comes from the driver PC ``source`` itself, else None.

    That PC's signature or a ``device:<source>`` token; any other principal (another
    PC, a person, a service) may not act as a driver PC.
    """
    principal = request.get(PRINCIPAL, "")
    if principal == f"device:{source}":
        return None
    if principal.startswith("device:"):
        why = (
            f"the request comes from {principal!r}: a driver PC may act only as itself"
        )
    else:
        why = (
            f"the token belongs to {principal!r}, not to a driver PC: only "
            f"device:{source}'s own token or signature may act as it"
        )
    return error_response(403, f"source: {source!r}, but {why}", ["source"])


def acting_user(request: web.Request, claimed: str | None) -> str | web.Response:
    """Who a request acts for, for the audit: a 403 when the token cannot say so.

    A ``user:<name>`` token acts for that person only (``claimed`` must be the same
    name or absent). A ``service:`` token (the dashboard) may name the person it
    logged in; a device's may not name anyone. ``""`` when nobody is named.
    """
    principal: str = request.get(PRINCIPAL, "")
    kind, _, name = principal.partition(":")
    if kind == "user":
        if claimed not in (None, name):
            return error_response(
                403, f"by: {claimed!r}, but the token belongs to {principal!r}", ["by"]
            )
        return name
    if claimed is not None and kind != "service":
        return error_response(
            403,
            f"by: only a service's token may name a user, not {principal!r}",
            ["by"],
        )
    return claimed or ""


@web.middleware
async def require_scope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request without a token (or device signature) holding the route's scope."""
    route = request.match_info.route.resource
    if route is None:  # no such route: the 404/405 needs no token
        return await handler(request)
    key = (request.method, route.canonical)
    if key in OPEN_ROUTES:
        return await handler(request)
    scope = ROUTE_SCOPES.get(key, "read" if request.method == "GET" else "commands")
    header = request.headers.get("Authorization", "")
    if header.startswith(SCHEME + " "):
        return await _device_signed(request, handler, header, scope)
    presented = header[7:] if header.startswith("Bearer ") else ""
    if not presented:
        return error_response(
            401,
            f"Authorization: a bearer token with scope {scope!r} is required",
            ["Authorization"],
        )
    token = request.app[TOKENS].verify(presented)
    if token is None:
        return error_response(401, "Authorization: unknown token", ["Authorization"])
    if scope not in token.scopes:
        return error_response(
            403,
            f"Authorization: the token of {token.principal} lacks scope {scope!r}",
            ["Authorization"],
        )
    request[PRINCIPAL] = token.principal
    request[SCOPES_GRANTED] = token.scopes
    return await handler(request)


async def _device_signed(
    request: web.Request, handler: Handler, header: str, scope: str
) -> web.StreamResponse:
    """A request signed by a paired PC: the ``driver`` scope, for its own source only."""
    # A JSON body is covered by the signature; a streamed upload's is not (see
    # device_auth.py), and reading it here would hold it all in memory.
    body = await request.read() if request.content_type == "application/json" else None
    try:
        source = request.app[DEVICES].verify(
            header, request.method, request.path, dict(request.query), body=body
        )
    except DeviceAuthError as exc:
        return error_response(401, str(exc), ["Authorization"])
    if scope != "driver":
        return error_response(
            403,
            f"Authorization: a driver PC's signature does not grant scope {scope!r}",
            ["Authorization"],
        )
    request[DEVICE_SOURCE] = source
    request[PRINCIPAL] = f"device:{source}"
    request[SCOPES_GRANTED] = frozenset({"driver"})
    return await handler(request)
