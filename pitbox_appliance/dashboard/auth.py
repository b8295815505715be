"""Dashboard logins: the login page, signed expiring session cookies, the gate, the rate limit.

- **Who**: the people in ``users.json`` (``pitbox users``, ``security/users.py``), read-only
  here and re-read when the file changes: a removed user or a changed role counts at once.
- **Sessions**: ``pitbox_session`` = ``<id>.<expires>.<HMAC-SHA256>``, signed with a 32-byte
  secret made at first run (``dashboard-session.key`` in the security directory, 0600).
  The id is also looked up server-side (``dashboard-sessions.json``, 0600: a dashboard
  restart keeps the touchscreen logged in), so a logout or a removed user ends it even
  though the cookie would still verify. Sessions expire SESSION_TTL_S after login.
  The cookie is ``HttpOnly``, ``SameSite=Lax``, and ``Secure`` when the request came over
  HTTPS.
- **Gate**: :class:`AuthGate`, a plain ASGI middleware in front of NiceGUI: every HTTP
  request and websocket except the login page, the logo and the favicon needs a live
  session; pages get a redirect to ``/login``, anything else a 401.
- **Rate limit**: failed logins are counted per user name and per address; from the
  FREE_FAILURES-th on, the name (or address) waits 30 s, then 60, 120 … up to 15 min.
  While it waits, no password is checked at all. In memory: a restart forgets it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pitbox_appliance.security.files import write_private
from pitbox_appliance.security.users import Role, UserError, UserStore

logger = logging.getLogger(__name__)

COOKIE = "pitbox_session"
SECRET_FILE = "dashboard-session.key"
SESSIONS_FILE = "dashboard-sessions.json"
#: A login lasts a day: one 24 h race on the touchscreen without logging in again.
SESSION_TTL_S = 24 * 3600.0
#: Failures allowed before the back-off starts (per name and per address).
FREE_FAILURES = 5
BACKOFF_FIRST_S = 30.0
BACKOFF_MAX_S = 900.0
#: Failures older than this are forgotten.
FAILURE_MEMORY_S = 900.0
MAX_TRACKED = 10_000
#: argon2id checks at once (64 MiB each): a burst of logins must not exhaust a Pi.
CONCURRENT_CHECKS = 2
#: Paths open without a session: the login page itself, the team logo, the favicon.
OPEN_PREFIXES = ("/login", "/theme/", "/favicon.ico")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Principal:
    """The person behind a session, with their role as the users file says now."""

    name: str
    role: Role
    session: str  # the session's server-side key (a hash of its id), for logout
    expires_at: float

    def may(self, role: Role) -> bool:
        return self.role >= role


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login attempt: the cookie to set, or why not (HTTP status and a message)."""

    cookie: str | None
    status: int
    message: str
    principal: Principal | None = None


