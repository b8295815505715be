"""The post-race pipeline end to end: shim → broker → core; the race ends; the worker compacts,
syncs to a real S3 endpoint (moto), reports, and session_report_ready comes back through the
core (stored, and on /api/v1/events/stream). Then with the endpoint down until later."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.api.app import create_app
from pitbox_appliance.postrace.progress import Progress, Step
from pitbox_appliance.postrace.worker import PostRaceConfig, PostRaceService
from pitbox_appliance.storage.models import Event, RaceSession
from tests.cloud_sync.conftest import REGION, MotoServer, free_port
from tests.conftest import RunningAppliance, readonly_engine, wait_for

TOKEN = "pipeline-token-0123456789abcdef"
BUCKET = "team-bucket"


class Api:
    """The core's API on a free port in its own thread, and a client of its event stream."""

    def __init__(self, appliance: RunningAppliance) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.frames: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(
            create_app(appliance.core, tokens={TOKEN: frozenset({"pipeline", "read"})})
        )
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self._listener = self._loop.create_task(self._listen(ready))
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(15), "event stream did not open"

    async def _listen(self, ready: threading.Event) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"{self.url}/api/v1/events/stream?car=car1",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as ws,
        ):
            ready.set()
            async for message in ws:
                self.frames.append(json.loads(message.data))

    def reports(self) -> list[dict[str, Any]]:
        return [f for f in list(self.frames) if f["kind"] == "session_report_ready"]

    def close(self) -> None:
        async def stop() -> None:
            self._listener.cancel()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(appliance: RunningAppliance) -> Iterator[Api]:
    running = Api(appliance)
    yield running
    running.close()


def race(appliance: RunningAppliance, seed: int) -> str:
    """Run a short simulated race (ends on the checkered flag); its session key."""
    shim = appliance.start_shim(
        RaceSimulatorAdapter(laps=3, speed=0, seed=seed, endurance=True)
    )
    assert wait_for(lambda: shim.final_spool_depth == 0, timeout=120)
    engine = readonly_engine(appliance.db_url)
    with Session(engine) as db:
        key = db.scalars(select(RaceSession.session_key).order_by(RaceSession.id)).all()
    engine.dispose()
    return key[-1]


def use_moto(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials of ``server`` for the worker's children (sync, report)."""
    monkeypatch.setenv("PITBOX_S3_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("PITBOX_S3_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("PITBOX_S3_REGION", REGION)
    server.bucket(BUCKET)


def worker_for(appliance: RunningAppliance, api: Api, endpoint: str) -> PostRaceService:
    return PostRaceService(
        PostRaceConfig(
            db_url=appliance.db_url,
            outbox=appliance.tmp / "outbox",
            progress=appliance.tmp / "postrace.sqlite3",
            reports=appliance.tmp / "reports",
            target=f"s3://{BUCKET}/pitbox",
            endpoint_url=endpoint,
            api=api.url,
            api_token=TOKEN,
            settle_s=0.5,
            poll_s=0.2,
            pdf=False,
            retry_s=0.5,
            retry_max_s=1.0,
        )
    )


def until(worker: PostRaceService, done: Any, timeout: float = 240.0) -> list[Progress]:
    """Rounds until ``done(progress)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = worker.round()
        if done(progress):
            return progress
        time.sleep(0.2)
    raise AssertionError(f"pipeline did not get there: {worker.book.all()}")


def stored_reports(db_url: str) -> list[Event]:
    engine = readonly_engine(db_url)
    with Session(engine) as db:
        rows = list(
            db.scalars(select(Event).where(Event.kind == "session_report_ready"))
        )
    engine.dispose()
    return rows


def test_race_end_to_report_on_s3_and_back_through_the_core(
    appliance: RunningAppliance,
    api: Api,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_moto(moto, monkeypatch)
    key = race(appliance, seed=21)
    worker = worker_for(appliance, api, moto.url)
    try:
        (done,) = until(worker, lambda p: p and p[0].step is Step.DONE)
    finally:
        worker.close()
    assert done.finished_by == "checkered"
    assert done.report_url.startswith(f"s3://{BUCKET}/pitbox/")
    s3 = moto.client()
    names = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert f"pitbox/{done.path}/manifest.json" in names
    assert done.report_url.removeprefix(f"s3://{BUCKET}/") in names
    assert wait_for(lambda: len(api.reports()) == 1, timeout=10)
    (streamed,) = api.reports()
    assert streamed == {
        "kind": "session_report_ready",
        "car": "car1",
        "session_key": key,
        "url": done.report_url,
        "pdf_url": None,
    }
    (row,) = stored_reports(appliance.db_url)
    assert row.payload["url"] == done.report_url


def test_target_unreachable_first_then_resumes(
    appliance: RunningAppliance,
    api: Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()  # nothing listens here yet: the team's cloud is offline
    race(appliance, seed=22)
    worker = worker_for(appliance, api, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PITBOX_S3_ACCESS_KEY_ID", "offline")
    monkeypatch.setenv("PITBOX_S3_SECRET_ACCESS_KEY", "offline")
    try:
        (stuck,) = until(worker, lambda p: p and p[0].failed)
        assert stuck.step is Step.SYNCING
        assert stuck.status.startswith("failed: syncing: not on s3://")
        assert api.reports() == []
        assert stored_reports(appliance.db_url) == []
        # The endpoint comes up (same address); the worker resumes at the sync.
        server = MotoServer(tmp_path / "moto", port=port)
        (tmp_path / "moto").mkdir()
        server.start()
        try:
            use_moto(server, monkeypatch)
            (done,) = until(worker, lambda p: p and p[0].step is Step.DONE)
        finally:
            server.stop()
    finally:
        worker.close()
    assert done.path == stuck.path
    assert done.attempts == 0
    assert wait_for(lambda: len(api.reports()) == 1, timeout=10)
    assert len(stored_reports(appliance.db_url)) == 1
