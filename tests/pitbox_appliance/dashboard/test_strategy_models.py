"""The strategy page's model tile: only predictions that beat their baseline, each beside it."""

from __future__ import annotations

from driver_pc.protocol.live import Predictions
from pitbox_appliance.dashboard.pages import strategy


def test_a_winning_model_shows_beside_its_baseline() -> None:
    predictions = Predictions.model_validate(
        {
            "lap": 31,
            "next_lap_time_s": {
                "value": 101.234,
                "source": "model",
                "model": 101.234,
                "baseline": 101.9,
            },
        }
    )
    html = strategy.models_html(predictions)
    assert 'data-testid="strat-models"' in html
    assert 'data-testid="model-next_lap_time_s"' in html
    assert "101.234 s" in html
    assert "101.900 s" in html
    assert "after lap 31" in html
    assert "strat-models-missing" not in html


def test_a_baseline_source_or_no_prediction_is_not_shown_as_a_model() -> None:
    as_baseline = Predictions.model_validate(
        {
            "lap": 8,
            "fuel_next_lap_l": {
                "value": 2.4,
                "source": "baseline",
                "model": 2.5,
                "baseline": 2.4,
            },
        }
    )
    for predictions in (None, Predictions(), as_baseline):
        html = strategy.models_html(predictions)
        assert 'data-testid="strat-models-missing"' in html
        assert "model-fuel_next_lap_l" not in html
        assert "beat its baseline on real held-out races" in html
