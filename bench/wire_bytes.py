"""Wire bytes per second per car, against raw rows, JSON per frame and zlib per batch.

Runs the real shim pipeline (adapter → ShimPipeline → Codec.encode) over the
Martinsville recording and over the race simulator, counts every encoded byte
(telemetry batches with their envelope, plus the periodic channel dictionary,
session info and driver changes), and compares with:

  (a) raw rows: the packed row size × tick rate;
  (b) one JSON message per frame: ``json.dumps`` of {channel: value} per tick;
  (c) a plain compressor: ``zlib.compress`` of each 100 ms batch laid out columnar.

It then decodes every message and reports, per channel, the largest decode error
against the channel's stated quantum (integers and flags must be exact).

    .venv/bin/python bench/wire_bytes.py [--sim-laps 10] [--all-channels]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, recording, write_result

from driver_pc.adapters.base import SimAdapter
from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.channels import ChannelSpec
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch

SOURCE = "car1-pc1"
TARGET_KBPS = 16.0  # DESIGN §6, for the full live channel set
LIVE_ROW_FACTOR = 13.0  # DESIGN §6: live rows are ~13x the .ibt rows


@dataclass
class ChannelError:
    spec: ChannelSpec
    max_err: float = 0.0
    worst_excess: float = 0.0  # max(err - allowed); > 0 means out of tolerance
    mismatches: int = 0  # lossless channels: values that differ


@dataclass
class WireResult:
    label: str
    channels: int
    row_bytes: int
    tick_rate: int
    ticks: int = 0
    bytes_by_type: Counter[str] = field(default_factory=Counter)
    count_by_type: Counter[str] = field(default_factory=Counter)
    envelope_bytes: int = 0
    json_bytes: int = 0
    json_compact_bytes: int = 0
    zlib_bytes: int = 0
    errors: dict[str, ChannelError] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.ticks / self.tick_rate

    def kbps(self, nbytes: float) -> float:
        return nbytes / self.seconds / 1000.0


def measure(adapter: SimAdapter, label: str) -> WireResult:
    codec = Codec(os.urandom(32))
    pipeline = ShimPipeline(adapter)
    channels = adapter.channels
    names = [c.name for c in channels]
    dictionaries: dict[int, ChannelDictionary] = {}
    res = WireResult(label, len(channels), 0, adapter.tick_rate)
    res.errors = {c.name: ChannelError(c) for c in channels}
    envelope = 3 + 1 + 1 + 1 + len(SOURCE.encode()) + 8 + 12 + 16
    for seq, msg in enumerate(pipeline.messages()):
        wire = codec.encode(SOURCE, seq, msg)
        kind = type(msg).__name__
        res.bytes_by_type[kind] += len(wire)
        res.count_by_type[kind] += 1
        res.envelope_bytes += envelope
        if isinstance(msg, ChannelDictionary):
            dictionaries[msg.dict_id] = msg
            res.row_bytes = msg.dtype.itemsize
        if not isinstance(msg, TelemetryBatch):
            continue
        frames = msg.frames
        res.ticks += len(frames)
        # (b) one JSON message per frame
        for row in frames.tolist():
            one = dict(zip(names, row, strict=True))
            res.json_bytes += len(json.dumps(one, default=_listed))
            res.json_compact_bytes += len(
                json.dumps(one, separators=(",", ":"), default=_listed)
            )
        # (c) zlib over the same 100 ms batch, columnar
        columnar = b"".join(np.ascontiguousarray(frames[n]).tobytes() for n in names)
        res.zlib_bytes += len(zlib.compress(columnar))
        # decode error per channel vs its quantum
        decoded = codec.decode(wire, dictionaries).message
        assert isinstance(decoded, TelemetryBatch)
        for ch in channels:
            _accumulate_error(
                res.errors[ch.name], frames[ch.name], decoded.frames[ch.name]
            )
    adapter.close()
    return res


def _listed(value: Any) -> Any:
    """An array channel's value (a CarIdx* array) as a JSON list."""
    return np.asarray(value).tolist()