class LoginLimiter:
    """Failed logins per key (``user:ann``, ``addr:10.0.0.7``) with exponential back-off."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key → (failures, time of the last failure)
        self._failures: dict[str, tuple[int, float]] = {}

    def wait_s(self, key: str) -> float:
        """Seconds ``key`` must still wait before a password is checked (0: none)."""
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        count, last = entry
        now = self._clock()
        if now - last > FAILURE_MEMORY_S + self._lock_s(count):
            del self._failures[key]
            return 0.0
        return max(0.0, last + self._lock_s(count) - now)

    def failed(self, key: str) -> None:
        count, _last = self._failures.pop(key, (0, 0.0))
        self._failures[key] = (count + 1, self._clock())
        while len(self._failures) > MAX_TRACKED:  # oldest first (insertion order)
            del self._failures[next(iter(self._failures))]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    @staticmethod
    def _lock_s(count: int) -> float:
        if count < FREE_FAILURES:
            return 0.0
        return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (count - FREE_FAILURES)))


class DashboardAuth:
    """Users, sessions and the rate limit of one dashboard process."""

    def __init__(
        self,
        users: UserStore,
        directory: Path,
        *,
        ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = users
        self.directory = directory
        self.ttl_s = ttl_s
        self._clock = clock
        self._secret = _load_or_make_secret(directory / SECRET_FILE)
        self._sessions_path = directory / SESSIONS_FILE
        # session key (sha256 of the id) → {"user", "created", "expires"}
        self._sessions: dict[str, dict[str, Any]] = _load_sessions(self._sessions_path)
        self.limiter = LoginLimiter()
        self._checks = asyncio.Semaphore(CONCURRENT_CHECKS)

    def has_users(self) -> bool:
        try:
            return bool(self.users.users())
        except UserError as exc:
            logger.error("%s", exc)
            return False

    # ---- logging in and out -----------------------------------------------------------
    async def login(self, name: str, password: str, address: str) -> LoginResult:
        """Check a name and password; a signed cookie for a new session if right."""
        name = name.strip().lower()[:64]
        keys = (f"user:{name}", f"addr:{address}")
        wait = max(self.limiter.wait_s(k) for k in keys)
        if wait > 0:
            who = "this name" if self.limiter.wait_s(keys[0]) > 0 else "this address"
            logger.warning("login refused for %r from %s: back-off", name, address)
            return LoginResult(
                None,
                429,
                f"Too many failed logins for {who}: try again in {math.ceil(wait)} s.",
            )
        async with self._checks:
            try:
                user = await asyncio.to_thread(self.users.verify, name, password)
            except UserError as exc:
                logger.error("%s", exc)
                return LoginResult(None, 500, "The users file cannot be read.")
        if user is None:
            for key in keys:
                self.limiter.failed(key)
            logger.warning("failed login for %r from %s", name, address)
            return LoginResult(None, 401, "Wrong name or password.")
        for key in keys:
            self.limiter.succeeded(key)
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + self.ttl_s
        key = _session_key(session_id)
        self._sessions[key] = {"user": user.name, "created": now, "expires": expires}
        await asyncio.to_thread(self._save)
        logger.info("%s logged in (%s) from %s", user.name, user.role.label, address)
        principal = Principal(user.name, user.role, key, expires)
        return LoginResult(self._sign(session_id, expires), 200, "", principal)

    async def logout(self, cookie: str | None) -> None:
        principal = self.current(cookie)
        if principal is not None:
            self._sessions.pop(principal.session, None)
            await asyncio.to_thread(self._save)
            logger.info("%s logged out", principal.name)

    def end(self, principal: Principal) -> None:
        """End a session from a page (its logout button)."""
        if self._sessions.pop(principal.session, None) is not None:
            self._save()

    # ---- checking ----------------------------------------------------------------------
    def current(self, cookie: str | None) -> Principal | None:
        """The principal of a cookie: signed by us, not expired, not logged out, user there."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 3:
            return None
        session_id, expires_text, mac = parts
        if not hmac.compare_digest(mac, self._mac(session_id, expires_text)):
            return None
        return self.check(_session_key(session_id))

    def check(self, session: str) -> Principal | None:
        """A session key still valid now, with the user's current role; None if not."""
        entry = self._sessions.get(session)
        if entry is None or float(entry["expires"]) <= self._clock():
            return None
        try:
            user = self.users.get(str(entry["user"]))
        except UserError as exc:
            logger.error("%s", exc)
            return None
        if user is None:
            return None
        return Principal(user.name, user.role, session, float(entry["expires"]))

    # ---- helpers -----------------------------------------------------------------------
    def _sign(self, session_id: str, expires: float) -> str:
        expires_text = str(int(expires))
        return f"{session_id}.{expires_text}.{self._mac(session_id, expires_text)}"

    def _mac(self, session_id: str, expires_text: str) -> str:
        digest = hmac.new(
            self._secret, f"{session_id}.{expires_text}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _save(self) -> None:
        now = self._clock()
        live = {k: v for k, v in self._sessions.items() if float(v["expires"]) > now}
        self._sessions = live
        write_private(self._sessions_path, json.dumps(live).encode())


def _session_key(session_id: str) -> str:
    # Only a hash of the id is kept: the sessions file alone opens no session.
    return hashlib.sha256(session_id.encode()).hexdigest()


def _load_or_make_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        logger.warning("%s is too short; making a new one", path)
    except FileNotFoundError:
        pass
    secret = os.urandom(32)
    write_private(path, secret)
    return secret


def _load_sessions(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): v
        for k, v in data.items()
        if isinstance(v, dict) and {"user", "expires"} <= v.keys()
    }


# ---- the gate and the login page (Starlette/ASGI) ------------------------------------------
def cookie_of(headers: list[tuple[bytes, bytes]] | Any) -> str | None:
    """The session cookie from raw ASGI headers."""
    for name, value in headers:
        if name.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, val = part.strip().partition("=")
            if key == COOKIE:
                return val
    return None


class AuthGate:
    """ASGI middleware: no session, no dashboard (pages are sent to ``/login``)."""

    def __init__(self, app: Asgi, auth: DashboardAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = str(scope.get("path") or "/")
        if kind not in ("http", "websocket") or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.auth.current(cookie_of(scope.get("headers") or ())) is not None:
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        page = scope.get("method") == "GET" and not path.startswith("/_nicegui")
        if page:
            status, headers, body = 303, [(b"location", login_url(path).encode())], b""
        else:
            status, headers, body = 401, [], b'{"error": "log in first"}'
            headers.append((b"content-type", b"application/json"))
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})


def login_url(next_path: str = "/", reason: str = "") -> str:
    url = f"/login?next={quote(safe_next(next_path), safe='/')}"
    return f"{url}&reason={reason}" if reason else url


