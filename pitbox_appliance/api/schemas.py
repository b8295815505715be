"""Request and response models of API v1: every body in and out is one of these."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from driver_pc.protocol.messages import ShimState

SOURCE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- errors ---------------------------------------------------------------------------
class ErrorOut(_Model):
    """Every 4xx answer: what went wrong, naming the field, and the fields themselves."""

    error: str = Field(description="what went wrong; names the field at fault")
    fields: list[str] = Field(
        default_factory=list, description="dotted names of the fields at fault"
    )


# ---- driver PCs -----------------------------------------------------------------------
class DriverRegistration(_Model):
    """A driver PC announcing who sits at it, for the car's current session."""

    source: str = Field(
        pattern=SOURCE_PATTERN, description="shim source id, `<car>-<pc>`"
    )
    car: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="team car, e.g. car42; left out: the car the source id names",
    )
    driver_name: str = Field(
        min_length=1, max_length=128, description="driver at this PC"
    )
    sim: str = Field(min_length=1, max_length=32, description="simulator, e.g. iracing")
    user_id: int | None = Field(
        None, ge=0, description="the sim's id of the driver (iRacing's UserID)"
    )
    session_time: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="session time of the registration; given: stored as a "
        "`driver_registered` event of the car's current session",
    )
    version: str | None = Field(None, max_length=32, description="shim version")


class RegistrationOut(DriverRegistration):
    """What the appliance registered, and when."""

    car: str = Field(description="team car the PC belongs to")
    registered_at: float = Field(description="UNIX time of the registration")
    session_id: int | None = Field(
        None, description="session the `driver_registered` event was stored in"
    )


class RegistrationList(_Model):
    """The latest registration of each driver PC, by source."""

    registrations: list[RegistrationOut]


class StatusUpdate(_Model):
    """A driver PC's status; fields left out keep their previous value."""

    source: str = Field(pattern=SOURCE_PATTERN, description="shim source id")
    state: ShimState = Field(description="what the shim is doing")
    spool_depth: int = Field(ge=0, description="messages waiting in the shim's spool")
    adapter: str | None = Field(None, max_length=64, description="sim adapter in use")
    ticks: int | None = Field(None, ge=0, description="ticks read since start")
    session_key: str | None = Field(
        None, max_length=128, description="session being sent"
    )
    version: str | None = Field(None, max_length=32, description="shim version")


class StatusOut(_Model):
    """The merged status the pit wall now shows for a source."""

    source: str = Field(description="shim source id")
    status: dict[str, Any] = Field(description="merged status of that source")


# ---- commands to shims ------------------------------------------------------------------
class CommandKind(StrEnum):
    """What the pit wall can ask a driver PC to do."""

    CAMERA = "camera"
    MESSAGE = "message"


class CommandIn(_Model):
    """A command for the shim of the car's active driver PC.

    ``camera``: args ``car`` (car number to show), ``group`` and ``camera`` (iRacing's
    camera group and camera numbers). ``message``: args ``text`` (≤ 200 characters).
    """

    kind: CommandKind = Field(description="camera or message")
    args: dict[str, str | int] = Field(default_factory=dict, description="per kind")
    by: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$",
        description="who sent it: the dashboard's logged-in user (audited with the "
        "command and its result)",
    )


class CommandOut(_Model):
    """A command and, once the shim answered, its result."""

    command_id: str = Field(description="id to poll")
    car: str = Field(description="car whose shim got it")
    source: str = Field(description="the shim it went to")
    kind: str = Field(description="camera or message")
    args: dict[str, Any] = Field(description="as sent")
    sent_at: float = Field(description="unix time sent")
    by: str | None = Field(None, description="who sent it (the dashboard user)")
    result: dict[str, Any] | None = Field(
        description="null while pending, else {ok, detail} from the shim"
    )


# ---- health -----------------------------------------------------------------------------
class HealthStatus(StrEnum):
    """Whether ingest keeps up."""

    OK = "ok"
    STALLED = "stalled"


