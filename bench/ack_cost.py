"""The core's end-to-end Ack step after a commit: its cost per commit, p50/p95.

After each commit the core sends one ``Ack`` per source that had messages in it
(``CoreService._ack_shims``): it reads the sources' last stored sequence numbers,
opens each source's last message of the commit (AES-GCM) and seals one Ack with the
device's key. This runs that step on a commit of ``--cars`` sources × one second of
an endurance race each (20 batches, 19 opponents), on a temporary database, with no
broker (paho queues the publish, as it does when connected).

    .venv/bin/python bench/ack_cost.py [--cars 4] [--repeats 500]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import machine, pct

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from pitbox_appliance.config import ApplianceConfig, CoreConfig, MqttConfig
from pitbox_appliance.core.service import CoreService


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    print(machine())
    os.environ.setdefault("PITBOX_MQTT_PASSWORD", "unused")
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as tmp:
        config = ApplianceConfig(
            mqtt=MqttConfig(host="127.0.0.1", port=1, username="appliance"),
            core=CoreConfig(db_url=f"sqlite:///{Path(tmp) / 'ack.sqlite3'}"),
        )
        core = CoreService(config, key)
        codec = Codec(key)
        committed: list[tuple[str, bytes, int]] = []
        for car in range(1, args.cars + 1):
            source = f"car{car}-pc1"
            sim = RaceSimulatorAdapter(laps=1, speed=0, seed=car, opponents=19)
            messages = list(ShimPipeline(sim).messages())[:24]  # ~1 s: 20 batches
            for seq, message in enumerate(messages, start=1000):
                payload = codec.encode(source, seq, message)
                core.ingestor.handle(payload, source)
                committed.append((topics.shim_data(source).name, payload, seq))
        core.ingestor.flush()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            core._ack_shims(committed)
            times.append(time.perf_counter() - start)
        core.writer.close()
        core.engine.dispose()
    ms = [t * 1e3 for t in times]
    print(
        f"Ack step per commit, {args.cars} sources, {len(committed)} messages:"
        f" p50 {pct(ms, 50):.2f} ms, p95 {pct(ms, 95):.2f} ms"
        f" ({args.repeats} repeats)"
    )


if __name__ == "__main__":
    main()
