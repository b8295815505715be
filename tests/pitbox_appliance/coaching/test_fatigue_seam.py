"""The fatigue analyzer reads the driver's learned fatigue model from the coaching board."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pitbox_appliance.analysis.corners import CornerMap
from pitbox_appliance.analysis.driver_inputs import InputMetrics
from pitbox_appliance.coaching.live import BOARD, LivePlan, LiveTrainer, Notice
from pitbox_appliance.coaching.profile import FatigueModelState
from pitbox_appliance.detectors.base import LapContext, SharedState
from pitbox_appliance.detectors.fatigue import DriverFatigueAnalyzer


@pytest.fixture(autouse=True)
def clean_board() -> Iterator[None]:
    BOARD.reset()
    yield
    BOARD.reset()


def _lap(n: int, precision: float) -> LapContext:
    inputs = InputMetrics(smoothness=0.9, aggression=0.5, precision=precision)
    return LapContext(
        "car42", "Bea", n, 30.0 * n, 30.0 * (n + 1), 30.0, False, 1.0, inputs, 0.0
    )


def test_learned_baseline_is_used_from_the_first_lap() -> None:
    without = DriverFatigueAnalyzer().on_lap(_lap(1, 0.2), SharedState())
    assert without[0].payload["basis"] == "stint_time"  # no baseline yet
    BOARD.set_fatigue_model("Bea", FatigueModelState(baseline=0.4, risk_threshold=0.3))
    [update] = DriverFatigueAnalyzer().on_lap(_lap(1, 0.2), SharedState())
    assert update.payload["basis"] == "inputs+stint_time"
    # Precision fell from her fresh 0.4 to 0.2: tired, and above her own threshold.
    assert update.payload["fatigue"] >= 0.3
    assert update.payload["advice"] == "plan a driver swap"


def test_the_plans_stop_rule_tells_the_driver_once() -> None:
    BOARD.activate(
        LivePlan(
            session_id=1,
            car="car42",
            driver="Bea",
            track_id="t",
            corners=CornerMap(()),
            length_m=800.0,
            goals=[],
            stop_fatigue=0.5,
        )
    )
    trainer = LiveTrainer()
    for n, fatigue in enumerate((0.3, 0.55, 0.6), 1):
        trainer.on_lap(
            "car42", "Bea", n, 30.0 * n, 30.0 * n + 30, 30.0, 1.0, False, 0.0, fatigue
        )
    notices = [u for u in BOARD.drain() if isinstance(u, Notice)]
    assert [n.text for n in notices] == ["Fatigue 0.55: end the practice, box"]
    assert notices[0].car == "car42"
