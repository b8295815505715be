"""BadgingSystem: badge rules from a YAML data file (errors name key and line) and badges earned from measured metrics with evidence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pitbox_appliance.coaching.profile import (
    Badge,
    BadgeCategory,
    BadgeEvidence,
    BadgeLevel,
)

RULES_FILE = "badge_rules.yaml"
LEVELS = tuple(BadgeLevel)
METRICS = frozenset(
    {
        "lap_time_sd_s",
        "braking_point_sd_m",
        "throttle_pickup_sd_m",
        "fuel_per_lap_sd_l",
        "lap_time_slope_s_per_lap",
    }
)


class BadgeRuleError(ValueError):
    """A malformed badge rule file; the message names the key and its line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Levels(_Strict):
    """The threshold of each level."""

    bronze: float
    silver: float
    gold: float
    platinum: float


class BadgeRule(_Strict):
    """One category's rule: the metric, over how many laps, which way is better."""

    category: BadgeCategory
    metric: str = Field(description="one of METRICS")
    laps: int = Field(ge=2, le=200, description="laps the metric is measured over")
    better: Literal["lower", "higher"] = "lower"
    levels: Levels

    @model_validator(mode="after")
    def _check(self) -> BadgeRule:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {sorted(METRICS)}")
        values = [getattr(self.levels, level.value) for level in LEVELS]
        ordered = sorted(values, reverse=self.better == "lower")
        if values != ordered:
            raise ValueError(
                "levels must get stricter from bronze to platinum "
                f"({'falling' if self.better == 'lower' else 'rising'} thresholds)"
            )
        return self

    def reached(self, value: float) -> BadgeLevel | None:
        """The highest level ``value`` reaches, if any."""
        best = None
        for level in LEVELS:
            threshold = getattr(self.levels, level.value)
            ok = value <= threshold if self.better == "lower" else value >= threshold
            if ok:
                best = level
        return best

    def threshold(self, level: BadgeLevel) -> float:
        return float(getattr(self.levels, level.value))


class BadgeRules(_Strict):
    """The rule file: a version and one rule per category."""

    version: Literal[1]
    rules: list[BadgeRule]

    @model_validator(mode="after")
    def _unique(self) -> BadgeRules:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.category in seen:
                raise ValueError(f"category {rule.category.value!r} has two rules")
            seen.add(rule.category)
        return self


def load_rules(path: Path | None = None) -> BadgeRules:
    """The badge rules from ``path`` (default: the packaged ``badge_rules.yaml``)."""
    if path is None:
        text = resources.files(__package__).joinpath(RULES_FILE).read_text("utf-8")
        name = RULES_FILE
    else:
        text, name = path.read_text(encoding="utf-8"), str(path)
    return parse_rules(text, name)


def parse_rules(text: str, name: str = RULES_FILE) -> BadgeRules:
    """Validate rule text; :class:`BadgeRuleError` naming the key and line otherwise."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise BadgeRuleError(f"{name}{at}: not valid YAML: {exc}") from None
    try:
        return BadgeRules.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = _dotted(loc) or "(top level)"
        line = _line_of(root, loc)
        where = f" line {line}" if line else ""
        raise BadgeRuleError(f"{name}{where}: {key}: {err['msg']}") from None


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """The line of the deepest node along ``loc`` (1-based)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                ((k, v) for k, v in node.value if getattr(k, "value", None) == part),
                None,
            )
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


@dataclass(frozen=True, slots=True)
class Measured:
    """A metric measured over some laps: its value, and each lap with its own value."""

    value: float
    laps: tuple[int, ...]
    values: tuple[float, ...]


class BadgingSystem:
    """Which badges measured metrics earn, given those a driver already holds."""

    def __init__(self, rules: BadgeRules | None = None) -> None:
        self.rules = rules if rules is not None else load_rules()

    def rule(self, category: BadgeCategory) -> BadgeRule | None:
        return next((r for r in self.rules.rules if r.category == category), None)

    def earned(
        self,
        driver: str,
        measured: Mapping[str, Measured],
        held: Iterable[tuple[str, str]],
        *,
        at: float,
        session_id: int | None = None,
    ) -> list[Badge]:
        """New badges: per category the highest level reached above every level held.

        ``measured`` maps metric names to what was measured over at least the rule's
        laps; ``held`` are ``(category, level)`` pairs the driver already has.
        """
        held_rank: dict[str, int] = {}
        for category, level in held:
            rank = LEVELS.index(BadgeLevel(level))
            held_rank[category] = max(held_rank.get(category, -1), rank)
        out: list[Badge] = []
        for rule in self.rules.rules:
            got = measured.get(rule.metric)
            if got is None or len(got.laps) < rule.laps:
                continue
            reached = rule.reached(got.value)
            if reached is None or LEVELS.index(reached) <= held_rank.get(
                rule.category.value, -1
            ):
                continue
            level = reached
            threshold = rule.threshold(level)
            name = f"{level.value.title()} {rule.category.value}"
            out.append(
                Badge(
                    id=f"{rule.category.value}-{level.value}",
                    name=name,
                    description=(
                        f"{rule.metric} {got.value:.3f} over {len(got.laps)} laps "
                        f"({'≤' if rule.better == 'lower' else '≥'} {threshold:g})"
                    ),
                    level=level,
                    category=rule.category,
                    earned_at=at,
                    evidence=BadgeEvidence(
                        metric=rule.metric,
                        value=round(got.value, 4),
                        threshold=threshold,
                        session_id=session_id,
                        laps=list(got.laps),
                        values=[round(v, 4) for v in got.values],
                    ),
                )
            )
        return out
