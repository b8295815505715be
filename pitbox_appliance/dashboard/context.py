"""What a page gets to work with: the process-wide services and its tab's car selection."""

from __future__ import annotations

from dataclasses import dataclass

from pitbox_appliance.dashboard.core_api import CoreApi
from pitbox_appliance.dashboard.crew_store import CrewStore
from pitbox_appliance.dashboard.layout import Branding, CarSelection
from pitbox_appliance.dashboard.live_state import CarState, LiveState
from pitbox_appliance.dashboard.session_data import SessionData


@dataclass(frozen=True, slots=True)
class Services:
    """One of each per dashboard process, shared by every tab."""

    state: LiveState
    branding: Branding
    data: SessionData | None = None
    api: CoreApi | None = None
    crew: CrewStore | None = None


@dataclass(frozen=True, slots=True)
class PageContext:
    """A page's view of the services, and the car its tab shows."""

    services: Services
    selection: CarSelection

    @property
    def state(self) -> LiveState:
        return self.services.state

    def car(self) -> CarState | None:
        """The selected car's newest state (None before any data)."""
        car_id = self.selection.sync()
        return self.services.state.car(car_id) if car_id is not None else None