def safe_next(path: str | None) -> str:
    """Only a local path (never ``//host`` or a URL) to go to after login."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def login_page(
    *,
    team: str,
    accent: str,
    next_path: str,
    message: str = "",
    tone: str = "bad",
    has_users: bool = True,
    name: str = "",
) -> str:
    """The login form as one self-contained HTML page (no script, works before NiceGUI)."""
    esc = html.escape
    if has_users:
        body = f"""
<form method="post" action="/login" data-testid="login-form">
 <input type="hidden" name="next" value="{esc(safe_next(next_path))}">
 <label>Name<input name="name" data-testid="login-name" autocomplete="username"
   autocapitalize="none" value="{esc(name)}" required autofocus></label>
 <label>Password<input name="password" type="password" data-testid="login-password"
   autocomplete="current-password" required></label>
 <button type="submit" data-testid="login-submit">Log in</button>
</form>"""
    else:
        body = """
<div data-testid="first-run" class="first">
 <p><b>No one can log in yet.</b> On the appliance, create the first engineer:</p>
 <pre>pitbox users add NAME --role engineer</pre>
 <p>(add <code>--config FILE</code> if the appliance runs with one), then reload this
 page. Engineers may add viewers and crew the same way:
 <code>--role viewer</code>, <code>--role crew</code>.</p>
</div>"""
    note = (
        f'<p class="msg {esc(tone)}" data-testid="login-message">{esc(message)}</p>'
        if message
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(team)} · log in</title>
<style>
 body {{ margin: 0; min-height: 100vh; display: flex; align-items: center;
        justify-content: center; background: #0b0d10; color: #f0f3f6;
        font-family: "Inter", "DejaVu Sans", system-ui, sans-serif; }}
 main {{ width: min(92vw, 380px); background: #161a20; border-radius: 10px;
        padding: 18px 22px; border-top: 4px solid {esc(accent)}; }}
 h1 {{ margin: 0 0 10px; font-size: 22px; color: {esc(accent)}; }}
 label {{ display: block; font-size: 14px; color: #8b949e; margin: 8px 0; }}
 input {{ display: block; width: 100%; box-sizing: border-box; margin-top: 4px;
         font-size: 20px; padding: 10px; border-radius: 6px; border: 1px solid #30363d;
         background: #0b0d10; color: #f0f3f6; }}
 button {{ margin-top: 12px; width: 100%; min-height: 48px; font-size: 18px;
          font-weight: 700; border: 0; border-radius: 6px; background: {esc(accent)};
          color: #fff; }}
 .msg {{ font-size: 15px; font-weight: 700; }} .bad {{ color: #ef4444; }}
 .ok {{ color: #22c55e; }} .warn {{ color: #f59e0b; }}
 pre {{ background: #0b0d10; padding: 8px; border-radius: 6px; font-size: 15px;
       white-space: pre-wrap; }}
</style></head>
<body><main><h1>{esc(team)} · pit wall</h1>{note}{body}</main></body></html>"""


REASONS = {
    "expired": ("Your session ended: log in again.", "warn"),
    "logout": ("Logged out.", "ok"),
}


def set_session_cookie(
    response: Response, value: str, max_age_s: float, *, https: bool
) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, Secure over HTTPS.

    Script cannot read it, other sites' requests do not carry it, and over HTTPS the
    browser never sends it in the clear.
    """
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(max_age_s),
        httponly=True,
        samesite="lax",
        secure=https,
        path="/",
    )


def install(auth: DashboardAuth, *, team: str, accent: str) -> None:
    """Put the gate in front of the NiceGUI app and add ``/login`` and ``/logout``."""
    from nicegui import app

    app.add_middleware(AuthGate, auth=auth)

    def page(next_path: str, message: str = "", tone: str = "bad", **kw: Any) -> str:
        return login_page(
            team=team,
            accent=accent,
            next_path=next_path,
            message=message,
            tone=tone,
            has_users=auth.has_users(),
            **kw,
        )

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        message, tone = REASONS.get(request.query_params.get("reason", ""), ("", ""))
        next_path = request.query_params.get("next", "/")
        return HTMLResponse(page(next_path, message, tone or "bad"))

    @app.post("/login", include_in_schema=False)
    async def login_post(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name") or "")
        next_path = safe_next(str(form.get("next") or "/"))
        address = request.client.host if request.client is not None else "?"
        result = await auth.login(name, str(form.get("password") or ""), address)
        if result.cookie is None:
            return HTMLResponse(
                page(next_path, result.message, name=name), status_code=result.status
            )
        response = RedirectResponse(next_path, status_code=303)
        set_session_cookie(
            response, result.cookie, auth.ttl_s, https=request.url.scheme == "https"
        )
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await auth.logout(request.cookies.get(COOKIE))
        response = RedirectResponse(login_url("/", "logout"), status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
