"""SD-card wear: bytes the core's SQLite writes per hour of racing, at the shipped commit cadence.

Runs the core's ingest path (codec → Ingestor → SessionWriter) on a simulated race and
commits exactly as the core does at real time: every ``commit_interval_s`` of race time
(100 ms by default), i.e. every 2 batches of 50 ms per car. Bytes written are what this
process asked the kernel to write (``/proc/self/io`` ``wchar``) and what reached the block
layer (``write_bytes``), plus the size of the database and its WAL at the end.

    .venv/bin/python bench/sd_wear.py [--minutes 20] [--cars 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import code_fingerprint

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import TelemetryBatch
from pitbox_appliance.config import CoreConfig
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter


def io_counters() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, value = line.split(":")
        fields[key] = int(value)
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=20.0, help="race minutes per car"
    )
    parser.add_argument("--cars", type=int, default=1)
    args = parser.parse_args()
    core = CoreConfig()
    codec = Codec(os.urandom(32))
    laps = max(1, int(args.minutes * 60 / 26))  # the simulator laps in ~26 s
    streams = []
    for car in range(args.cars):
        sim = RaceSimulatorAdapter(
            laps=laps, speed=0, seed=40 + car, session_key=f"wear-{car}"
        )
        streams.append((f"car{car}-pc1", ShimPipeline(sim).messages()))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "wear.sqlite3"
        engine = open_database(f"sqlite:///{db}")
        ingestor = Ingestor(codec, SessionWriter(engine))
        before = io_counters()
        started = time.perf_counter()
        race_s = 0.0
        next_commit = core.commit_interval_s
        seqs = [0] * len(streams)
        live = list(range(len(streams)))
        while live:
            for i in list(live):
                source, messages = streams[i]
                message = next(messages, None)
                if message is None:
                    live.remove(i)
                    continue
                seqs[i] += 1
                ingestor.handle(codec.encode(source, seqs[i], message))
                if isinstance(message, TelemetryBatch) and i == 0:
                    race_s = float(message.frames["SessionTime"][-1])
            if race_s >= next_commit:
                ingestor.flush()
                next_commit = race_s + core.commit_interval_s
        ingestor.flush()
        after = io_counters()
        wall = time.perf_counter() - started
        engine.dispose()
        db_bytes = db.stat().st_size
        wal = db.with_name(db.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
    hours = race_s / 3600
    wchar = after["wchar"] - before["wchar"]
    block = after["write_bytes"] - before["write_bytes"]
    print(
        f"sd_wear | {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} | code {code_fingerprint()}"
    )
    print(
        f"{args.cars} car(s), {race_s / 60:.1f} min of race each, commit every {core.commit_interval_s * 1000:.0f} ms of race time ({wall:.1f} s wall)"
    )
    print(
        f"  written by the process (wchar):   {wchar / 1e6 / hours / args.cars:8.1f} MB per hour per car"
    )
    print(
        f"  reached the block layer:          {block / 1e6 / hours / args.cars:8.1f} MB per hour per car"
    )
    print(
        f"  database at the end:              {db_bytes / 1e6 / hours / args.cars:8.1f} MB per hour per car (WAL {wal_bytes / 1e6:.1f} MB)"
    )
    print(f"  write amplification (wchar / db): {wchar / max(db_bytes, 1):8.2f}")


if __name__ == "__main__":
    main()
