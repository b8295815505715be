"""ORM tables of the appliance database: sessions, drivers, stints, laps, telemetry chunks, events."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every PitBox table."""


class Source(Base):
    """A sender (shim or importer) and the highest sequence number stored from it."""

    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=-1)
    car: Mapped[str] = mapped_column(String(64), default="")


class RaceSession(Base):
    """One sim session of one team car (a race, practice, an imported file...)."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_key: Mapped[str] = mapped_column(String(128), unique=True)
    car: Mapped[str] = mapped_column(String(64), default="")
    track: Mapped[str] = mapped_column(String(128), default="")
    track_length_km: Mapped[float] = mapped_column(Float, default=0.0)
    subsession_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    first_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    session_info: Mapped[str] = mapped_column(Text, default="")


class Driver(Base):
    """A driver as the sim identifies them."""

    __tablename__ = "drivers"
    __table_args__ = (UniqueConstraint("user_id", "user_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    user_name: Mapped[str] = mapped_column(String(128))
    team_name: Mapped[str] = mapped_column(String(128), default="")


class Stint(Base):
    """A run of laps by one driver between pit-road visits or driver changes."""

    __tablename__ = "stints"
    __table_args__ = (UniqueConstraint("session_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    driver_id: Mapped[int | None] = mapped_column(
        ForeignKey("drivers.id"), nullable=True
    )
    start_time: Mapped[float] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)


class Lap(Base):
    """A completed lap; ``lap_time`` is NULL where the lap could not be timed.

    ``invalid``: reset or towed, or iRacing gave it no time (never timed then);
    ``refuelled``: fuel rose during it, so ``fuel_used`` is NULL.
    """

    __tablename__ = "laps"
    __table_args__ = (UniqueConstraint("session_id", "end_time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    stint_id: Mapped[int | None] = mapped_column(ForeignKey("stints.id"), nullable=True)
    driver_id: Mapped[int | None] = mapped_column(
        ForeignKey("drivers.id"), nullable=True
    )
    lap_number: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float] = mapped_column(Float)
    lap_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    fuel_used: Mapped[float | None] = mapped_column(Float, nullable=True)
    pit_lap: Mapped[bool] = mapped_column(Boolean, default=False)
    max_speed: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_smoothness: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_aggression: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_precision: Mapped[float | None] = mapped_column(Float, nullable=True)
    invalid: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    refuelled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ChannelSet(Base):
    """A channel dictionary that telemetry chunks of a session refer to."""

    __tablename__ = "channel_sets"
    __table_args__ = (UniqueConstraint("session_id", "dict_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    dict_id: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, object]] = mapped_column(JSON)


class TelemetryChunk(Base):
    """A batch of ticks as a compressed columnar body (the wire codec's format)."""

    __tablename__ = "telemetry_chunks"
    __table_args__ = (
        UniqueConstraint("source", "seq"),
        Index("ix_telemetry_chunks_session_time", "session_id", "start_time"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    dict_id: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[float] = mapped_column(Float)
    end_time: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """A typed event about a session (driver change, lap completed, pit entry...)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    session_time: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)


class DeadLetter(Base):
    """A message the core could not ingest, kept as received with why, for a retry.

    Written by the core's single writer in the transaction that acknowledges the
    message; ``pitbox deadletters`` lists, shows and retries them (docs/durability.md).
    """

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[float] = mapped_column(Float, index=True)
    topic: Mapped[str] = mapped_column(String(256), default="")
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="")
    traceback: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    last_attempt_at: Mapped[float] = mapped_column(Float)
