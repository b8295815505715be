"""CoachingService: marks sessions as training (goals, plan, live board), serves profiles, stores what live training measured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pitbox_appliance.coaching.fatigue_model import learn_fatigue_model
from pitbox_appliance.coaching.goals import TrainingGoalGenerator
from pitbox_appliance.coaching.live import BOARD, LivePlan, Notice, TrainingBoard
from pitbox_appliance.coaching.planner import TrainingSessionPlanner
from pitbox_appliance.coaching.profile import (
    DriverSettings,
    ExtendedDriverProfile,
)
from pitbox_appliance.coaching.setups import learn_preferred_setups
from pitbox_appliance.coaching.store import ProfileStore
from pitbox_appliance.storage.reader import SessionReader

logger = logging.getLogger(__name__)


class CoachingService:
    """The coaching side of the core process (the API calls it off the event loop)."""

    def __init__(
        self,
        engine: Engine,
        board: TrainingBoard = BOARD,
        outlines: Path | None = None,
    ) -> None:
        self.engine = engine
        self.board = board
        self.store = ProfileStore(engine)
        self.reader = SessionReader(engine)
        self.outlines = outlines
        self.planner = TrainingSessionPlanner()

    def load(self) -> None:
        """Put stored settings, fatigue models and active training sessions on the board."""
        for driver in self.store.drivers():
            profile = self.store.profile(driver)
            self.board.set_settings(driver, profile.settings)
            self.board.set_fatigue_model(driver, profile.fatigue_model)
        for marked in self.store.training_sessions():
            if marked["active"]:
                try:
                    self._activate(int(marked["session_id"]), str(marked["driver"]))
                except LookupError as exc:
                    logger.warning("training session not resumed: %s", exc)

    def mark_training(
        self,
        session_id: int,
        driver: str,
        reference: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Mark a session as training for ``driver``: goals, plan, live board.

        Raises LookupError for an unknown session or reference lap.
        """
        session = self.reader.session(session_id)
        if session is None:
            raise LookupError(f"no session {session_id}")
        generator = TrainingGoalGenerator(self.engine, self.outlines)
        found = generator.generate(session_id, driver, reference)
        self.store.replace_goals(driver, session_id, found.goals)
        if found.skill_points:
            self.store.add_skill_points(
                driver, session_id, found.track_id, found.skill_points
            )
        for track, setup in learn_preferred_setups(self.reader, driver).items():
            self.store.save_preferred_setup(driver, track, setup)
        fatigue = learn_fatigue_model(self.reader, driver)
        self.store.save_fatigue_model(driver, fatigue)
        self.board.set_fatigue_model(driver, fatigue)
        plan = self.planner.plan(driver, found.goals, fatigue, found.reference)
        self.store.mark_training(session_id, driver, found.reference, plan)
        self.board.activate(
            LivePlan(
                session_id=session_id,
                car=session.car,
                driver=driver,
                track_id=found.track_id,
                corners=found.corners,
                length_m=found.length_m,
                goals=found.goals,
                held_badges=self.store.held_badges(driver),
                stop_fatigue=_stop_at(plan),
            )
        )
        return {
            "session_id": session_id,
            "car": session.car,
            "driver": driver,
            "track_id": found.track_id,
            "corners": [c.label for c in found.corners.corners],
            "goals": [g.as_json() for g in found.goals],
            "comparison": found.comparison,
            "reference": found.reference.as_json() if found.reference else None,
            "plan": plan,
        }

    def unmark_training(self, session_id: int) -> None:
        marked = self.store.training_session(session_id)
        if marked is None:
            raise LookupError(f"session {session_id} is not marked as training")
        self.store.mark_training(
            session_id, str(marked["driver"]), None, marked["plan"], active=False
        )
        session = self.reader.session(session_id)
        if session is not None:
            plan = self.board.plan_for(session.car)
            if plan is not None and plan.session_id == session_id:
                self.board.deactivate(session.car)

    def save_settings(self, driver: str, settings: DriverSettings) -> None:
        self.store.save_settings(driver, settings)
        self.board.set_settings(driver, settings)

    def profile(self, driver: str) -> ExtendedDriverProfile:
        return self.store.profile(driver)

    def plan_of(self, driver: str) -> dict[str, Any] | None:
        """The plan of the driver's latest training session."""
        marked = [s for s in self.store.training_sessions() if s["driver"] == driver]
        if not marked:
            return None
        latest = max(marked, key=lambda s: float(s["marked_at"]))
        plan = latest["plan"]
        return plan if isinstance(plan, dict) else None

    def pump(self) -> list[Notice]:
        """Store what live training posted; the shim notices among it."""
        updates = self.board.drain()
        if not updates:
            return []
        self.store.apply(updates)
        return [u for u in updates if isinstance(u, Notice)]

    def _activate(self, session_id: int, driver: str) -> None:
        session = self.reader.session(session_id)
        if session is None:
            raise LookupError(f"no session {session_id}")
        generator = TrainingGoalGenerator(self.engine, self.outlines)
        corners, length_m = generator.corners(
            session,
            [
                s
                for s in self.reader.sessions()
                if s.track == session.track and s.car == session.car
            ],
        )
        goals = self.store.goals(driver)
        marked = self.store.training_session(session_id) or {}
        plan = marked.get("plan")
        self.board.activate(
            LivePlan(
                session_id=session_id,
                car=session.car,
                driver=driver,
                track_id=goals[0].track_id if goals else "",
                corners=corners,
                length_m=length_m,
                goals=goals,
                held_badges=self.store.held_badges(driver),
                stop_fatigue=_stop_at(plan if isinstance(plan, dict) else None),
            )
        )


def _stop_at(plan: dict[str, Any] | None) -> float | None:
    """The fatigue level at which the plan ends the practice."""
    stop = (plan or {}).get("stopWhen") or {}
    value = stop.get("fatigueAbove") if isinstance(stop, dict) else None
    return float(value) if isinstance(value, int | float) else None
