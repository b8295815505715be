"""The appliance's YAML configuration: one pydantic model per component, unknown keys rejected."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The broker logins of the core and the dashboard. The broker makes a login the
#: client id (docs/security.md), so each program has its own; provisioning gives
#: them the appliance login's password (``pitbox_appliance.broker.PROGRAM_USERS``).
CORE_MQTT_USER = "pitbox-core"
DASHBOARD_MQTT_USER = "pitbox-dashboard"


class MqttConfig(_Section):
    """How appliance programs reach the broker (password from PITBOX_MQTT_PASSWORD)."""

    host: str = Field("127.0.0.1", description="broker host")
    port: int = Field(1883, description="broker port", ge=1, le=65535)
    username: str = Field(
        "appliance",
        description="the appliance's broker login, for tools; the core "
        "(pitbox-core), dashboard (pitbox-dashboard) and pitbox report "
        "(pitbox-report) log in as themselves with its password",
    )

    @property
    def core_username(self) -> str:
        """The core's login, which the broker also makes its client id."""
        return CORE_MQTT_USER

    @property
    def dashboard_username(self) -> str:
        """The dashboard's login, which the broker also makes its client id."""
        return DASHBOARD_MQTT_USER


class CoreConfig(_Section):
    """The core process: ingest, storage, live state, API."""

    db_url: str | None = Field(
        None, description="SQLAlchemy URL; default under the user data dir"
    )
    commit_interval_s: float = Field(
        1.0,
        description="longest time between commits: SD-card wear against PUBACK delay",
        gt=0,
    )
    commit_max_messages: int = Field(
        500, description="commit after this many messages", ge=1
    )
    live_interval_s: float = Field(
        0.02,
        description="shortest time between two live-state publishes of a car",
        gt=0,
    )
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(8081, description="API port", ge=0, le=65535)
    advertise: bool = Field(
        True,
        description="advertise the API on the LAN by mDNS (_pitbox._tcp) so driver "
        "PCs pair without a URL; only when api_host is not a loopback address",
    )
    advertise_name: str | None = Field(
        None,
        min_length=1,
        max_length=60,
        description="the name PCs see (default: 'PitBox <hostname>')",
    )
    video_dir: str | None = Field(
        None, description="where uploaded driver POV video goes; default: data dir"
    )
    video_max_bytes: int = Field(
        4 * 1024**3, description="largest video segment accepted", ge=1
    )


class DashboardConfig(_Section):
    """The NiceGUI dashboard process."""

    host: str = Field(
        "127.0.0.1", description="bind address (0.0.0.0 for tablets on the LAN)"
    )
    port: int = Field(8080, description="HTTP port", ge=0, le=65535)
    team_name: str = Field("PitBox", description="shown in the header")
    accent_color: str = Field("#e10600", description="team colour")


class ThemeConfig(_Section):
    """White-label look of the dashboard; unset fields keep the dashboard section's."""

    team_name: str | None = Field(
        None, description="team name in every page's header", max_length=40
    )
    accent_color: str | None = Field(
        None, description="team colour, #rrggbb", pattern=r"^#[0-9a-fA-F]{6}$"
    )
    header_color: str | None = Field(
        None, description="header background, #rrggbb", pattern=r"^#[0-9a-fA-F]{6}$"
    )
    logo: Path | None = Field(
        None,
        description="team logo file (.png, .jpg, .svg or .webp), served by the dashboard",
    )
    team_config: Path | None = Field(
        None,
        description="the team config (plan and white-label) the reports and "
        "statboards use too; when set it wins over the fields above, and only a "
        "plan with white-label shows it (docs/business.md)",
    )


