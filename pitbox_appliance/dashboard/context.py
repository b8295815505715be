"""What a page gets to work with: the process-wide services, its tab's car selection and user."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from nicegui import ui

from pitbox_appliance.dashboard.auth import DashboardAuth, Principal
from pitbox_appliance.dashboard.core_api import CoreApi
from pitbox_appliance.dashboard.crew_store import CrewStore
from pitbox_appliance.dashboard.layout import Branding, CarSelection
from pitbox_appliance.dashboard.live_state import CarState, LiveState
from pitbox_appliance.dashboard.session_data import SessionData
from pitbox_appliance.security.users import Role

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """One of each per dashboard process, shared by every tab."""

    state: LiveState
    branding: Branding
    data: SessionData | None = None
    api: CoreApi | None = None
    crew: CrewStore | None = None
    #: Logins; None only where the caller builds pages without them (the in-process
    #: tests): ``run()`` always has one.
    auth: DashboardAuth | None = None
    #: The appliance CA's certificate (its fingerprint is shown on /devices for
    #: tablets to compare before trusting it); None: not shown.
    ca_cert: Path | None = None


@dataclass(frozen=True, slots=True)
class PageContext:
    """A page's view of the services, and the car its tab shows."""

    services: Services
    selection: CarSelection
    #: Who opened the tab (None when the services have no logins).
    user: Principal | None = None

    @property
    def state(self) -> LiveState:
        return self.services.state

    def car(self) -> CarState | None:
        """The selected car's newest state (None before any data)."""
        car_id = self.selection.sync()
        return self.services.state.car(car_id) if car_id is not None else None

    @property
    def user_name(self) -> str | None:
        return self.user.name if self.user is not None else None

    def may(self, role: Role) -> bool:
        """Whether the tab's user may do what needs ``role`` *now*.

        Asked again at every use: a logout elsewhere, an expired session, a removed
        user or a changed role counts at once, whatever the tab still shows.
        """
        auth = self.services.auth
        if auth is None:
            return True
        if self.user is None:
            return False
        principal = auth.check(self.user.session)
        return principal is not None and principal.may(role)

    def allow(self, role: Role, what: str) -> bool:
        """``may`` for an action handler: says so (and logs it) when refused."""
        if self.may(role):
            return True
        who = self.user_name or "nobody"
        logger.warning("refused %s to %s: needs the %s role", what, who, role.label)
        ui.notify(f"Refused: {what} needs the {role.label} role.", type="negative")
        return False
