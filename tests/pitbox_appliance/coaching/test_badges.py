"""Badge rules from YAML: the packaged file loads; malformed rules name the key and the line."""

from __future__ import annotations

import pytest

from pitbox_appliance.coaching.badges import (
    BadgeRuleError,
    BadgingSystem,
    Measured,
    load_rules,
    parse_rules,
)
from pitbox_appliance.coaching.profile import BadgeCategory, BadgeLevel

GOOD = """\
version: 1
rules:
  - category: consistency
    metric: lap_time_sd_s
    laps: 3
    better: lower
    levels: {bronze: 0.8, silver: 0.5, gold: 0.3, platinum: 0.15}
"""


def test_packaged_rules_cover_every_category() -> None:
    rules = load_rules()
    assert {r.category for r in rules.rules} == set(BadgeCategory)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("gold: 0.3", "gold: fast"), "line 7: rules[0].levels.gold"),
        (
            GOOD.replace("    laps: 3\n", "    laps: 3\n    lapz: 4\n"),
            "line 6: rules[0].lapz",
        ),
        (GOOD.replace("metric: lap_time_sd_s", "metric: speed"), "line 3: rules[0]"),
        (GOOD.replace("gold: 0.3", "gold: 0.9"), "stricter"),
        (GOOD.replace("version: 1", "version: 2"), "line 1: version"),
        (GOOD + "  - [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_rule_names_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(BadgeRuleError) as err:
        parse_rules(text, "rules.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("rules.yaml")


def test_badge_from_measured_metric_with_evidence() -> None:
    system = BadgingSystem(parse_rules(GOOD))
    measured = {"lap_time_sd_s": Measured(0.25, (4, 5, 6), (30.1, 30.4, 30.0))}
    [badge] = system.earned("Bea", measured, held=(), at=12.0, session_id=3)
    assert (badge.level, badge.category) == (BadgeLevel.GOLD, BadgeCategory.CONSISTENCY)
    assert badge.evidence.laps == [4, 5, 6]
    assert badge.evidence.values == [30.1, 30.4, 30.0]
    assert badge.evidence.threshold == 0.3
    # Held at that level already: nothing new; too few laps: nothing.
    assert system.earned("Bea", measured, held=[("consistency", "gold")], at=13) == []
    short = {"lap_time_sd_s": Measured(0.1, (4, 5), (30.0, 30.1))}
    assert system.earned("Bea", short, held=(), at=13) == []
