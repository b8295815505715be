"""Live path: an hour at 60 Hz through the memory-map emulator, the live adapter and the shim.

The emulator (``python -m driver_pc.adapters.irsdk_emulator``) runs as its own
process, as iRacing does, and writes the live memory map into a file at 60 Hz. This
process is the shim: ``IRacingLiveAdapter`` polls that file (the Linux stand-in for
the Windows data-valid event), then ``ShimPipeline`` → ``Codec.encode`` →
``Spool.append`` exactly as ``ShimService._send`` does. With ``--appliance`` it is the
real ``ShimService`` instead, publishing to Mosquitto with the core running beside it
(``bench/load.py``'s ``Appliance``: broker + core process, core pinned to one CPU).

Figures:
- ticks written by the emulator, read by the shim, and **missed** (goal 0): ticks the
  emulator wrote while the shim was connected that never reached the pipeline;
- the shim's **CPU per tick**: this process's CPU time (every thread: the adapter's
  reader polling every 1 ms, the pipeline, the codec, the spool, and with
  ``--appliance`` the MQTT sender) between two consecutive ticks handed to the
  pipeline, p50/p99/p99.9/max; and the pipeline thread's own CPU and wall work;
- with ``--events``: a sim restart, a session change and session-info updates during
  the run, and what the shim did about each (the timeline in the JSON).

Raw figures (summary, per-second series, CPU histogram, timeline) go to
``bench/out/live_path-<UTC time>.json``.

    nice .venv/bin/python bench/live_path.py [--minutes 60] [--source simulator|ibt]
        [--opponents 63] [--events] [--appliance]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import MARTINSVILLE, REPO, machine, pct

from driver_pc.adapters.base import Frames
from driver_pc.adapters.iracing_live import IRacingLiveAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import (
    ChannelDictionary,
    DriverChange,
    Message,
    SessionInfo,
    TelemetryBatch,
)
from driver_pc.transport.spool import Spool

SOURCE = "car1-pc1"
OUT = REPO / "bench" / "out"


@dataclass
class Segment:
    """One stretch of ticks()': a session of the sim, from connect to its end."""

    started_s: float  # since the run began
    session_key: str
    first_tick: int
    ticks: int = 0
    ended_s: float | None = None
    why_ended: str = ""
    #: What the pipeline sent before the first telemetry batch of the segment.
    opening: list[str] = field(default_factory=list)


