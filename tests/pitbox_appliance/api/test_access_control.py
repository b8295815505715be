"""Who may call the API (issue 14 §3): reads need a token, tokens belong to a principal
and are stored as digests, a device acts only as itself, the access log keeps no query.

Against the real aiohttp application over a real SQLite file (and a real TCP socket for
the access log).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from pitbox_appliance.api.app import create_app, make_runner
from pitbox_appliance.api.auth import (
    OPEN_ROUTES,
    ROUTE_SCOPES,
    TokenConfigError,
    TokenFile,
    TokenStore,
    mint_token,
    parse_token_entries,
    program_tokens,
)
from pitbox_appliance.broker import free_port
from pitbox_appliance.cli import main as pitbox_main
from pitbox_appliance.config import ApplianceConfig, CoreConfig, SecurityConfig
from pitbox_appliance.core.service import CoreService

Client = TestClient[web.Request, web.Application]

READER = mint_token("user:sponsor", {"read"})
ENGINEER = mint_token("user:engineer", {"read", "commands"})
CAR42 = mint_token("device:car42-pc1", {"driver"})
BENCH = mint_token("service:bench", {"driver"})
STORE = TokenStore([READER.token, ENGINEER.token, CAR42.token, BENCH.token])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[CoreService]:
    db_url = f"sqlite:///{tmp_path / 'pitbox.sqlite3'}"
    core = CoreService(ApplianceConfig(core=CoreConfig(db_url=db_url)), os.urandom(32))
    yield core
    core.writer.close()
    core.engine.dispose()


@pytest.fixture
async def client(service: CoreService) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(service, tokens=STORE))) as test:
        yield test


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _concrete(pattern: str) -> str:
    """A path of the route pattern (ids are 1, names car42 / car42-pc1)."""
    return re.sub(r"{(\w+)}", lambda m: "1" if m.group(1) == "id" else "car42", pattern)


# ---- every route has a rule ---------------------------------------------------------------
async def test_every_route_is_open_on_purpose_or_has_a_scope(client: Client) -> None:
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
    }
    assert served == set(ROUTE_SCOPES) | OPEN_ROUTES
    assert OPEN_ROUTES == {("GET", "/api/v1/health"), ("POST", "/api/v1/pair")}
    reads = {key for key in served if key[0] == "GET"} - OPEN_ROUTES
    assert {ROUTE_SCOPES[key] for key in reads} == {"read", "driver"}


async def test_every_read_needs_a_token_with_the_read_scope(client: Client) -> None:
    gets = sorted(
        path
        for (method, path), scope in ROUTE_SCOPES.items()
        if method == "GET" and scope == "read"
    )
    assert "/api/v1/commands/{command_id}" in gets
    assert "/api/v1/events/stream" in gets
    for pattern in gets:
        path = _concrete(pattern)
        anonymous = await client.get(path)
        assert anonymous.status == 401, path
        assert "'read'" in (await anonymous.json())["error"]
        unknown = await client.get(path, headers=_bearer("x" * 43))
        assert unknown.status == 401, path
        narrow = await client.get(path, headers=_bearer(CAR42.secret))
        assert narrow.status == 403, path
        assert "device:car42-pc1 lacks scope 'read'" in (await narrow.json())["error"]
        allowed = await client.get(path, headers=_bearer(READER.secret))
        assert allowed.status not in (401, 403), path
    assert (await client.get("/api/v1/health")).status == 200
    # The WebSocket that tells command ids refuses the handshake without a token.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/v1/events/stream")
    assert refused.value.status == 401
    ws = await client.ws_connect(
        "/api/v1/events/stream", headers=_bearer(READER.secret)
    )
    await ws.close()


async def test_a_command_cannot_be_read_without_a_token(
    client: Client, service: CoreService
) -> None:
    # No shim is connected: the id of a command that never existed answers the same.
    anonymous = await client.get("/api/v1/commands/abc123")
    assert anonymous.status == 401
    read = await client.get("/api/v1/commands/abc123", headers=_bearer(READER.secret))
    assert read.status == 404
    sent = await client.post(
        "/api/v1/cars/car42/commands",
        json={"kind": "message", "args": {"text": "Box now"}},
        headers=_bearer(READER.secret),
    )
    assert sent.status == 403  # reading is not sending


# ---- tokens are bound to their principal ----------------------------------------------
async def test_a_device_token_acts_only_as_its_own_device(client: Client) -> None:
    params = {"source": "car42-attacker", "name": "a.mp4", "start": "1", "end": "2"}
    headers = {"Content-Type": "video/mp4", **_bearer(CAR42.secret)}
    response = await client.post(
        "/api/v1/video/upload", params=params, data=b"x", headers=headers
    )
    assert response.status == 403
    error = (await response.json())["error"]
    assert error == (
        "source: 'car42-attacker', but the request comes from 'device:car42-pc1': "
        "a driver PC may act only as itself"
    )
    registration = {"source": "car7-pc1", "driver_name": "A", "sim": "iracing"}
    for route, body in (
        ("/api/v1/driver/register", registration),
        (
            "/api/v1/status/update",
            {"source": "car7-pc1", "state": "streaming", "spool_depth": 0},
        ),
    ):
        refused = await client.post(route, json=body, headers=_bearer(CAR42.secret))
        assert refused.status == 403, route
    # Its own source passes the check (and then meets the route's own rules).
    own = await client.post(
        "/api/v1/driver/register",
        json={**registration, "source": "car42-pc1"},
        headers=_bearer(CAR42.secret),
    )
    assert own.status == 201
    assert (await own.json())["source"] == "car42-pc1"


async def test_a_service_token_with_the_driver_scope_names_no_device(
    client: Client,
) -> None:
    params = {"source": "car42-pc1", "name": "a.mp4", "start": "1", "end": "2"}
    headers = {"Content-Type": "video/mp4", **_bearer(BENCH.secret)}
    response = await client.post(
        "/api/v1/video/upload", params=params, data=b"x", headers=headers
    )
    assert response.status == 403
    assert (
        "belongs to 'service:bench', not to a driver PC"
        in (await response.json())["error"]
    )


# ---- tokens are stored as digests -------------------------------------------------------
def test_the_core_keeps_digests_only() -> None:
    minted = mint_token("user:alice", frozenset({"read", "commands"}))
    assert minted.secret not in repr(minted)
    spec = minted.token.spec()
    assert minted.secret not in spec
    assert spec == f"user:alice@sha256={minted.token.digest}:commands+read"
    store = TokenStore.from_spec(spec)
    found = store.verify(minted.secret)
    assert found is not None
    assert (found.principal, found.scopes) == (
        "user:alice",
        frozenset({"read", "commands"}),
    )
    assert store.verify(minted.token.digest) is None  # the digest is no password
    assert store.verify("") is None
    held = " ".join(repr(vars(t)) if hasattr(t, "__dict__") else repr(t) for t in store)
    assert minted.secret not in held
    # A plain entry is hashed at once; only a client's parse keeps its secret.
    [entry] = parse_token_entries(f"device:car1-pc1@{'s' * 32}:driver")
    assert entry.token.device == "car1-pc1"
    assert entry.token.digest != "s" * 32
    with pytest.raises(TokenConfigError, match="sha256= needs 64"):
        parse_token_entries("service:x@sha256=abc:read")
    robot = "robot:x@" + "s" * 32 + ":read"
    with pytest.raises(TokenConfigError, match="principal"):
        parse_token_entries(robot)


def test_program_tokens_give_the_core_digests_and_each_program_its_own() -> None:
    tokens = program_tokens(extra=f"service:tool@{'t' * 32}:read")
    store = TokenStore.from_spec(tokens.core)
    assert tokens.dashboard not in tokens.core
    assert tokens.postrace not in tokens.core
    assert "t" * 32 not in tokens.core
    dashboard = store.verify(tokens.dashboard)
    postrace = store.verify(tokens.postrace)
    assert dashboard is not None
    assert postrace is not None
    assert (dashboard.principal, dashboard.scopes) == (
        "service:dashboard",
        frozenset({"read", "commands"}),
    )
    assert (postrace.principal, postrace.scopes) == (
        "service:postrace",
        frozenset({"read", "pipeline"}),
    )
    assert store.verify("t" * 32) is not None


# ---- the access log ---------------------------------------------------------------------
async def test_the_access_log_records_the_path_never_the_query(
    service: CoreService, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner(create_app(service, tokens=STORE))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    secret_query = {"token": "query-secret-0123456789", "code": "7KQ2-M9XD"}
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as http:
                for path in ("/api/v1/health", "/api/v1/sessions"):
                    async with http.get(
                        f"http://127.0.0.1:{port}{path}", params=secret_query
                    ) as response:
                        await response.read()
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2, lines
    assert '"GET /api/v1/health" 200' in lines[0]
    assert '"GET /api/v1/sessions" 401' in lines[1]
    for line in lines:
        assert "?" not in line
        assert "query-secret" not in line
        assert "7KQ2" not in line


async def test_a_users_token_acts_for_that_user_only(client: Client) -> None:
    """A command's ``by`` (its audit) is the token's person, or the dashboard's claim."""
    route = "/api/v1/cars/car42/commands"
    body = {"kind": "message", "args": {"text": "Box now"}}
    forged = await client.post(
        route, json={**body, "by": "alice"}, headers=_bearer(ENGINEER.secret)
    )
    assert forged.status == 403
    assert "belongs to 'user:engineer'" in (await forged.json())["error"]
    # Its own name, or none (then it is filled in), passes on to the car (none here).
    for claim in ({"by": "engineer"}, {}):
        own = await client.post(
            route, json={**body, **claim}, headers=_bearer(ENGINEER.secret)
        )
        assert own.status == 404, await own.text()