class CarLag(_Model):
    """How far behind a car the appliance is."""

    lag_s: float | None = Field(
        description="seconds since the car's newest telemetry arrived (null: none yet)"
    )


class HealthOut(BaseModel):
    """The core's counters and ingest liveness (``CoreService.health()``).

    Served with HTTP 200 while ingest keeps up, 503 (the same body) when it stalls.
    """

    # The core owns this dict and may add counters; the API does not filter them.
    model_config = ConfigDict(extra="allow")

    status: HealthStatus = Field(description="`ok`, or `stalled` (HTTP 503)")
    reason: str | None = Field(
        None,
        description="why ingest is stalled: not running, storage failing, or "
        "messages waiting with none handled for over 2 s",
    )
    broker_connected: bool = Field(description="the core is connected to Mosquitto")
    uptime_s: float = Field(description="seconds since the core started")
    queue: int = Field(description="messages received, not yet ingested")
    ingest_alive: bool = Field(description="the ingest thread is running")
    last_message_age_s: float | None = Field(
        None, description="seconds since ingest last handled a message (null: none)"
    )
    ingest: dict[str, Any] = Field(
        description="accepted, duplicates, frames, laps, rejected and dead_letters "
        "(reason → count)"
    )
    cars: dict[str, CarLag] = Field(
        default_factory=dict, description="each car the core tracks, with its lag"
    )
    live_published: int = Field(description="live-state messages published")
    shims: dict[str, dict[str, Any]] = Field(description="last status of each source")


# ---- dead letters -----------------------------------------------------------------------
class DeadLetterOut(_Model):
    """A message the core could not ingest, kept as received (not its payload)."""

    id: int
    received_at: float = Field(description="UNIX time it was put aside")
    topic: str = Field(description="MQTT topic it came on (or the API stream)")
    source: str | None = Field(description="the sender, when its envelope was read")
    seq: int | None = Field(description="the sender's sequence number")
    kind: str = Field(description="message kind, e.g. `telemetry`, `driver_change`")
    reason: str = Field(
        description="short reason: `invalid:<Message.field>`, a codec reason, or "
        "the exception type (`IndexError`, `IntegrityError`...)"
    )
    attempts: int = Field(description="times it was tried (1 + retries)")
    last_attempt_at: float = Field(description="UNIX time of the last attempt")
    bytes: int = Field(description="size of the message as received")


class DeadLetterList(_Model):
    """The dead letters, newest first."""

    dead_letters: list[DeadLetterOut]


class DeadLetterDetail(DeadLetterOut):
    """A dead letter in full."""

    detail: str = Field(description="the error message")
    traceback: str = Field(description="where it failed (empty for a bad field)")
    payload_base64: str = Field(description="the message as received, base64")


class RetryOutcome(StrEnum):
    """What a retry did."""

    STORED = "stored"
    DEAD_LETTER = "dead_letter"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


class RetryOut(_Model):
    """The outcome of retrying a dead letter through the same ingest path."""

    id: int = Field(description="the dead letter retried")
    outcome: RetryOutcome = Field(
        description="`stored` (the letter is deleted), else it stays with the new "
        "reason"
    )
    reason: str | None = Field(None, description="why it failed again")


# ---- sessions ---------------------------------------------------------------------------
class SessionOut(_Model):
    """One stored session of one team car."""

    id: int
    session_key: str = Field(description="the shim's key of the sim session")
    car: str
    track: str
    track_length_km: float
    subsession_id: int
    created_at: float = Field(description="UNIX time the appliance first saw it")
    first_time: float | None = Field(description="first sim session time stored (s)")
    last_time: float | None = Field(description="last sim session time stored (s)")


class SessionList(_Model):
    """Every stored session, newest first."""

    sessions: list[SessionOut]


class SessionDetail(SessionOut):
    """A session with its summary figures and the sim's session-info YAML."""

    lap_count: int = Field(description="laps stored, timed or not")
    best_lap_time: float | None = Field(description="fastest timed lap (s)")
    drivers: list[str] = Field(description="drivers with laps, in order of first lap")
    session_info: str = Field(description="latest session-info YAML from the sim")


