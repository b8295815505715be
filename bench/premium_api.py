"""Premium data API and sponsor exposure: what a request and a race cost on one machine.

Simulates an endurance race with a broadcast camera (opponents, stops, a driver swap),
imports and compacts it, publishes the set to a ``file://`` target (no S3 here, so the
figures are the API's own, not the network's), then:

  mirror   the first ``SessionStore.refresh`` (fetch + SHA-256 check of the four tables)
  request  wall time of each authenticated ``GET`` through aiohttp (keys checked,
           rate limit, DuckDB over the mirror, metering), per route, N times
  sponsor  ``SponsorExposureTracker(...).report()`` on the compacted set

    .venv/bin/python bench/premium_api.py [--laps 30] [--opponents 20] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--laps", type=int, default=30)
    p.add_argument("--opponents", type=int, default=20)
    p.add_argument("--requests", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pitbox-premium-bench-") as tmp:
        result = run(Path(tmp), args)
    print(json.dumps(result, indent=1))
    return 0


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    from cloud_sync.compacted import load_session
    from cloud_sync.plans import TeamDirectory
    from cloud_sync.premium.app import PremiumDataAPI
    from cloud_sync.premium.keys import KeyStore, Scope
    from cloud_sync.premium.store import SessionStore
    from cloud_sync.sponsor.exposure import SponsorExposureTracker
    from cloud_sync.targets import FileTarget
    from driver_pc.adapters.ibt_file import IbtWriter
    from driver_pc.adapters.simulator import RaceSimulatorAdapter
    from pitbox_appliance.cli.importer import import_file, local_codec
    from pitbox_appliance.compaction import compact_session
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import make_engine, open_database
    from pitbox_appliance.storage.writer import SessionWriter

    sim = RaceSimulatorAdapter(
        laps=args.laps,
        speed=0,
        seed=26,
        opponents=args.opponents,
        drivers=("Alex Sim", "Bea Sim"),
        start_fuel=6.0,
        broadcast=True,
    )
    ibt = root / "race.ibt"
    writer = IbtWriter(ibt, list(sim.channels), sim.session_info_text(), sim.tick_rate)
    for rows in sim.ticks():
        writer.write(rows)
    writer.close()
    url = f"sqlite:///{root / 'db.sqlite3'}"
    engine = open_database(url)
    session_writer = SessionWriter(engine)
    codec = local_codec()
    import_file(ibt, Ingestor(codec, session_writer), codec)
    session_writer.close()
    engine.dispose()
    reader = make_engine(url, readonly=True)
    manifest = compact_session(reader, 1, root / "bucket")
    reader.dispose()
    target = FileTarget(root / "bucket")
    store = SessionStore(target, root / "mirror")
    t0 = time.perf_counter()
    store.refresh()
    mirror_s = time.perf_counter() - t0
    teams_dir = root / "teams"
    teams_dir.mkdir()
    team = manifest.partition.team
    (teams_dir / "t.yaml").write_text(f"team: {team}\nname: T\nplan: pro\n")
    keys = KeyStore(root / "keys.sqlite3")
    _, token = keys.add("bench", [Scope(team, "*")], rate_per_min=100_000)
    api = PremiumDataAPI(store, keys, TeamDirectory.load(teams_dir))
    base = (
        f"/v1/teams/{team}/seasons/{manifest.partition.season}/sessions/"
        f"{manifest.partition.session}"
    )
    routes = ["laps", "stints", "pit-cycles", "handoffs", "predictions"]

    async def requests() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {r: [] for r in routes}
        async with TestClient(TestServer(api.app())) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(args.requests):
                for route in routes:
                    t = time.perf_counter()
                    response = await client.get(f"{base}/{route}", headers=headers)
                    await response.read()
                    assert response.status == 200, await response.text()
                    times[route].append(time.perf_counter() - t)
        return times

    times = asyncio.run(requests())
    keys.close()
    store.close()
    session = load_session(root / "bucket" / manifest.path)
    t0 = time.perf_counter()
    exposure = SponsorExposureTracker(session).report()
    sponsor_s = time.perf_counter() - t0
    return {
        "laps": args.laps,
        "opponents": args.opponents,
        "telemetry_rows": int(manifest.telemetry.get("rows", 0)),
        "mirror_first_refresh_s": round(mirror_s, 3),
        "request_ms": {
            r: {
                "p50": round(1e3 * statistics.median(v), 1),
                "p99": round(1e3 * _percentile(v, 0.99), 1),
                "n": len(v),
            }
            for r, v in times.items()
        },
        "sponsor_report_s": round(sponsor_s, 3),
        "on_camera_s": exposure.on_camera_s,
        "laps_led": exposure.laps_led,
    }


if __name__ == "__main__":
    raise SystemExit(main())