# ---- tokens minted on the appliance -----------------------------------------------------
async def test_pitbox_tokens_mints_and_revokes_without_a_restart(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PITBOX_API_TOKENS", "")
    config = ApplianceConfig(
        core=CoreConfig(db_url=f"sqlite:///{tmp_path / 'p.sqlite3'}"),
        security=SecurityConfig(
            dir=str(tmp_path / "security"), broker_run_dir=str(tmp_path / "broker")
        ),
    )
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    core = CoreService(config, os.urandom(32))

    def tokens(*argv: str) -> tuple[int, str]:
        code = pitbox_main(["tokens", "--config", str(path), *argv])
        return code, capsys.readouterr().out

    try:
        async with TestClient(TestServer(create_app(core))) as client:
            code, out = tokens("add", "user:alice", "--scopes", "read")
            assert code == 0
            secret = out.strip().splitlines()[-1]
            assert len(secret) >= 43
            stored = tmp_path / "security" / "api_tokens.json"
            assert secret not in stored.read_text()
            assert stat.S_IMODE(stored.stat().st_mode) == 0o600
            sessions = await client.get("/api/v1/sessions", headers=_bearer(secret))
            assert sessions.status == 200  # the running API took it at once
            code, out = tokens("add", "user:bob", "--scopes", "read", "--days", "2")
            assert code == 0
            assert ", until 20" in out
            code, out = tokens("list")
            assert "user:alice" in out
            assert "until never" in out
            assert secret not in out
            assert tokens("revoke", "user:alice")[0] == 0
            sessions = await client.get("/api/v1/sessions", headers=_bearer(secret))
            assert sessions.status == 401
            assert tokens("revoke", "user:alice")[0] == 2
            assert tokens("add", "root", "--scopes", "read")[0] == 2
            assert tokens("add", "user:bob", "--scopes", "admin")[0] == 2
    finally:
        core.writer.close()
        core.engine.dispose()


async def test_a_device_token_streams_its_own_source_only(tmp_path: Path) -> None:
    key = os.urandom(32)
    db_url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    core = CoreService(ApplianceConfig(core=CoreConfig(db_url=db_url)), key)
    codec = Codec(key)
    [message, *_] = ShimPipeline(
        RaceSimulatorAdapter(laps=1, speed=0, seed=3)
    ).messages()
    stream_token = mint_token("device:car42-pc1", {"driver"})
    try:
        app = create_app(core, tokens=TokenStore([stream_token.token, BENCH.token]))
        async with (
            TestClient(TestServer(app)) as client,
            client.ws_connect(
                "/api/v1/telemetry/stream", headers=_bearer(stream_token.secret)
            ) as ws,
        ):
            # Sealed with the (legacy) team key, so valid as car7's: refused unread.
            await ws.send_bytes(codec.encode("car7-pc1", 1, message))
            assert await ws.receive_json(timeout=10) == {
                "seq_ok": False,
                "reason": "foreign_source",
            }
            await ws.send_bytes(codec.encode("car42-pc1", 1, message))
            assert await ws.receive_json(timeout=10) == {"seq_ok": True}
        assert core.ingestor.stats.accepted == 1
    finally:
        core.writer.close()
        core.engine.dispose()


def test_a_token_with_a_lifetime_stops_working_when_it_ends(tmp_path: Path) -> None:
    file = TokenFile(tmp_path / "api_tokens.json")
    lasting = file.add("user:sponsor", {"read"}, ttl_s=3600)
    store = TokenStore(file=file)
    found = store.verify(lasting.secret)
    assert found is not None
    assert found.expires_at is not None
    assert 3590 < found.expires_at - time.time() <= 3600
    # The same token an hour on: refused, whatever the file still says.
    assert found.expired(now=found.expires_at)
    ended = dataclasses.replace(found, expires_at=time.time() - 1)
    assert TokenStore([ended]).verify(lasting.secret) is None
    with pytest.raises(ValueError, match="positive"):
        mint_token("user:x", {"read"}, ttl_s=0)
