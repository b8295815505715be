"""The team config (plan and white-label), the features each plan includes, and YAML errors that name key and line."""

from __future__ import annotations

import base64
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

M = TypeVar("M", bound=BaseModel)

#: Logo file types a browser shows as an ``<img>``, and their media types.
LOGO_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}
#: A logo is a header image, not a photo: anything bigger is a configuration mistake.
MAX_LOGO_BYTES = 2 * 1024 * 1024
HEX_COLOUR = r"^#[0-9a-fA-F]{6}$"
#: The partition slug compaction writes as ``team=<slug>``.
TEAM_SLUG = r"^[a-z0-9-]{1,64}$"
#: What every page shows when white-label is off (no config, or a plan without it).
DEFAULT_TEAM_NAME = "PitBox"
DEFAULT_ACCENT = "#e10600"
DEFAULT_HEADER = "#06080a"


class ConfigFileError(ValueError):
    """A YAML config file is unusable; the message names the file, key and line."""


class Plan(StrEnum):
    """A team's plan."""

    FREE = "free"
    PRO = "pro"


class Feature(StrEnum):
    """What a plan gates."""

    PRIVATE_STATBOARD = "private_statboard"
    PREMIUM_API = "premium_api"
    WHITE_LABEL = "white_label"


#: The features each plan includes (the one table every gate reads).
PLAN_FEATURES: dict[Plan, frozenset[Feature]] = {
    Plan.FREE: frozenset(),
    Plan.PRO: frozenset(Feature),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WhiteLabelConfig(_Model):
    """Team branding: name, colours and logo on the pit wall, reports, boards (seed 5.6)."""

    team_name: str | None = Field(
        None, min_length=1, max_length=40, description="default: the team's name"
    )
    logo: Path | None = Field(
        None, description="logo file (.png, .jpg, .svg, .webp), relative to the file"
    )
    accent_color: str = Field(DEFAULT_ACCENT, pattern=HEX_COLOUR)
    header_color: str = Field(DEFAULT_HEADER, pattern=HEX_COLOUR)


class StatboardConfig(_Model):
    """Who may read the team's statboard."""

    visibility: Literal["public", "private"] = Field(
        "private", description="private boards are presigned links (pro plan)"
    )


class TeamConfig(_Model):
    """One team's config file: its plan, branding and where its livery config is."""

    version: Literal[1] = 1
    team: str = Field(pattern=TEAM_SLUG, description="the partition slug (team=…)")
    name: str = Field(min_length=1, max_length=80, description="the team's name")
    plan: Plan = Plan.FREE
    white_label: WhiteLabelConfig = Field(default_factory=WhiteLabelConfig)
    statboard: StatboardConfig = Field(default_factory=StatboardConfig)
    livery: Path | None = Field(
        None, description="livery config (sponsor placements), relative to the file"
    )
    broadcast_source: str | None = Field(
        None,
        description="the shim source of the spectating/broadcast PC whose CamCarIdx "
        "counts as the broadcast camera (default: picked from the data)",
    )
    #: The directory relative paths are resolved against (set by the loader).
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def allows(self, feature: Feature) -> bool:
        """True when this team's plan includes ``feature``."""
        return feature in PLAN_FEATURES[self.plan]

    def path(self, relative: Path) -> Path:
        """``relative`` resolved against the config file's directory."""
        return relative if relative.is_absolute() else self._base_dir / relative

    def branding(self) -> Branding:
        """The branding to show: the white-label when the plan includes it, else PitBox's."""
        if not self.allows(Feature.WHITE_LABEL):
            return Branding()
        wl = self.white_label
        return Branding(
            team_name=wl.team_name or self.name,
            accent_color=wl.accent_color,
            header_color=wl.header_color,
            logo=self.path(wl.logo) if wl.logo is not None else None,
            white_label=True,
        )


class Branding(_Model):
    """What a page shows in its header: resolved from a TeamConfig and its plan."""

    team_name: str = DEFAULT_TEAM_NAME
    accent_color: str = DEFAULT_ACCENT
    header_color: str = DEFAULT_HEADER
    logo: Path | None = None
    white_label: bool = False

    def logo_data_uri(self) -> str | None:
        """The logo as a ``data:`` URI (self-contained HTML and PDF); None without one."""
        if self.logo is None:
            return None
        path = check_logo(self.logo)
        kind = LOGO_TYPES[path.suffix.lower()]
        return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def check_logo(path: Path, key: str = "white_label.logo") -> Path:
    """The logo file if it can be shown, else ConfigFileError naming ``key`` and why."""
    if path.suffix.lower() not in LOGO_TYPES:
        kinds = ", ".join(sorted(LOGO_TYPES))
        raise ConfigFileError(f"{key} {path}: not an image file ({kinds})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigFileError(f"{key} {path}: {exc.strerror}") from None
    if not path.is_file():
        raise ConfigFileError(f"{key} {path}: not a file")
    if size > MAX_LOGO_BYTES:
        raise ConfigFileError(f"{key} {path}: {size} bytes, more than 2 MB")
    return path


def load_team_config(path: Path) -> TeamConfig:
    """Read and check a team config file; ConfigFileError naming key and line if bad.

    A logo that is named but cannot be shown is an error here (the file is checked
    now, not when a page is first drawn).
    """
    config = load_yaml_model(path, TeamConfig)
    config._base_dir = path.resolve().parent
    if config.white_label.logo is not None:
        try:
            check_logo(config.path(config.white_label.logo))
        except ConfigFileError as exc:
            line = line_of_text(path, ("white_label", "logo"))
            where = f" (line {line})" if line else ""
            raise ConfigFileError(f"{path}: {exc}{where}") from None
    return config


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Parse ``path`` as YAML and validate it as ``model``.

    Errors name the file, the dotted key and its line: ``livery.yaml: sponsors.1.placements.0
    (line 12): Input should be 'hood', …``; a YAML syntax error names its line and column.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigFileError(
            f"{path}{where}: not valid YAML: {exc.problem or exc.context}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} (line 1): expected a mapping of keys")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = line_of_node(node, loc)
            where = f" (line {line})" if line else ""
            problems.append(f"{key}{where}: {err['msg']}")
        raise ConfigFileError(f"{path}: " + "; ".join(problems)) from None


def line_of_node(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest node along ``loc`` (a missing key: its parent's)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def line_of_text(path: Path, loc: tuple[Any, ...]) -> int | None:
    """``line_of_node`` for a file (None when it cannot be read again)."""
    try:
        return line_of_node(
            yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader), loc
        )
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
