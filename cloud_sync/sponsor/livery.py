"""The livery config: which sponsor sits on which part of the car, and how visible each part is per camera group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from driver_pc.protocol.team_config import (
    ConfigFileError,
    line_of_text,
    load_yaml_model,
)

Weight = Annotated[float, Field(ge=0.0, le=1.0)]
DEFAULT_GROUP = "default"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sponsor(_Model):
    """One sponsor and the parts of the car its logo is on."""

    name: str = Field(min_length=1, max_length=80)
    placements: tuple[str, ...] = Field(min_length=1)


class LiveryConfig(_Model):
    """Parts of the car with their visibility (0…1) per camera group, and the sponsors on them.

    A part's visibility table is keyed by camera group name (``CameraInfo.Groups`` of
    the session info, e.g. ``TV1``, ``Chase``) or number; ``default`` covers groups not
    listed (0 when absent).
    """

    version: Literal[1] = 1
    parts: dict[str, dict[str | int, Weight]] = Field(min_length=1)
    sponsors: tuple[Sponsor, ...] = Field(min_length=1)

    def visibility(self, part: str, group_number: int, group_name: str) -> float:
        """How visible ``part`` is in this camera group (0…1)."""
        table = self.parts[part]
        for key in (group_name, group_number, str(group_number)):
            if key in table:
                return float(table[key])
        return float(table.get(DEFAULT_GROUP, 0.0))


def load_livery(path: Path) -> LiveryConfig:
    """Read a livery config; ConfigFileError naming the key and line when it is malformed."""
    config = load_yaml_model(path, LiveryConfig)
    problems = []
    for i, sponsor in enumerate(config.sponsors):
        for j, part in enumerate(sponsor.placements):
            if part not in config.parts:
                line = line_of_text(path, ("sponsors", i, "placements", j))
                where = f" (line {line})" if line else ""
                known = ", ".join(sorted(config.parts))
                problems.append(
                    f"sponsors.{i}.placements.{j}{where}: {part!r} is not a part "
                    f"listed under parts ({known})"
                )
    names = [s.name for s in config.sponsors]
    for i, name in enumerate(names):
        if name in names[:i]:
            line = line_of_text(path, ("sponsors", i, "name"))
            where = f" (line {line})" if line else ""
            problems.append(f"sponsors.{i}.name{where}: {name!r} is listed twice")
    if problems:
        raise ConfigFileError(f"{path}: " + "; ".join(problems))
    return config