class MeasuredAdapter(IRacingLiveAdapter):
    """The live adapter, timing each tick from hand-out to the pipeline's next request."""

    def __init__(self, memory_map: str, run_t0: float) -> None:
        super().__init__(memory_map=memory_map, wait_s=60)
        self.run_t0 = run_t0
        self.process_cpu: list[float] = []  # all threads, between two requests
        self.thread_cpu: list[float] = []  # the pipeline thread's CPU per tick
        self.work_wall: list[float] = []  # hand-out → next request, wall
        self.segments: list[Segment] = []
        #: What the pipeline of the coming segment has sent so far (see _note).
        self.opening: list[str] = []

    def wait_for_session(self, timeout: float) -> bool:
        ready = super().wait_for_session(timeout)
        if ready:
            self.opening = []  # a new pipeline starts
        return ready

    def ticks(self) -> Iterator[Frames]:
        pcpu, tcpu, wall = time.process_time, time.thread_time, time.perf_counter
        segment: Segment | None = None
        before = (self.stats.sim_gone, self.stats.session_changes)
        last_p = pcpu()
        for row in super().ticks():
            if segment is None:
                segment = Segment(
                    time.monotonic() - self.run_t0,
                    self.session_key,
                    self.stats.last_tick,
                    opening=self.opening,
                )
                self.segments.append(segment)
            segment.ticks += 1
            t0, c0 = wall(), tcpu()
            yield row
            t1, p1 = wall(), pcpu()
            self.work_wall.append(t1 - t0)
            self.thread_cpu.append(tcpu() - c0)
            self.process_cpu.append(p1 - last_p)
            last_p = p1
        if segment is not None:
            segment.ended_s = time.monotonic() - self.run_t0
            if self.stats.sim_gone > before[0]:
                segment.why_ended = "sim gone"
            elif self.stats.session_changes > before[1]:
                segment.why_ended = "session changed"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="replay length")
    parser.add_argument("--source", choices=("simulator", "ibt"), default="simulator")
    parser.add_argument(
        "--opponents", type=int, default=63, help="simulator: cars besides ours"
    )
    parser.add_argument(
        "--ibt",
        type=Path,
        default=MARTINSVILLE,
        help="--source ibt: the recording, looped",
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help="a session-info update every 5 min; a session change at 1/3 of the "
        "run; a sim restart (2 s off) at 2/3",
    )
    parser.add_argument(
        "--appliance", action="store_true", help="run ShimService with broker + core"
    )
    parser.add_argument("--core-cpu", type=int, default=1, help="--appliance: pin")
    args = parser.parse_args()

    seconds = args.minutes * 60
    print(f"live_path | {machine()}")
    log = _LogKeeper()
    adapter_logger = logging.getLogger("driver_pc.adapters.iracing_live")
    adapter_logger.setLevel(logging.INFO)
    adapter_logger.addHandler(log)
    work = Path(tempfile.mkdtemp(prefix="pitbox-live-"))
    mem = work / "irsdk.mem"
    stats_path = work / "emulator.json"
    emulator_cmd = [
        sys.executable,
        "-m",
        "driver_pc.adapters.irsdk_emulator",
        *("--out", str(mem), "--stats", str(stats_path)),
        *("--minutes", str(args.minutes)),
    ]
    if args.source == "simulator":
        laps = int(seconds / 25) + 5  # laps take ~26 s: never run out
        emulator_cmd += ["--simulator", "--laps", str(laps), "--seed", "3"]
        emulator_cmd += ["--opponents", str(args.opponents)]
        what = f"race simulator, {args.opponents} opponents, {laps} laps"
    else:
        emulator_cmd += ["--ibt", str(args.ibt), "--loop"]
        what = f"{args.ibt.name}, looped"
    events = _events(seconds) if args.events else []
    for at, kind in events:
        emulator_cmd += ["--event", f"{at:.1f}:{kind}"]
    mode = (
        "ShimService + Mosquitto + core"
        if args.appliance
        else "pipeline + codec + spool"
    )
    print(f"{args.minutes:g} min at 60 Hz of {what}; shim: {mode}")
    if events:
        print("events: " + ", ".join(f"{kind} at {at:.0f} s" for at, kind in events))

    load = _LoadSampler()
    emulator = subprocess.Popen(
        emulator_cmd,
        stdout=subprocess.DEVNULL,
        stderr=(work / "emulator.log").open("w"),
    )
    run_t0 = time.monotonic()
    appliance = None
    try:
        adapter = MeasuredAdapter(str(mem), run_t0)
        if args.appliance:
            appliance, sent, accepted = _run_service(adapter, work, args.core_cpu)
        else:
            sent, accepted = _run_pipeline(adapter, work), None
        emulator.wait(timeout=120)
    finally:
        if emulator.poll() is None:
            emulator.terminate()
            emulator.wait(timeout=30)
        if appliance is not None:
            appliance.stop()
    wall = time.monotonic() - run_t0
    load.stop.set()
    emu = json.loads(stats_path.read_text())
    return _report(
        args, what, mode, adapter, emu, sent, accepted, wall, events, log, load
    )


class _LogKeeper(logging.Handler):
    """The adapter's log lines (missed ticks, sim gone...) with the run time."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{time.monotonic() - self.t0:8.1f} s {record.getMessage()}")


class _LoadSampler:
    """The machine's 1-minute load average every 5 s (others share this machine)."""

    def __init__(self) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(5):
            self.samples.append(round(os.getloadavg()[0], 2))


def _events(seconds: float) -> list[tuple[float, str]]:
    updates = [(t, "update") for t in np.arange(300.0, seconds - 30, 300.0)]
    return sorted(
        [*updates, (seconds / 3, "session"), (2 * seconds / 3, "restart")],
        key=lambda e: e[0],
    )


