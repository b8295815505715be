"""ProfileStore: the single writer of the coaching tables; assembles ExtendedDriverProfile from them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pitbox_appliance.coaching.live import BadgeAward, GoalUpdate, Update
from pitbox_appliance.coaching.profile import (
    Badge,
    BadgeCategory,
    BadgeEvidence,
    BadgeLevel,
    DriverSettings,
    ExtendedDriverProfile,
    FatigueModelState,
    MetricType,
    ReferenceLap,
    TrainingGoal,
)
from pitbox_appliance.coaching.tables import (
    BadgeRow,
    DriverProfileRow,
    SkillPointRow,
    TrainingGoalRow,
    TrainingSessionRow,
)
from pitbox_appliance.storage.models import Driver, Lap


class ProfileStore:
    """Reads and writes profiles, goals, badges, training marks and skill points.

    Writes are serialised by a lock (one writer per table, STYLE.md); each is one
    short transaction. Never call it on the core's ingest thread (see coaching/live.py).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    # ---- reading ----------------------------------------------------------------------
    def drivers(self) -> list[str]:
        """Every driver with a profile or a stored lap, by name."""
        with Session(self.engine) as db:
            named = set(db.scalars(select(DriverProfileRow.driver)))
            named |= {
                n
                for n in db.scalars(
                    select(Driver.user_name).join(Lap, Lap.driver_id == Driver.id)
                )
                if n
            }
        return sorted(named)

    def profile(self, driver: str) -> ExtendedDriverProfile:
        """The driver's whole profile (defaults where nothing is stored yet)."""
        with Session(self.engine) as db:
            row = db.scalar(
                select(DriverProfileRow).where(DriverProfileRow.driver == driver)
            )
            goals = db.scalars(
                select(TrainingGoalRow)
                .where(TrainingGoalRow.driver == driver)
                .order_by(TrainingGoalRow.created_at, TrainingGoalRow.id)
            ).all()
            badges = db.scalars(
                select(BadgeRow)
                .where(BadgeRow.driver == driver)
                .order_by(BadgeRow.earned_at, BadgeRow.id)
            ).all()
            points = db.scalars(
                select(SkillPointRow)
                .where(SkillPointRow.driver == driver)
                .order_by(SkillPointRow.recorded_at, SkillPointRow.id)
            ).all()
            user_id = db.scalar(
                select(Driver.user_id).where(Driver.user_name == driver).limit(1)
            )
            return ExtendedDriverProfile(
                driver=driver,
                user_id=row.user_id if row and row.user_id is not None else user_id,
                training_goals=[_goal(g) for g in goals],
                badges=[_badge(b) for b in badges],
                fatigue_model=FatigueModelState.model_validate(
                    row.fatigue_model if row else {}
                ),
                preferred_setups={
                    str(k): str(v)
                    for k, v in (row.preferred_setups if row else {}).items()
                },
                settings=DriverSettings.model_validate(row.settings if row else {}),
                skill_history=[
                    {
                        "sessionId": p.session_id,
                        "trackId": p.track_id,
                        "measure": p.measure,
                        "corner": p.corner or None,
                        "value": p.value,
                        "laps": p.laps,
                        "recordedAt": p.recorded_at,
                    }
                    for p in points
                ],
                updated_at=row.updated_at if row else 0.0,
            )

    def goals(self, driver: str, *, active_only: bool = True) -> list[TrainingGoal]:
        with Session(self.engine) as db:
            query = select(TrainingGoalRow).where(TrainingGoalRow.driver == driver)
            if active_only:
                query = query.where(TrainingGoalRow.active.is_(True))
            return [_goal(g) for g in db.scalars(query.order_by(TrainingGoalRow.id))]

    def held_badges(self, driver: str) -> set[tuple[str, str]]:
        with Session(self.engine) as db:
            return {
                (r.category, r.level)
                for r in db.scalars(select(BadgeRow).where(BadgeRow.driver == driver))
            }

    def training_session(self, session_id: int) -> dict[str, Any] | None:
        with Session(self.engine) as db:
            row = db.get(TrainingSessionRow, session_id)
            if row is None:
                return None
            return {
                "session_id": row.session_id,
                "driver": row.driver,
                "marked_at": row.marked_at,
                "reference": row.reference,
                "plan": row.plan,
                "active": row.active,
            }

    def training_sessions(self) -> list[dict[str, Any]]:
        with Session(self.engine) as db:
            ids = list(db.scalars(select(TrainingSessionRow.session_id)))
        return [s for i in ids if (s := self.training_session(i)) is not None]

    def drivers_in_session(self, session_id: int) -> list[str]:
        with Session(self.engine) as db:
            names = db.scalars(
                select(Driver.user_name)
                .join(Lap, Lap.driver_id == Driver.id)
                .where(Lap.session_id == session_id)
                .distinct()
            )
            return sorted(n for n in names if n)

    # ---- writing ----------------------------------------------------------------------
    def save_settings(self, driver: str, settings: DriverSettings) -> None:
        self._upsert(driver, settings=settings.model_dump(mode="json"))

    def save_fatigue_model(self, driver: str, model: FatigueModelState) -> None:
        self._upsert(driver, fatigue_model=model.model_dump(mode="json"))

    def save_preferred_setup(self, driver: str, track_id: str, setup_id: str) -> None:
        with self._lock, Session(self.engine) as db, db.begin():
            row = self._row(db, driver)
            row.preferred_setups = {**row.preferred_setups, track_id: setup_id}
            row.updated_at = time.time()

    def replace_goals(
        self, driver: str, session_id: int | None, goals: Iterable[TrainingGoal]
    ) -> None:
        """Retire the driver's active goals on the same track; store ``goals``."""
        goals = list(goals)
        tracks = {g.track_id for g in goals}
        with self._lock, Session(self.engine) as db, db.begin():
            for old in db.scalars(
                select(TrainingGoalRow).where(
                    TrainingGoalRow.driver == driver,
                    TrainingGoalRow.active.is_(True),
                    TrainingGoalRow.track_id.in_(tracks),
                )
            ):
                old.active = False
            for goal in goals:
                db.merge(
                    TrainingGoalRow(
                        id=goal.id,
                        driver=driver,
                        session_id=session_id,
                        track_id=goal.track_id,
                        metric_type=goal.metric_type.value,
                        measure=goal.measure,
                        description=goal.description,
                        corner_ids=list(goal.corner_ids),
                        baseline_value=goal.baseline_value,
                        target_value=goal.target_value,
                        current_value=goal.current_value,
                        progress=goal.progress,
                        created_at=goal.created_at,
                        completed_at=goal.completed_at,
                        reference=goal.reference.as_json() if goal.reference else None,
                        laps_measured=goal.laps_measured,
                        active=True,
                    )
                )

    def mark_training(
        self,
        session_id: int,
        driver: str,
        reference: ReferenceLap | None,
        plan: dict[str, Any] | None,
        *,
        active: bool = True,
    ) -> None:
        with self._lock, Session(self.engine) as db, db.begin():
            db.merge(
                TrainingSessionRow(
                    session_id=session_id,
                    driver=driver,
                    marked_at=time.time(),
                    reference=reference.as_json() if reference else None,
                    plan=plan,
                    active=active,
                )
            )

    def add_skill_points(
        self,
        driver: str,
        session_id: int,
        track_id: str,
        points: dict[tuple[str, str], tuple[float, int]],
    ) -> None:
        """``points``: (measure, corner) keyed values with their lap counts."""
        now = time.time()
        with self._lock, Session(self.engine) as db, db.begin():
            for (measure, corner), (value, laps) in points.items():
                found = db.scalar(
                    select(SkillPointRow).where(
                        SkillPointRow.driver == driver,
                        SkillPointRow.session_id == session_id,
                        SkillPointRow.measure == measure,
                        SkillPointRow.corner == corner,
                    )
                )
                if found is None:
                    db.add(
                        SkillPointRow(
                            driver=driver,
                            session_id=session_id,
                            track_id=track_id,
                            measure=measure,
                            corner=corner,
                            value=float(value),
                            laps=int(laps),
                            recorded_at=now,
                        )
                    )
                else:
                    found.value, found.laps, found.recorded_at = value, laps, now

    def apply(self, updates: Iterable[Update]) -> int:
        """Store what live training measured (goal progress, badges); how many."""
        count = 0
        with self._lock, Session(self.engine) as db, db.begin():
            for update in updates:
                if isinstance(update, GoalUpdate):
                    row = db.get(TrainingGoalRow, update.goal_id)
                    if row is None:
                        continue
                    row.current_value = update.current_value
                    row.progress = update.progress
                    row.laps_measured = update.laps_measured
                    row.completed_at = row.completed_at or update.completed_at
                    count += 1
                elif isinstance(update, BadgeAward):
                    badge = update.badge
                    exists = db.scalar(
                        select(BadgeRow).where(
                            BadgeRow.driver == update.driver,
                            BadgeRow.category == badge.category.value,
                            BadgeRow.level == badge.level.value,
                        )
                    )
                    if exists is not None:
                        continue
                    db.add(
                        BadgeRow(
                            driver=update.driver,
                            badge_id=badge.id,
                            category=badge.category.value,
                            level=badge.level.value,
                            name=badge.name,
                            description=badge.description,
                            earned_at=badge.earned_at,
                            session_id=update.session_id,
                            evidence=badge.evidence.model_dump(mode="json"),
                        )
                    )
                    count += 1
        return count

    def _upsert(self, driver: str, **values: Any) -> None:
        with self._lock, Session(self.engine) as db, db.begin():
            row = self._row(db, driver)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = time.time()

    @staticmethod
    def _row(db: Session, driver: str) -> DriverProfileRow:
        row = db.scalar(
            select(DriverProfileRow).where(DriverProfileRow.driver == driver)
        )
        if row is None:
            row = DriverProfileRow(
                driver=driver,
                settings={},
                fatigue_model={},
                preferred_setups={},
                updated_at=time.time(),
            )
            db.add(row)
        return row


def _goal(row: TrainingGoalRow) -> TrainingGoal:
    return TrainingGoal(
        id=row.id,
        description=row.description,
        track_id=row.track_id,
        corner_ids=list(row.corner_ids),
        metric_type=MetricType(row.metric_type),
        measure=row.measure,
        baseline_value=row.baseline_value,
        target_value=row.target_value,
        current_value=row.current_value,
        progress=row.progress,
        created_at=row.created_at,
        completed_at=row.completed_at,
        reference=ReferenceLap.model_validate(row.reference) if row.reference else None,
        laps_measured=row.laps_measured,
    )


def _badge(row: BadgeRow) -> Badge:
    return Badge(
        id=row.badge_id,
        name=row.name,
        description=row.description,
        level=BadgeLevel(row.level),
        category=BadgeCategory(row.category),
        earned_at=row.earned_at,
        evidence=BadgeEvidence.model_validate(row.evidence),
    )
