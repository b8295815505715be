"""Driver POV video: the shim uploads finished segments, the appliance stores and announces them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.appliance_api import ApplianceApi
from driver_pc.protocol.device_auth import sign_request
from driver_pc.video import SessionClock, VideoSegmentWatcher
from pitbox_appliance.api.app import create_app
from pitbox_appliance.api.auth import TokenStore
from pitbox_appliance.core.service import CoreService
from tests.conftest import RunningAppliance, wait_for

TOKEN = "driver-token-0123456789"
CAR9_TOKEN = "car9-driver-token-0123456789"


def _use_video_dir(core: CoreService, folder: Path, max_bytes: int) -> None:
    section = core.config.core.model_copy(
        update={"video_dir": str(folder), "video_max_bytes": max_bytes}
    )
    core.config = core.config.model_copy(update={"core": section})


def _watcher(
    folder: Path, url: str, clock: SessionClock, state: Path, key: bytes
) -> VideoSegmentWatcher:
    # As a paired shim does: no token, each upload signed with the PC's own key.
    target = ApplianceApi(api_url=url, source="car1-pc1", key=key)
    return VideoSegmentWatcher(folder, target, clock, state, settle_s=3.0)


def test_finished_segment_is_uploaded_once_and_announced(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    core = appliance.core
    stored = tmp_path / "stored"
    _use_video_dir(core, stored, max_bytes=10_000_000)
    shim = appliance.start_shim(RaceSimulatorAdapter(laps=2, speed=20.0, seed=5))
    assert wait_for(lambda: "car1" in core.ingestor.live, timeout=20)
    assert wait_for(lambda: shim.session_clock.session_time(0.0) is not None, 10)
    events: list[dict[str, Any]] = []
    core.event_listeners.append(events.append)
    recordings = tmp_path / "obs"
    recordings.mkdir()
    video = os.urandom(300_000)
    (recordings / "pov-001.mp4").write_bytes(video)
    (recordings / "notes.txt").write_text("not a video")
    state = tmp_path / "videos.json"
    key = appliance.team_key

    async def scenario() -> list[list[str]]:
        app = create_app(core, tokens={})
        async with TestClient(TestServer(app)) as client:
            url = str(client.make_url("/"))
            loop = asyncio.get_running_loop()
            watcher = _watcher(recordings, url, shim.session_clock, state, key)
            rounds = [await loop.run_in_executor(None, watcher.poll, 0.0)]
            # Still growing at the next look: not finished, so not sent.
            with (recordings / "pov-001.mp4").open("ab") as grow:
                grow.write(b"\0" * 1000)
            rounds.append(await loop.run_in_executor(None, watcher.poll, 5.0))
            rounds.append(await loop.run_in_executor(None, watcher.poll, 6.0))
            rounds.append(await loop.run_in_executor(None, watcher.poll, 9.0))
            # A restarted shim remembers what it sent ...
            again = _watcher(recordings, url, shim.session_clock, state, key)
            rounds.append(await loop.run_in_executor(None, again.poll, 0.0))
            rounds.append(await loop.run_in_executor(None, again.poll, 10.0))
            # ... and one that lost its state is told the appliance has it.
            lost = _watcher(
                recordings, url, shim.session_clock, tmp_path / "x.json", key
            )
            await loop.run_in_executor(None, lost.poll, 0.0)
            rounds.append(await loop.run_in_executor(None, lost.poll, 10.0))
            return rounds

    rounds = asyncio.run(scenario())
    assert rounds[:6] == [[], [], [], ["pov-001.mp4"], [], []]
    assert rounds[6] == ["pov-001.mp4"]
    assert wait_for(lambda: len(events) >= 1, timeout=5)
    [event] = [e for e in events if e["kind"] == "video_segment_ready"]
    session_id = core.ingestor.live["car1"].session_id
    path = stored / str(session_id) / "car1-pc1" / "pov-001.mp4"
    expected = video + b"\0" * 1000
    assert path.read_bytes() == expected
    assert event["sha256"] == hashlib.sha256(expected).hexdigest()
    assert event["bytes"] == len(expected)
    assert event["path"] == f"{session_id}/car1-pc1/pov-001.mp4"
    assert 0 <= event["start_time"] <= event["end_time"]
    assert not list(stored.rglob("*.part"))
    db = sqlite3.connect(appliance.db_url.removeprefix("sqlite:///"))
    rows = db.execute(
        "SELECT session_id FROM events WHERE kind = 'video_segment_ready'"
    ).fetchall()
    assert rows == [(session_id,)]


def test_bad_uploads_are_refused_by_name(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    core = appliance.core
    stored = tmp_path / "stored"
    _use_video_dir(core, stored, max_bytes=1000)
    appliance.start_shim(RaceSimulatorAdapter(laps=2, speed=20.0, seed=6))
    assert wait_for(lambda: "car1" in core.ingestor.live, timeout=20)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    good = {"source": "car1-pc1", "name": "a.mp4", "start": "1", "end": "2"}

    async def scenario() -> list[tuple[int, str]]:
        # Tokens bound to their PCs: car9-pc1's own token reaches "no session".
        tokens = TokenStore.from_spec(
            f"device:car1-pc1@{TOKEN}:driver,device:car9-pc1@{CAR9_TOKEN}:driver"
        )
        app = create_app(core, tokens=tokens)
        async with TestClient(TestServer(app)) as client:
            url = "/api/v1/video/upload"
            mp4 = {"Content-Type": "video/mp4", **auth}
            cases = [
                await client.post(url, params=good, data=b"x" * 10),
                await client.post(
                    url,
                    params=good,
                    data=b"x",
                    headers={"Content-Type": "text/plain", **auth},
                ),
                await client.post(
                    url, params={**good, "name": "../../etc/x"}, data=b"x", headers=mp4
                ),
                await client.post(
                    url, params={**good, "end": "0.5"}, data=b"x", headers=mp4
                ),
                await client.post(
                    url, params={**good, "start": "nan"}, data=b"x", headers=mp4
                ),
                await client.post(
                    url,
                    params={**good, "source": "car9-pc1"},
                    data=b"x",
                    headers={**mp4, "Authorization": f"Bearer {CAR9_TOKEN}"},
                ),
                await client.post(url, params=good, data=b"x" * 5000, headers=mp4),
            ]
            return [(r.status, (await r.json())["error"]) for r in cases]

    results = asyncio.run(scenario())
    statuses = [status for status, _ in results]
    assert statuses == [401, 415, 400, 400, 400, 409, 413]
    for (_status, error), needle in zip(
        results,
        ["Authorization", "Content-Type", "name", "end", "start", "car9", "body"],
        strict=True,
    ):
        assert needle in error
    assert not [p for p in stored.rglob("*") if p.is_file()]


def test_device_signatures_speak_only_for_their_own_pc(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    """A signed upload is refused when replayed, stale, forged, or for another PC."""
    core = appliance.core
    stored = tmp_path / "stored"
    _use_video_dir(core, stored, max_bytes=10_000)
    appliance.start_shim(RaceSimulatorAdapter(laps=2, speed=20.0, seed=7))
    assert wait_for(lambda: "car1" in core.ingestor.live, timeout=20)
    route = "/api/v1/video/upload"
    good = {"source": "car1-pc1", "name": "a.mp4", "start": "1", "end": "2"}
    key = appliance.team_key

    def signed(params: dict[str, str], **kw: Any) -> dict[str, str]:
        header = sign_request(
            kw.get("key", key),
            kw.get("as_", "car1-pc1"),
            "POST",
            route,
            params,
            now=kw.get("now"),
        )
        return {"Content-Type": "video/mp4", "Authorization": header}

    async def scenario() -> list[tuple[int, str]]:
        app = create_app(core, tokens={})
        async with TestClient(TestServer(app)) as client:
            once = signed(good)
            cases = [
                await client.post(route, params=good, data=b"x" * 10, headers=once),
                # the same header again: a replay
                await client.post(route, params=good, data=b"x" * 10, headers=once),
                # signed ten minutes ago
                await client.post(
                    route,
                    params={**good, "name": "b.mp4"},
                    data=b"x",
                    headers=signed({**good, "name": "b.mp4"}, now=time.time() - 600),
                ),
                # signed with another key
                await client.post(
                    route,
                    params={**good, "name": "c.mp4"},
                    data=b"x",
                    headers=signed({**good, "name": "c.mp4"}, key=os.urandom(32)),
                ),
                # signed for other parameters than sent
                await client.post(
                    route,
                    params={**good, "name": "d.mp4"},
                    data=b"x",
                    headers=signed(good),
                ),
                # car1-pc2 signs (its own valid signature) but uploads as car1-pc1
                await client.post(
                    route,
                    params={**good, "name": "e.mp4"},
                    data=b"x",
                    headers=signed({**good, "name": "e.mp4"}, as_="car1-pc2"),
                ),
                # a driver PC's signature does not reach the engineer's commands
                await client.post(
                    "/api/v1/cars/car1/commands",
                    json={"type": "camera", "target": "car1"},
                    headers={"Authorization": signed({})["Authorization"]},
                ),
            ]
            return [(r.status, (await r.json()).get("error", "")) for r in cases]

    results = asyncio.run(scenario())
    assert [status for status, _ in results] == [201, 401, 401, 401, 401, 403, 401]
    for (_status, error), needle in zip(
        results[1:],
        [
            "already used",
            "clock",
            "does not match",
            "does not match",
            "act only as itself",
            "does not match",
        ],
        strict=True,
    ):
        assert needle in error
    assert [p.name for p in stored.rglob("*.mp4")] == ["a.mp4"]
