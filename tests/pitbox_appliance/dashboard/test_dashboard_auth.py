"""Dashboard logins without a browser: signed sessions, expiry, logout, back-off, audited commands."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from starlette.responses import Response

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.api.app import create_app
from pitbox_appliance.dashboard.auth import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    FREE_FAILURES,
    SECRET_FILE,
    SESSIONS_FILE,
    DashboardAuth,
    LoginLimiter,
    cookie_of,
    login_url,
    safe_next,
    set_session_cookie,
)
from pitbox_appliance.dashboard.core_api import CoreApi
from pitbox_appliance.security.users import Role, UserStore
from tests.conftest import RunningAppliance, wait_for

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _auth(tmp_path: Path, clock: Clock | None = None) -> DashboardAuth:
    users = UserStore(tmp_path / "sec" / "users.json")
    if not users.users():
        users.add("ann", Role.ENGINEER, "engineer-pass")
        users.add("vic", Role.VIEWER, "viewer-pass")
    return DashboardAuth(users, tmp_path / "sec", clock=clock or Clock())


def test_login_gives_a_signed_session_that_logout_and_removal_end(
    tmp_path: Path,
) -> None:
    clock = Clock()
    auth = _auth(tmp_path, clock)
    wrong = asyncio.run(auth.login("ann", "nope", "10.0.0.7"))
    assert (wrong.cookie, wrong.status, wrong.message) == (
        None,
        401,
        "Wrong name or password.",
    )
    result = asyncio.run(auth.login("ANN ", "engineer-pass", "10.0.0.7"))
    assert result.cookie is not None
    principal = auth.current(result.cookie)
    assert principal is not None
    assert (principal.name, principal.role) == ("ann", Role.ENGINEER)
    assert principal.may(Role.CREW)

    # Signed: any change to id, expiry or signature is refused.
    session_id, expires, mac = result.cookie.split(".")
    for forged in (
        f"{session_id}.{int(expires) + 86400}.{mac}",
        f"{session_id[:-1]}A.{expires}.{mac}",
        f"{session_id}.{expires}.{mac[:-2]}xx",
        "garbage",
        "",
    ):
        assert auth.current(forged) is None, forged

    # The secret and the session list are private files; a restart keeps the login.
    for name in (SECRET_FILE, SESSIONS_FILE):
        mode = (tmp_path / "sec" / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    assert session_id not in (tmp_path / "sec" / SESSIONS_FILE).read_text()
    restarted = _auth(tmp_path, clock)
    assert restarted.current(result.cookie) is not None

    # Expiry.
    clock.now += auth.ttl_s + 1
    assert auth.current(result.cookie) is None
    clock.now -= auth.ttl_s + 1

    # A role changed with ``pitbox users add --replace`` counts at once.
    auth.users.add("ann", Role.VIEWER, "engineer-pass", replace=True)
    demoted = auth.current(result.cookie)
    assert demoted is not None
    assert demoted.role is Role.VIEWER

    # Logout ends it although the cookie still verifies.
    asyncio.run(auth.logout(result.cookie))
    assert auth.current(result.cookie) is None
    assert restarted.current(result.cookie) is not None  # that process's own copy
    again = asyncio.run(restarted.login("vic", "viewer-pass", "10.0.0.8"))
    assert again.cookie is not None
    restarted.users.remove("vic")
    assert restarted.current(again.cookie) is None


def test_failed_logins_back_off_per_name_and_per_address(tmp_path: Path) -> None:
    auth = _auth(tmp_path)
    for n in range(FREE_FAILURES):
        result = asyncio.run(auth.login("ann", f"wrong-{n}", f"10.0.0.{n}"))
        assert result.status == 401
    # The 6th try for that name is refused before any password check, even the right one.
    blocked = asyncio.run(auth.login("ann", "engineer-pass", "10.0.0.99"))
    assert blocked.status == 429
    assert blocked.message == (
        "Too many failed logins for this name: try again in 30 s."
    )
    # Another name from another address is not held up.
    assert asyncio.run(auth.login("vic", "viewer-pass", "10.0.0.50")).cookie

    # One address guessing many names is held up too.
    for n in range(FREE_FAILURES):
        asyncio.run(auth.login(f"guess{n}", "x" * 8, "192.168.1.66"))
    by_address = asyncio.run(auth.login("vic", "viewer-pass", "192.168.1.66"))
    assert by_address.status == 429
    assert "for this address" in by_address.message


def test_back_off_doubles_and_is_forgotten() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(FREE_FAILURES - 1):
        limiter.failed("user:ann")
    assert limiter.wait_s("user:ann") == 0
    waits = []
    for _ in range(8):
        limiter.failed("user:ann")
        waits.append(limiter.wait_s("user:ann"))
        clock.now += waits[-1]
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900]
    assert BACKOFF_FIRST_S == 30
    assert BACKOFF_MAX_S == 900
    limiter.succeeded("user:ann")
    assert limiter.wait_s("user:ann") == 0
    limiter.failed("addr:1")
    clock.now += 3600
    assert limiter.wait_s("addr:1") == 0


def test_the_cookie_is_secure_over_https() -> None:
    for https in (True, False):
        response = Response()
        set_session_cookie(response, "id.1.mac", 3600, https=https)
        header = response.headers["set-cookie"]
        assert header.startswith("pitbox_session=id.1.mac;")
        assert "HttpOnly" in header
        assert "SameSite=lax" in header
        assert "Max-Age=3600" in header
        assert ("Secure" in header) is https


def test_only_local_paths_after_login() -> None:
    assert safe_next("/laps?x=1") == "/laps?x=1"
    for bad in ("//evil.example/", "https://evil.example/", "laps", None, "/\\evil"):
        assert safe_next(bad) == "/"
    assert login_url("//evil", "expired") == "/login?next=/&reason=expired"
    headers = [(b"cookie", b"a=1; pitbox_session=abc.1.x; b=2")]
    assert cookie_of(headers) == "abc.1.x"
    assert cookie_of([(b"host", b"x")]) is None


def test_commands_name_the_user_who_sent_them(
    appliance: RunningAppliance, caplog: pytest.LogCaptureFixture
) -> None:
    """The user goes with the command to the core: its status, its result, the stored message."""
    appliance.start_shim(RaceSimulatorAdapter(laps=3, speed=4.0, seed=21))
    assert wait_for(
        lambda: appliance.core.ingestor.source_of("car1") is not None, timeout=20
    )
    token = "pitwall-token-0123456789"
    caplog.set_level(logging.INFO, logger="pitbox_appliance.api.commands")

    async def scenario() -> dict[str, object]:
        app = create_app(appliance.core, {token: frozenset({"commands", "read"})})
        server = TestServer(app)
        await server.start_server()
        api = CoreApi(
            str(server.make_url("")).rstrip("/"), token=token, confirm_timeout_s=15
        )
        try:
            outcome = await api.send(
                "car1", "message", {"text": "Box this lap"}, by="ann"
            )
            assert outcome.ok, outcome
            assert outcome.command_id is not None
            _status, body = await api._request(
                "GET", f"/api/v1/commands/{outcome.command_id}"
            )
            return body
        finally:
            await api.close()
            await server.close()

    status = asyncio.run(scenario())
    assert status["by"] == "ann"
    assert any(
        "by ann" in r.getMessage() and "Box this lap" not in r.getMessage()
        for r in caplog.records
    )

    def logged() -> list[tuple[str]]:
        with sqlite3.connect(appliance.db_url.removeprefix("sqlite:///")) as db:
            return db.execute(
                "SELECT payload FROM events WHERE kind = 'team_message'"
            ).fetchall()

    assert wait_for(lambda: bool(logged()), 10)
    assert json.loads(logged()[0][0])["by"] == "ann"