def _accumulate_error(err: ChannelError, orig: Any, back: Any) -> None:
    q = err.spec.quantum
    if q is None:
        err.mismatches += int(np.count_nonzero(orig != back))
        return
    a = orig.astype(np.float64)
    b = back.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    with np.errstate(invalid="ignore"):
        diff = np.where(both_nan | same_inf, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    # Allowed: half a quantum, plus the rounding of the decoded value to its own type.
    allowed = q / 2 + np.spacing(np.abs(back)).astype(np.float64)
    err.max_err = max(err.max_err, float(diff.max(initial=0.0)))
    err.worst_excess = max(err.worst_excess, float((diff - allowed).max(initial=-1.0)))


def report(res: WireResult, all_channels: bool) -> None:
    total = sum(res.bytes_by_type.values())
    tele = res.bytes_by_type["TelemetryBatch"]
    raw = res.row_bytes * res.tick_rate / 1000.0
    print(f"\n== {res.label}")
    print(
        f"   {res.channels} channels, row {res.row_bytes} B, {res.tick_rate} Hz, "
        f"{res.ticks} ticks = {res.seconds:.1f} s, "
        f"{res.count_by_type['TelemetryBatch']} telemetry messages"
    )
    print(f"   {'what':58s} {'KB/s':>9s} {'vs raw':>7s}")
    rows = [
        ("(a) raw rows (row bytes x tick rate)", raw),
        ("(b) one JSON message per frame", res.kbps(res.json_bytes)),
        ("    the same with compact separators", res.kbps(res.json_compact_bytes)),
        (
            "(c) zlib of 100 ms columnar batches (plain compressor)",
            res.kbps(res.zlib_bytes),
        ),
        ("PitBox wire: telemetry batches incl. envelope", res.kbps(tele)),
        ("PitBox wire: all messages (+ dictionary/session info)", res.kbps(total)),
    ]
    for name, kbps in rows:
        print(f"   {name:58s} {kbps:9.2f} {kbps / raw:7.3f}")
    print("   breakdown of the PitBox wire:")
    for kind in sorted(res.bytes_by_type):
        n, b = res.count_by_type[kind], res.bytes_by_type[kind]
        print(
            f"     {kind:17s} {n:6d} msgs {b:10d} B  {res.kbps(b):7.3f} KB/s  "
            f"{b / n:8.0f} B/msg"
        )
    print(
        f"     envelope (header+nonce+tag, {res.envelope_bytes // sum(res.count_by_type.values())} B/msg) "
        f"= {res.kbps(res.envelope_bytes):.3f} KB/s of the total"
    )
    print(
        f"   bytes per value on the wire: "
        f"{tele / (res.ticks * sum(c.spec.count for c in res.errors.values())):.3f}"
    )
    verdict = "met" if res.kbps(total) <= TARGET_KBPS else "NOT met"
    print(
        f"   target <= {TARGET_KBPS:.0f} KB/s per car (full live set): {verdict} "
        f"for these {res.channels} channels"
    )
    # decode errors
    errs = list(res.errors.values())
    lossless = [e for e in errs if e.spec.quantum is None]
    floats = [e for e in errs if e.spec.quantum is not None]
    bad_int = [e for e in lossless if e.mismatches]
    bad_float = [e for e in floats if e.worst_excess > 0]
    print(
        f"   decode check: {len(lossless) - len(bad_int)}/{len(lossless)} integer/flag "
        f"channels exact; {len(floats) - len(bad_float)}/{len(floats)} float channels "
        f"within quantum/2 (+ rounding to their own type)"
    )
    for e in bad_int:
        print(f"     LOSSY integer channel {e.spec.name}: {e.mismatches} values differ")
    for e in bad_float:
        print(
            f"     OUT OF TOLERANCE {e.spec.name}: max error {e.max_err:.3g} "
            f"> quantum {e.spec.quantum:g}/2"
        )
    shown = sorted(
        floats, key=lambda e: e.max_err / (e.spec.quantum or 1), reverse=True
    )
    if not all_channels:
        shown = shown[:10]
        print("   largest decode error / quantum (10 worst float channels):")
    else:
        print("   largest decode error per float channel:")
    print(
        f"     {'channel':28s} {'unit':10s} {'quantum':>9s} {'max err':>10s} {'err/q':>6s}"
    )
    for e in shown:
        q = e.spec.quantum or 1.0
        print(
            f"     {e.spec.name:28s} {e.spec.unit:10s} {q:9.1e} {e.max_err:10.3e} "
            f"{e.max_err / q:6.3f}"
        )


def _write(results: list[WireResult]) -> None:
    """Headline figures to bench/out (KB/s per car, all messages; the decode check)."""
    names = ("martinsville", "sim_single_car", "sim_field_63")
    headline: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    worst_q = 0.0
    mismatches = 0
    for name, res in zip(names, results, strict=True):
        total = sum(res.bytes_by_type.values())
        headline[f"wire_kbps_{name}"] = {
            "value": round(res.kbps(total), 3),
            "unit": "KB/s per car",
            "target": TARGET_KBPS,
            "better": "lower",
            "bar": f"{res.label}: {res.channels} channels, all messages",
        }
        errs = res.errors.values()
        worst_q = max(
            [worst_q]
            + [e.max_err / e.spec.quantum for e in errs if e.spec.quantum is not None]
        )
        mismatches += sum(e.mismatches for e in errs)
        raw[name] = {
            "bytes_by_type": dict(res.bytes_by_type),
            "count_by_type": dict(res.count_by_type),
            "seconds": res.seconds,
            "channels": res.channels,
            "out_of_tolerance": [e.spec.name for e in errs if e.worst_excess > 0],
        }
    headline["decode_max_error_per_quantum"] = {
        "value": round(worst_q, 4),
        "unit": "quantum",
        "target": 0.5,
        "better": "lower",
        "bar": "largest |decoded - sent| / quantum over every float value "
        "(0.5 plus the float32 rounding of the value itself is allowed)",
    }
    headline["decode_integer_mismatches"] = {
        "value": mismatches,
        "unit": "values",
        "target": 0,
        "better": "lower",
        "bar": "integer and flag values that differ after decode",
    }
    # numpy scalars and arrays as plain JSON values
    headline, raw = json.loads(
        json.dumps([headline, raw], default=lambda o: np.asarray(o).tolist())
    )
    print(f"wrote {write_result('wire_bytes', headline, raw)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-laps", type=int, default=10, help="simulator laps")
    parser.add_argument(
        "--field-laps", type=int, default=3, help="laps of the 63-car field run"
    )
    parser.add_argument(
        "--all-channels", action="store_true", help="print every channel's decode error"
    )
    args = parser.parse_args()
    print(f"wire_bytes | {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path, label = recording(Path(tmp))
        results = [
            measure(IbtReplayAdapter(str(path), speed=0), label),
            measure(
                RaceSimulatorAdapter(laps=args.sim_laps, speed=0, seed=1),
                f"race simulator ({args.sim_laps} laps, its own channel set)",
            ),
            measure(
                RaceSimulatorAdapter(
                    laps=args.field_laps, speed=0, seed=1, opponents=63
                ),
                f"race simulator, 63-car field ({args.field_laps} laps, CarIdx* of 64)",
            ),
        ]
    for res in results:
        report(res, args.all_channels)
    _write(results)
    rec = results[0]
    total = sum(rec.bytes_by_type.values())
    ratio = rec.kbps(total) / (rec.row_bytes * rec.tick_rate / 1000.0)
    print(
        f"\nExtrapolation (not a measurement): live rows are ~{LIVE_ROW_FACTOR:.0f}x the "
        f".ibt row; at the recording's wire/raw ratio {ratio:.3f} the full live set "
        f"would need ~{rec.kbps(total) * LIVE_ROW_FACTOR:.0f} KB/s per car "
        f"(target {TARGET_KBPS:.0f})."
    )


if __name__ == "__main__":
    main()
