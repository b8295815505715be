"""ORM tables of the coaching data (migration 0007): profiles, goals, badges, training sessions, skill points."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pitbox_appliance.storage.models import Base


class DriverProfileRow(Base):
    """A driver's profile: settings, fatigue model and preferred setups (JSON columns)."""

    __tablename__ = "driver_profiles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    driver: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    fatigue_model: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    preferred_setups: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)


class TrainingGoalRow(Base):
    """A training goal of a driver at corners of a track, with its latest progress."""

    __tablename__ = "training_goals"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    driver: Mapped[str] = mapped_column(String(128), index=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id"), nullable=True
    )
    track_id: Mapped[str] = mapped_column(String(128))
    metric_type: Mapped[str] = mapped_column(String(32))
    measure: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    corner_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    baseline_value: Mapped[float] = mapped_column(Float)
    target_value: Mapped[float] = mapped_column(Float)
    current_value: Mapped[float] = mapped_column(Float)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    laps_measured: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class BadgeRow(Base):
    """A badge a driver earned, once per category and level, with its evidence."""

    __tablename__ = "badges"
    __table_args__ = (UniqueConstraint("driver", "category", "level"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    driver: Mapped[str] = mapped_column(String(128), index=True)
    badge_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    earned_at: Mapped[float] = mapped_column(Float)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id"), nullable=True
    )
    evidence: Mapped[dict[str, object]] = mapped_column(JSON)


class TrainingSessionRow(Base):
    """A practice session marked as training: its trainee, reference lap and plan."""

    __tablename__ = "training_sessions"
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    driver: Mapped[str] = mapped_column(String(128))
    marked_at: Mapped[float] = mapped_column(Float)
    reference: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    plan: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class SkillPointRow(Base):
    """One measured value of a driver's skill in one session (a point of a trend)."""

    __tablename__ = "skill_points"
    __table_args__ = (UniqueConstraint("driver", "session_id", "measure", "corner"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    driver: Mapped[str] = mapped_column(String(128), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    track_id: Mapped[str] = mapped_column(String(128), default="")
    measure: Mapped[str] = mapped_column(String(64))
    corner: Mapped[str] = mapped_column(String(32), default="")
    value: Mapped[float] = mapped_column(Float)
    laps: Mapped[int] = mapped_column(Integer, default=0)
    recorded_at: Mapped[float] = mapped_column(Float)
