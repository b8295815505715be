"""A burst of wrong pairing guesses against the real API: how many are tried, does health stall.

Starts the core's API (real aiohttp app, start_api, a CA and device registry made here)
with one pending code, fires N concurrent wrong proofs from 127.0.0.1 in a separate
process, polls ``GET /api/v1/health`` every 20 ms from 127.0.0.3 until the burst's
answers are all in, then pairs with the real code from 127.0.0.1 and from 127.0.0.2.
Prints one line: statuses, health latency p50/p99/max, the two genuine attempts.

    .venv/bin/python bench/pairing_burst.py [--guesses 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from _common import machine

from driver_pc.protocol.pairing import pairing_proof
from pitbox_appliance.api.app import bound_port, start_api
from pitbox_appliance.config import ApplianceConfig, CoreConfig, SecurityConfig
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.pki import ensure_pki

BURST = """
import asyncio, json, os, sys
import aiohttp

async def main(url, count):
    connector = aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.1", 0))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async def guess():
            body = {"nonce": os.urandom(16).hex(), "proof": os.urandom(32).hex()}
            async with http.post(url, json=body) as response:
                return response.status
        print(json.dumps(await asyncio.gather(*(guess() for _ in range(count)))))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def main() -> None:
    """Run the burst once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--guesses", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(asyncio.run(_run(Path(tmp), args.guesses)))
    print(machine())


async def _run(tmp: Path, guesses: int) -> str:
    ensure_pki(tmp / "security", ["127.0.0.1"])
    config = ApplianceConfig(
        core=CoreConfig(db_url=f"sqlite:///{tmp / 'a.sqlite3'}", api_port=0),
        security=SecurityConfig(
            dir=str(tmp / "security"), broker_run_dir=str(tmp / "broker")
        ),
    )
    os.environ.setdefault("PITBOX_API_TOKENS", "")
    core = CoreService(config, os.urandom(32))
    runner = await start_api(core)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    pending = core.devices.start_pairing("car3-pc1")
    try:
        burst = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BURST,
            f"{base}/api/v1/pair",
            str(guesses),
            stdout=asyncio.subprocess.PIPE,
        )
        latencies: list[float] = []
        started = time.perf_counter()
        watcher = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
        async with aiohttp.ClientSession(connector=watcher) as http:

            async def poll() -> None:
                while burst.returncode is None:
                    began = time.perf_counter()
                    async with http.get(f"{base}/api/v1/health") as response:
                        await response.read()
                    latencies.append(time.perf_counter() - began)
                    await asyncio.sleep(0.02)

            poller = asyncio.create_task(poll())
            output, _ = await burst.communicate()
            await poller
        burst_s = time.perf_counter() - started
        statuses = Counter(json.loads(output))
        same = await _pair(base, pending.code, "127.0.0.1")
        other = await _pair(base, pending.code, "127.0.0.2")
    finally:
        await runner.cleanup()
        core.writer.close()
        core.engine.dispose()
    latencies.sort()
    p99 = latencies[max(0, round(len(latencies) * 0.99) - 1)]
    return (
        f"{guesses} concurrent guesses from one address: statuses "
        f"{dict(sorted(statuses.items()))}, burst answered in {burst_s:.1f} s; "
        f"/health {len(latencies)} polls p50 {statistics.median(latencies) * 1000:.1f} "
        f"ms p99 {p99 * 1000:.1f} ms max {latencies[-1] * 1000:.1f} ms; "
        f"real code from the guessing address: {same}, from another address: {other}"
    )


async def _pair(base: str, code: str, address: str) -> int:
    nonce = os.urandom(16)
    body = {"nonce": nonce.hex(), "proof": pairing_proof(code, nonce).hex()}
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(f"{base}/api/v1/pair", json=body) as response,
    ):
        return response.status


if __name__ == "__main__":
    main()
