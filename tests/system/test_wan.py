"""A paired driver PC on a bad internet line (CI version of ``bench/wan.py``): nothing lost, nothing twice.

150 ms RTT, 1 % loss each way, 2 Mbit/s up and a 20 s outage (the bench: 2 min),
between a real ``pitbox-shim`` in its own network namespace (TLS, paired
credentials) and the appliance's real Mosquitto and core. The link is emulated per
packet in user space (``bench/wan_link.py``: this kernel has no netem).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mosquitto_available

REPO = Path(__file__).resolve().parents[2]
OUTAGE_S = 20.0


@pytest.mark.timeout(420)
def test_every_batch_arrives_once_across_loss_delay_and_an_outage(
    tmp_path: Path,
) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from wan_link import available
    finally:
        sys.path.remove(str(REPO / "bench"))
    why = available()
    if why is not None:
        pytest.skip(f"cannot emulate a WAN here: {why}")
    out = tmp_path / "wan.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "wan.py"),
            "--minutes=1.3",
            f"--outage={OUTAGE_S}",
            "--warmup=20",
            f"--out={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    raw, headline = result["raw"], result["headline"]
    frames = raw["frames"]
    assert frames["stored_frames"] == frames["want_frames"] > 3000, frames
    assert frames["gaps"] == 0, frames
    assert frames["overlaps"] == 0, frames
    assert frames["ends_at_finish"], frames
    assert raw["stored"] == raw["distinct"]
    assert headline["wan_batches_exactly_once"]["value"] == 1.0
    assert raw["shim_exit_code"] == 0
    # The line really was bad: packets lost both ways, everything dropped in the
    # outage, and the spool held the outage's messages (~10 a second).
    link = raw["link"]
    assert link["up"]["lost"] > 0
    assert link["down"]["lost"] > 0
    assert link["up"]["dropped_outage"] > 0
    assert raw["spool_max"] >= OUTAGE_S * 5
    # Live again well within the outage's length; the RTT shows in the lag.
    assert 0 <= raw["drain_s"] < OUTAGE_S
    lag = raw["lag_steady_ms"]
    assert 40 < lag["p50"] < 1000, lag
