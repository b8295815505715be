"""API v1 against a real SQLite file, fed through its own telemetry WebSocket."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import MAX_MESSAGE_BYTES, Codec
from pitbox_appliance.api.app import bound_port, create_app, start_api
from pitbox_appliance.api.auth import TokenStore
from pitbox_appliance.api.openapi import openapi_document
from pitbox_appliance.config import ApplianceConfig, CoreConfig
from pitbox_appliance.core.service import CoreService

SOURCE = "car42-pc1"
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def team_key() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def wire_messages(team_key: bytes) -> list[bytes]:
    """Three simulated laps as the shim would send them over MQTT."""
    codec = Codec(team_key)
    pipeline = ShimPipeline(RaceSimulatorAdapter(laps=3, speed=0, seed=2))
    return [
        codec.encode(SOURCE, seq, msg) for seq, msg in enumerate(pipeline.messages(), 1)
    ]


@pytest.fixture
def service(tmp_path: Path, team_key: bytes) -> Iterator[CoreService]:
    """A core service on a fresh SQLite file; never started, so no broker is needed."""
    db_url = f"sqlite:///{tmp_path / 'pitbox.sqlite3'}"
    core = CoreService(ApplianceConfig(core=CoreConfig(db_url=db_url)), team_key)
    yield core
    core.writer.close()
    core.engine.dispose()


API_TOKEN = "test-token-0123456789abcdef"
DRIVER_TOKEN = "driver-token-0123456789abcdef"
# Both belong to the driver PC the tests stream as (a driver route acts only for its
# own device); the first also reads and sends commands, the second only drives.
TOKENS = TokenStore.from_spec(
    f"device:{SOURCE}@{API_TOKEN}:read+commands+driver,"
    f"device:{SOURCE}@{DRIVER_TOKEN}:driver"
)


@pytest.fixture
async def client(service: CoreService) -> AsyncIterator[Client]:
    server = TestServer(create_app(service, tokens=TOKENS))
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with TestClient(server, headers=headers) as test_client:
        yield test_client


async def stream(client: Client, frames: list[bytes]) -> list[dict[str, Any]]:
    """Send each frame over the telemetry WebSocket and collect the replies."""
    replies = []
    async with client.ws_connect("/api/v1/telemetry/stream") as ws:
        for frame in frames:
            await ws.send_bytes(frame)
            replies.append(json.loads(await ws.receive_str(timeout=10)))
    return replies


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.json()


async def post_json(client: Client, path: str, body: Any, status: int) -> Any:
    response = await client.post(path, json=body)
    assert response.status == status, await response.text()
    return await response.json()


# ---- data through the stream, out through the session resources ----------------------
async def test_streamed_laps_are_served(
    client: Client, wire_messages: list[bytes]
) -> None:
    replies = await stream(client, wire_messages)
    assert all(r == {"seq_ok": True} for r in replies)

    sessions = (await get_json(client, "/api/v1/sessions"))["sessions"]
    assert len(sessions) == 1
    session = sessions[0]
    assert session["car"] == "car42"
    assert session["track"]

    laps = (await get_json(client, f"/api/v1/sessions/{session['id']}/laps"))["laps"]
    timed = [lap for lap in laps if lap["lap_time"] is not None]
    assert len(timed) >= 2
    assert all(20 < lap["lap_time"] < 40 for lap in timed)
    assert {lap["driver_name"] for lap in laps} == {"Alex Sim"}

    detail = await get_json(client, f"/api/v1/sessions/{session['id']}")
    assert detail["lap_count"] == len(laps)
    assert detail["best_lap_time"] == min(lap["lap_time"] for lap in timed)
    assert detail["drivers"] == ["Alex Sim"]
    assert "Martinsville" in detail["session_info"]

    stints = (await get_json(client, f"/api/v1/sessions/{session['id']}/stints"))[
        "stints"
    ]
    assert stints[0]["number"] == 1
    assert stints[0]["driver_name"] == "Alex Sim"
    assert sum(s["lap_count"] for s in stints) == len(laps)

    health = await get_json(client, "/api/v1/health")
    assert health["ingest"]["accepted"] == len(wire_messages)
    assert health["ingest"]["laps"] == len(laps)


async def test_resent_message_is_a_duplicate(
    client: Client, wire_messages: list[bytes]
) -> None:
    replies = await stream(client, [wire_messages[0], wire_messages[0]])
    assert replies == [{"seq_ok": True}, {"seq_ok": False, "reason": "duplicate"}]


async def test_tampered_frame_is_rejected_and_counted(
    client: Client, wire_messages: list[bytes]
) -> None:
    tampered = bytearray(wire_messages[0])
    tampered[-1] ^= 0x01
    replies = await stream(client, [bytes(tampered), wire_messages[0]])
    assert replies == [{"seq_ok": False, "reason": "bad_auth"}, {"seq_ok": True}]
    health = await get_json(client, "/api/v1/health")
    assert health["ingest"]["rejected"] == {"bad_auth": 1}
    assert health["ingest"]["accepted"] == 1


async def test_text_and_oversized_frames_get_errors_not_a_closed_socket(
    client: Client, wire_messages: list[bytes]
) -> None:
    async with client.ws_connect("/api/v1/telemetry/stream") as ws:
        await ws.send_str("hello")
        assert "binary" in (await ws.receive_json(timeout=10))["error"]
        await ws.send_bytes(b"\0" * (MAX_MESSAGE_BYTES + 1))
        error = (await ws.receive_json(timeout=10))["error"]
        assert error.startswith("frame:")
        assert str(MAX_MESSAGE_BYTES) in error
        await ws.send_bytes(wire_messages[0])
        assert await ws.receive_json(timeout=10) == {"seq_ok": True}


# ---- driver PCs ---------------------------------------------------------------------------
REGISTRATION = {
    "source": SOURCE,
    "car": "car42",
    "driver_name": "Alex Sim",
    "sim": "iracing",
}


async def test_register_driver(client: Client) -> None:
    registered = await post_json(client, "/api/v1/driver/register", REGISTRATION, 201)
    assert registered.pop("registered_at") > 0
    unset = {"user_id": None, "session_time": None, "version": None, "session_id": None}
    assert registered == {**REGISTRATION, **unset}
    # The car may be left out: it is the one the source id names.
    bare = {k: v for k, v in REGISTRATION.items() if k != "car"}
    again = await post_json(client, "/api/v1/driver/register", bare, 201)
    assert again["car"] == REGISTRATION["car"]
    listed = await client.get("/api/v1/driver/registrations")
    [only] = (await listed.json())["registrations"]
    assert only["source"] == REGISTRATION["source"]
    assert only["registered_at"] == again["registered_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**REGISTRATION, "session_time": -1}, "session_time"),
        ({**REGISTRATION, "driver_name": ""}, "driver_name"),
        ({**REGISTRATION, "source": "car 42/pc1"}, "source"),
        ({**REGISTRATION, "seat": "left"}, "seat"),
        ({**REGISTRATION, "car": "car7"}, "car"),
        (["not", "an", "object"], "body"),
    ],
)
async def test_bad_registration_is_400_naming_the_field(
    client: Client, body: Any, field: str
) -> None:
    error = await post_json(client, "/api/v1/driver/register", body, 400)
    assert error["error"].startswith(f"{field}:")
    assert field in error["fields"]


async def test_body_that_is_not_json_is_400(client: Client) -> None:
    response = await client.post("/api/v1/status/update", data=b"{nope")
    assert response.status == 400
    assert (await response.json())["fields"] == ["body"]


async def test_status_update_merges_into_health(client: Client) -> None:
    first = {"source": SOURCE, "state": "streaming", "spool_depth": 3, "ticks": 10}
    await post_json(client, "/api/v1/status/update", first, 200)
    second = {"source": SOURCE, "state": "stopped", "spool_depth": 0}
    merged = await post_json(client, "/api/v1/status/update", second, 200)
    expected = {"state": "stopped", "spool_depth": 0, "ticks": 10}
    assert merged == {"source": SOURCE, "status": expected}
    health = await get_json(client, "/api/v1/health")
    assert health["shims"][SOURCE] == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": SOURCE, "state": "streaming", "spool_depth": "x"}, "spool_depth"),
        ({"source": SOURCE, "state": "racing", "spool_depth": 0}, "state"),
        ({"source": SOURCE, "state": "stopped"}, "spool_depth"),
        ({"source": SOURCE, "state": "stopped", "spool_depth": 0, "cpu": 1}, "cpu"),
    ],
)
async def test_bad_status_update_is_400_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    error = await post_json(client, "/api/v1/status/update", body, 400)
    assert error["error"].startswith(f"{field}:")


# ---- sessions, errors ---------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", "/laps", "/stints"])
async def test_unknown_session_is_404(client: Client, suffix: str) -> None:
    error = await get_json(client, f"/api/v1/sessions/999{suffix}", 404)
    assert error["error"] == "id: no session 999"
    error = await get_json(client, f"/api/v1/sessions/abc{suffix}", 400)
    assert error["fields"] == ["id"]


async def test_empty_database_and_unknown_route(client: Client) -> None:
    assert await get_json(client, "/api/v1/sessions") == {"sessions": []}
    error = await get_json(client, "/api/v1/nothing", 404)
    assert "error" in error
    response = await client.delete("/api/v1/sessions")
    assert response.status == 405
    assert "error" in await response.json()


async def test_health(client: Client) -> None:
    health = await get_json(client, "/api/v1/health")
    assert health["broker_connected"] is False
    assert health["ingest"]["accepted"] == 0
    assert health["shims"] == {}


# ---- the OpenAPI document -----------------------------------------------------------------
async def test_openapi_document_matches_the_routes(client: Client) -> None:
    document = await get_json(client, "/api/v1/openapi.json")
    assert document == openapi_document()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
    }
    assert served == documented
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    ref = media["schema"].get("$ref", "")
                    name = ref.rsplit("/", 1)[-1]
                    assert not ref or name in document["components"]["schemas"], (
                        method,
                        path,
                    )


# ---- start_api ----------------------------------------------------------------------------
async def test_start_api_on_port_zero(
    tmp_path: Path, team_key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PITBOX_API_TOKENS", f"device:{SOURCE}@{API_TOKEN}:driver")
    config = ApplianceConfig(
        core=CoreConfig(db_url=f"sqlite:///{tmp_path / 'p.db'}", api_port=0)
    )
    core = CoreService(config, team_key)
    runner = await start_api(core)
    try:
        port = bound_port(runner)
        assert port > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/v1/health") as response:
                assert response.status == 200
                assert "uptime_s" in await response.json()
            # Stopping the API closes an open stream instead of waiting for it.
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/api/v1/telemetry/stream",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            )
            await runner.cleanup()
            closing = await ws.receive(timeout=5)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
            await ws.close()
    finally:
        await runner.cleanup()
        core.writer.close()
        core.engine.dispose()


# ---- tokens and scopes ---------------------------------------------------------------------
async def test_state_changes_need_a_token_with_the_scope(service: CoreService) -> None:
    body = {"source": "car42-pc1", "state": "streaming", "spool_depth": 0}
    async with TestClient(TestServer(create_app(service, tokens=TOKENS))) as anonymous:
        refused = await anonymous.post("/api/v1/status/update", json=body)
        assert refused.status == 401
        assert "Authorization" in (await refused.json())["error"]
        wrong = await anonymous.post(
            "/api/v1/status/update",
            json=body,
            headers={"Authorization": "Bearer not-a-known-token-at-all"},
        )
        assert wrong.status == 401
        narrow = await anonymous.post(
            "/api/v1/cars/car42/commands",
            json={"kind": "message", "args": {"text": "hi"}},
            headers={"Authorization": f"Bearer {DRIVER_TOKEN}"},
        )
        assert narrow.status == 403
        allowed = await anonymous.post(
            "/api/v1/status/update",
            json=body,
            headers={"Authorization": f"Bearer {DRIVER_TOKEN}"},
        )
        assert allowed.status == 200
        health = await anonymous.get("/api/v1/health")
        assert health.status == 200  # the one open read
        reads = await anonymous.get("/api/v1/sessions")
        assert reads.status == 401
        narrow_read = await anonymous.get(
            "/api/v1/sessions", headers={"Authorization": f"Bearer {DRIVER_TOKEN}"}
        )
        assert narrow_read.status == 403
        assert "'read'" in (await narrow_read.json())["error"]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await anonymous.ws_connect("/api/v1/telemetry/stream")


async def test_no_tokens_configured_refuses_every_change(service: CoreService) -> None:
    async with TestClient(TestServer(create_app(service, tokens={}))) as client:
        response = await client.post(
            "/api/v1/driver/register",
            json={
                "source": "car1-pc1",
                "car": "car1",
                "driver_name": "A",
                "sim": "iracing",
            },
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        assert response.status == 401


def test_token_config_errors_never_show_the_token() -> None:
    from pitbox_appliance.api.auth import TokenConfigError, parse_tokens

    assert parse_tokens(f"{API_TOKEN}:commands+driver") == {
        API_TOKEN: frozenset({"commands", "driver"})
    }
    assert parse_tokens(f"user:alice@{API_TOKEN}:read") == {
        API_TOKEN: frozenset({"read"})
    }
    with pytest.raises(TokenConfigError, match="principal") as info:
        parse_tokens(f"admin:root@{API_TOKEN}:read")
    assert API_TOKEN not in str(info.value)
    with pytest.raises(TokenConfigError, match="entry 1") as info:
        parse_tokens("qzx9:driver")
    assert "qzx9" not in str(info.value)
    with pytest.raises(TokenConfigError, match="scopes"):
        parse_tokens(f"{API_TOKEN}:admin")