class LapOut(_Model):
    """A completed lap; ``lap_time`` is null where it could not be timed."""

    id: int
    lap_number: int
    stint_id: int | None
    driver_id: int | None
    driver_name: str | None
    start_time: float | None = Field(description="sim session time (s)")
    end_time: float = Field(description="sim session time (s)")
    lap_time: float | None = Field(description="seconds")
    fuel_used: float | None = Field(description="litres")
    pit_lap: bool
    max_speed: float | None = Field(description="m/s")


class LapList(_Model):
    """The laps of one session in the order driven."""

    session_id: int
    laps: list[LapOut]


class StintOut(_Model):
    """A run of laps by one driver."""

    id: int
    number: int
    driver_id: int | None
    driver_name: str | None
    start_time: float = Field(description="sim session time (s)")
    end_time: float | None = Field(description="sim session time (s)")
    lap_count: int


class StintList(_Model):
    """The stints of one session in order."""

    session_id: int
    stints: list[StintOut]


# ---- telemetry stream -------------------------------------------------------------------
class StreamReply(_Model):
    """The answer to each binary frame of the telemetry stream."""

    seq_ok: bool = Field(description="the message was verified and stored")
    reason: str | None = Field(
        None,
        description=(
            "why not: `duplicate`, a codec reason (`bad_auth`...), `storage` (send "
            "it again later), `dead_letter:<reason>` (authentic but failed: kept "
            "as a dead letter, see `/api/v1/deadletters`; do not send it again) or "
            "`foreign_source` (a driver PC's token streams its own source only)"
        ),
    )


class StreamError(_Model):
    """The answer to a frame that is not a wire message (text, or over 2 MiB)."""

    error: str = Field(description="what was wrong with the frame")


# ---- video ----------------------------------------------------------------------------
class VideoOut(_Model):
    """A stored driver POV video segment."""

    session_id: int = Field(description="session the segment belongs to")
    source: str = Field(description="driver PC that recorded it")
    path: str = Field(description="where it is stored, relative to the video directory")
    bytes: int = Field(description="size stored")
    sha256: str = Field(description="SHA-256 of the stored bytes (hex)")
    start_time: float = Field(description="session time the segment starts")
    end_time: float = Field(description="session time the segment ends")


# ---- devices (the engineer's /devices page) -------------------------------------------
class DeviceOut(_Model):
    """A paired driver PC and what the core last heard from it (never its keys)."""

    device_id: str = Field(description="the device's id")
    source: str = Field(description="its source id, `<car>-<pc>`")
    car: str = Field(description="the car it belongs to")
    paired_at: float = Field(description="UNIX time it paired")
    revoked_at: float | None = Field(None, description="UNIX time it was revoked")
    role: str | None = Field(
        None, description="driving, standby or gone (None: not heard this session)"
    )
    state: str | None = Field(None, description="the shim's last reported state")
    spool_depth: int | None = Field(
        None, description="messages waiting in its spool, as it last reported"
    )
    driver_name: str | None = Field(None, description="who last registered at it")


class PendingOut(_Model):
    """A pairing code not yet redeemed (the code itself is shown once, when made)."""

    source: str = Field(description="the source id the code pairs")
    expires_at: float = Field(description="UNIX time the code stops working")


class DeviceList(_Model):
    """Every device ever paired, and the pairings waiting for their PC."""

    devices: list[DeviceOut]
    pending: list[PendingOut]


class PairingIn(_Model):
    """Start pairing one driver PC."""

    source: str = Field(
        pattern=SOURCE_PATTERN, description="its source id, e.g. car42-pc2"
    )


class PairingOut(_Model):
    """A new one-time code: show it (and its QR code) to the driver; it works once."""

    source: str = Field(description="the source id it pairs")
    code: str = Field(description="the one-time code, `XXXX-XXXX`")
    expires_at: float = Field(description="UNIX time it stops working")
    command: str = Field(description="what to run on the driver PC")
    pair_uri: str = Field(
        description="`pitbox://pair?api=<url>&code=<code>` (the QR code's content)"
    )
