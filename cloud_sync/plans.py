"""Team plans on the cloud side: the team configs of a directory, and the gate every plan-bound feature passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from driver_pc.protocol.team_config import (
    ConfigFileError,
    Feature,
    Plan,
    TeamConfig,
    load_team_config,
)

__all__ = [
    "ConfigFileError",
    "Feature",
    "Plan",
    "PlanError",
    "TeamDirectory",
    "require",
]


class PlanError(PermissionError):
    """A feature the team's plan does not include was asked for."""

    def __init__(self, team: str, plan: Plan, feature: Feature) -> None:
        super().__init__(
            f"team {team!r} is on the {plan.value} plan, which does not include "
            f"{feature.value.replace('_', ' ')} (pro does)"
        )
        self.team = team
        self.plan = plan
        self.feature = feature


def require(config: TeamConfig, feature: Feature) -> None:
    """Raise PlanError unless ``config``'s plan includes ``feature``."""
    if not config.allows(feature):
        raise PlanError(config.team, config.plan, feature)


@dataclass
class TeamDirectory:
    """The team configs (``*.yaml``) of a directory, by team slug.

    A team with no file is on the free plan with default settings, so nothing a
    plan gates is ever given to a team nobody configured.
    """

    teams: dict[str, TeamConfig] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None) -> TeamDirectory:
        """Every ``*.yaml``/``*.yml`` in ``directory``; ConfigFileError on a bad or duplicate one."""
        found: dict[str, TeamConfig] = {}
        if directory is None:
            return cls(found)
        if not directory.is_dir():
            raise ConfigFileError(f"{directory}: no such directory of team configs")
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        seen: dict[str, Path] = {}
        for path in files:
            config = load_team_config(path)
            if config.team in seen:
                raise ConfigFileError(
                    f"{path}: team {config.team!r} is already configured in {seen[config.team]}"
                )
            seen[config.team] = path
            found[config.team] = config
        return cls(found)

    def get(self, team: str) -> TeamConfig:
        """The team's config; a free default for a team with none."""
        config = self.teams.get(team)
        return config if config is not None else TeamConfig(team=team, name=team)

    def allows(self, team: str, feature: Feature) -> bool:
        return self.get(team).allows(feature)

    def require(self, team: str, feature: Feature) -> TeamConfig:
        """The team's config, or PlanError when its plan lacks ``feature``."""
        config = self.get(team)
        require(config, feature)
        return config