class SecurityConfig(_Section):
    """Access control: TLS for driver PCs, paired devices and their keys (docs/security.md)."""

    dir: str | None = Field(
        None,
        description="CA, broker certificate and device registry (mode 0700); "
        "default: 'security' under the user data dir",
    )
    broker_run_dir: str | None = Field(
        None,
        description="the broker's folder (password file, pid file); "
        "default: 'broker' under the user data dir",
    )
    tls_port: int = Field(
        8883, description="broker TLS listener for driver PCs", ge=1, le=65535
    )
    public_host: str | None = Field(
        None,
        description="broker host given to paired driver PCs; default: the host "
        "they reached the API by",
    )
    pairing_ttl_s: float = Field(
        600, description="how long a pairing code stays valid", gt=0, le=86400
    )
    https: bool = Field(
        True,
        description="serve the dashboard and the API over HTTPS (certificate from "
        "the appliance CA) once the CA exists; plain HTTP stays on 127.0.0.1",
    )
    ca_http_port: int = Field(
        8079,
        description="plain-HTTP page where tablets fetch the CA certificate "
        "(/ca.crt) and its fingerprint; 0: not served",
        ge=0,
        le=65535,
    )
    legacy_team_key: bool = Field(
        True,
        description="accept the shared PITBOX_TEAM_KEY from sources without a "
        "paired key; set false once every driver PC is paired",
    )


class StrategyConfig(_Section):
    """Strategy rules (pitbox_appliance/strategy/settings.py); null switches a rule off."""

    max_stint_s: float | None = Field(
        7200.0, description="longest stint of one driver (s)", gt=0
    )
    max_total_s: float | None = Field(
        None, description="most drive time of one driver in the race (s)", gt=0
    )
    min_total_s: float | None = Field(
        None, description="least drive time each listed driver must get (s)", gt=0
    )
    fatigue_swap: float = Field(
        0.7, description="swap when live fatigue reaches this (0..1)", ge=0, le=1
    )
    tyre_change_s: float = Field(
        12.0, description="extra stationary time of a tyre change (s)", ge=0
    )
    fuel_s_per_l: float = Field(
        0.0066, description="lap time per litre on board (s/l)", ge=0
    )
    default_pit_loss_s: float = Field(
        30.0, description="pit loss until a stop has been timed (s)", gt=0
    )
    drivers: tuple[str, ...] = Field((), description="the team's drivers in order")


class DetectorsConfig(_Section):
    """Which live detectors the core runs (pitbox_appliance/detectors); all by default.

    One switch per detector, named as it registers (``@register_detector("incident")``);
    tests/pitbox_appliance/detectors/test_detectors.py keeps the two lists equal.
    """

    incident: bool = Field(
        True, description="incidents: off-track, spin, contact, lockup (live alerts)"
    )
    fatigue: bool = Field(
        True, description="driver fatigue from inputs and stint time (swap advice)"
    )
    drafting: bool = Field(
        True, description="drafting and passing chances against nearby cars"
    )
    damage: bool = Field(
        True, description="damage from repair time and the lap-time loss it costs"
    )
    mistake: bool = Field(
        True, description="mistakes per track section (stored for the heatmap)"
    )
    training: bool = Field(
        True,
        description="live training mode: goal progress and badges per lap "
        "(silent unless a session is marked as training)",
    )

    def enabled(self) -> tuple[str, ...]:
        """The names of the detectors switched on."""
        return tuple(name for name, on in self if on)


class ApplianceConfig(_Section):
    """The whole appliance configuration file."""

    version: int = Field(default=1, description="configuration schema version")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    core: CoreConfig = Field(default_factory=CoreConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    theme: ThemeConfig = Field(default_factory=ThemeConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)


class ConfigError(ValueError):
    """The configuration file is invalid; the message names the key (and line)."""


def load_config(path: Path | None) -> ApplianceConfig:
    """Read and validate the YAML file (defaults when ``path`` is None)."""
    if path is None:
        return ApplianceConfig()
    try:
        text = path.read_text()
        data: Any = yaml.safe_load(text) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return ApplianceConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            line = _line_of(text, str(err["loc"][-1]))
            where = f" (line {line})" if line else ""
            problems.append(f"{key}{where}: {err['msg']}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(f"{key}:"):
            return number
    return None


def team_key_from_env() -> bytes:
    """The 32-byte team key from PITBOX_TEAM_KEY (hex)."""
    try:
        key = bytes.fromhex(os.environ.get("PITBOX_TEAM_KEY", ""))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError("PITBOX_TEAM_KEY must hold the 64-hex-digit team key")
    return key


def mqtt_password_from_env() -> str:
    return os.environ.get("PITBOX_MQTT_PASSWORD", "")