def _run_pipeline(adapter: MeasuredAdapter, work: Path) -> dict[str, int]:
    """The shim's work without the network: pipeline → codec → spool, every session."""
    codec = Codec(os.urandom(32))
    spool = Spool(work / "shim.spool")
    topic = topics.shim_data(SOURCE).name
    sent: dict[str, int] = {}
    try:
        while True:
            for message in ShimPipeline(adapter).messages():
                _note(adapter, message, sent)
                seq = spool.next_seq()
                spool.append(topic, codec.encode(SOURCE, seq, message), seq)
                if seq % 200 == 0:
                    spool.delete_up_to(seq)  # as the sender does on the core's Ack
            if not _next_session(adapter):
                return sent
    finally:
        spool.close()
        adapter.close()


def _next_session(adapter: MeasuredAdapter) -> bool:
    """As ShimService does: wait for the sim (it may have stopped or moved on)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if adapter.wait_for_session(2.0):
            return True
    return False


def _run_service(
    adapter: MeasuredAdapter, work: Path, core_cpu: int
) -> tuple[Any, dict[str, int], int]:
    """The real ShimService against Mosquitto, with the core ingesting beside it."""
    from load import Appliance

    from driver_pc.protocol.mqtt import BrokerAddress
    from driver_pc.service import ShimConfig, ShimService

    (work / "appliance").mkdir(exist_ok=True)
    app = Appliance(work / "appliance", core_cpu, dashboard=False)
    app.start()
    sent: dict[str, int] = {}
    service = ShimService(
        ShimConfig(
            source=SOURCE,
            broker=BrokerAddress(
                "127.0.0.1", app.broker_port, SOURCE, app.passwords[SOURCE]
            ),
            team_key=app.key,
            spool_path=str(work / "shim.spool"),
        ),
        adapter,
    )
    send = service._send

    def counted(message: Message) -> None:
        _note(adapter, message, sent)
        send(message)

    service._send = counted  # type: ignore[method-assign]
    stop = threading.Event()
    watchdog = threading.Thread(
        target=_stop_when_emulator_ends, args=(adapter, stop), daemon=True
    )
    watchdog.start()
    service.run(stop)
    time.sleep(3)  # let the core take the last batches
    return app, sent, app.accepted()


def _stop_when_emulator_ends(adapter: MeasuredAdapter, stop: threading.Event) -> None:
    """ShimService waits for the sim forever; after the run, nothing comes back."""
    while not stop.is_set():
        time.sleep(1)
        if adapter.stats.sim_gone and not Path(adapter.memory_map or "").exists():
            # Gone for 20 s (a restart takes 2 s): the emulator has finished.
            gone_at = time.monotonic()
            while time.monotonic() - gone_at < 20:
                if Path(adapter.memory_map or "").exists():
                    break
                time.sleep(0.5)
            else:
                stop.set()


def _note(adapter: MeasuredAdapter, message: Message, sent: dict[str, int]) -> None:
    kind = type(message).__name__
    sent[kind] = sent.get(kind, 0) + 1
    opening = adapter.opening
    if opening and opening[-1] == "batch":
        return
    if isinstance(message, TelemetryBatch):
        opening.append("batch")
    elif isinstance(message, ChannelDictionary):
        opening.append(f"channel dictionary ({len(message.channels)} channels)")
    elif isinstance(message, SessionInfo):
        opening.append(f"session info #{message.update}")
    elif isinstance(message, DriverChange):
        opening.append("driver change")
    else:
        opening.append(kind)


def _report(
    args: argparse.Namespace,
    what: str,
    mode: str,
    adapter: MeasuredAdapter,
    emu: dict[str, Any],
    sent: dict[str, int],
    accepted: int | None,
    wall: float,
    events: list[tuple[float, str]],
    log: _LogKeeper,
    load: _LoadSampler,
) -> int:
    stats = adapter.stats
    cpu_us = np.array(adapter.process_cpu) * 1e6
    thread_us = np.array(adapter.thread_cpu) * 1e6
    work_us = np.array(adapter.work_wall) * 1e6
    # Ticks the sim wrote before the shim (re)connected are not misses: each new
    # connection starts with the newest tick (a session change keeps the connection).
    segments = adapter.segments
    before_connect = sum(
        s.first_tick - 1
        for i, s in enumerate(segments)
        if i == 0 or segments[i - 1].why_ended != "session changed"
    )
    figures = {
        "ticks_written": emu["ticks_written"],
        "ticks_read": stats.ticks_read,
        "missed": stats.missed_ticks,
        "dropped": stats.dropped_ticks,
        "torn": stats.torn_reads,
        "before_connect": before_connect,
        # Goal 0: every tick written is read, missed or from before a connect.
        "unaccounted": emu["ticks_written"]
        - stats.ticks_read
        - stats.missed_ticks
        - stats.dropped_ticks
        - before_connect,
        "max_look_gap_ms": stats.max_look_gap_s * 1000,
        "connects": stats.connects,
        "sim_gone": stats.sim_gone,
        "session_changes": stats.session_changes,
    }
    summary = {
        "process_cpu_per_tick_us": _pcts(cpu_us),
        "pipeline_thread_cpu_per_tick_us": _pcts(thread_us),
        "pipeline_work_wall_per_tick_us": _pcts(work_us),
        "process_cpu_share_of_one_core": float(cpu_us.sum() / 1e6 / wall),
    }
    hist_edges = [0, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10_000, 16_667, 1e9]
    hist = np.histogram(cpu_us, bins=hist_edges)[0].tolist()
    per_second = _per_second(adapter)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = OUT / f"live_path-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "command": " ".join(sys.argv),
                "source": what,
                "shim": mode,
                "minutes": args.minutes,
                "wall_s": wall,
                "ticks": figures,
                "cpu": summary,
                "cpu_histogram_us": {"edges": hist_edges[:-1], "counts": hist},
                "emulator": emu,
                "messages_sent": sent,
                "appliance_accepted": accepted,
                "events": [{"at_s": at, "kind": kind} for at, kind in events],
                "segments": [asdict(s) for s in adapter.segments],
                "adapter_log": log.lines,
                "per_second": per_second,
                "load1_every_5s": load.samples,
            },
            indent=1,
        )
        + "\n"
    )
    print()
    print(
        f"ticks: written {figures['ticks_written']}, read {figures['ticks_read']}, "
        f"missed {figures['missed']} (goal 0), dropped {figures['dropped']}, "
        f"torn {figures['torn']}, before a connect {figures['before_connect']}, "
        f"unaccounted {figures['unaccounted']}; the reader looked at least every "
        f"{figures['max_look_gap_ms']:.1f} ms; emulator stalls {emu['stalls']} "
        f"({emu['stalled_s'] * 1000:.0f} ms), max late {emu['max_late_s'] * 1000:.1f} ms"
    )
    print(
        f"connects {stats.connects}, sim gone {stats.sim_gone}, "
        f"session changes {stats.session_changes}; messages sent {sent}"
        + (f"; core accepted {accepted}" if accepted is not None else "")
    )
    for label, key in (
        ("shim process CPU per tick", "process_cpu_per_tick_us"),
        ("pipeline thread CPU per tick", "pipeline_thread_cpu_per_tick_us"),
        ("pipeline work (wall) per tick", "pipeline_work_wall_per_tick_us"),
    ):
        p = summary[key]
        assert isinstance(p, dict)
        print(
            f"{label:31s} p50 {p['p50']:7.1f} µs  p99 {p['p99']:7.1f} µs  "
            f"p99.9 {p['p99.9']:7.1f} µs  max {p['max']:8.1f} µs"
        )
    print(
        f"shim process CPU: {summary['process_cpu_share_of_one_core']:.1%} of a core; "
        f"machine load average {min(load.samples):.1f}-{max(load.samples):.1f} "
        f"(nproc {os.cpu_count()})"
    )
    for s in adapter.segments:
        print(
            f"  segment at {s.started_s:7.1f} s: {s.session_key}, first tick "
            f"{s.first_tick}, {s.ticks} ticks, ended {s.why_ended or 'at the end'}"
            f"; opened with {', '.join(s.opening)}"
        )
    print(f"raw figures: {out.relative_to(REPO)}")
    return 0 if stats.missed_ticks == figures["unaccounted"] == 0 else 1


def _pcts(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "p99.9": pct(values, 99.9),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def _per_second(adapter: MeasuredAdapter) -> dict[str, list[float]]:
    """Ticks and process CPU per 60-tick stretch (one second of the sim)."""
    cpu = np.array(adapter.process_cpu)
    n = len(cpu) // 60
    return {
        "cpu_ms_per_60_ticks": [
            round(float(x), 3) for x in cpu[: n * 60].reshape(n, 60).sum(1) * 1e3
        ]
    }


if __name__ == "__main__":
    sys.exit(main())
