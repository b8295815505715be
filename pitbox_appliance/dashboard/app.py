"""Assembles the dashboard: one LiveState fed by MQTT, the session data, the pages, the server."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from nicegui import app, ui
from sqlalchemy.engine.url import make_url

from driver_pc.protocol import data_dirs
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.config import CoreConfig, DashboardConfig, MqttConfig, ThemeConfig
from pitbox_appliance.dashboard.context import PageContext, Services
from pitbox_appliance.dashboard.core_api import CoreApi, api_base_url, command_token
from pitbox_appliance.dashboard.crew_store import FILE_NAME, CrewStore
from pitbox_appliance.dashboard.layout import Branding, CarSelection, frame
from pitbox_appliance.dashboard.live_state import LiveState
from pitbox_appliance.dashboard.pages import PageSpec, pages
from pitbox_appliance.dashboard.session_data import SessionData
from pitbox_appliance.dashboard.theme import branding as theme_branding
from pitbox_appliance.storage.database import default_db_url

logger = logging.getLogger(__name__)


def build_root(
    state: LiveState,
    branding: Branding,
    *,
    data: SessionData | None = None,
    api: CoreApi | None = None,
    crew: CrewStore | None = None,
) -> Callable[[], None]:
    """The root page function NiceGUI calls for every new browser tab.

    The header and navigation are built once per tab; ``ui.sub_pages`` swaps the page
    below them when a navigation link is followed, without reloading the tab.
    """
    services = Services(state, branding, data, api, crew)
    every_page = pages()
    # Every page's own CSS, added once per tab (sub pages come and go, styles stay).
    css = "".join(p.css for p in every_page)

    def root() -> None:
        selection = CarSelection(state)
        ctx = PageContext(services, selection)
        with frame(branding, state, selection, css=css):
            ui.sub_pages({p.path: _builder(p, ctx) for p in every_page})

    return root


def run(
    dashboard: DashboardConfig,
    mqtt: MqttConfig,
    password: str,
    core: CoreConfig | None = None,
    theme: ThemeConfig | None = None,
) -> None:
    """Serve the dashboard until SIGTERM or SIGINT (blocks; uvicorn handles both)."""
    core = core or CoreConfig()
    brand, logo = theme_branding(dashboard, theme or ThemeConfig())
    if logo is not None and brand.logo_url is not None:
        app.add_static_file(local_file=logo, url_path=brand.logo_url)
    state = LiveState()
    # The broker makes the login the client id: one dashboard per appliance.
    user = mqtt.dashboard_username
    connection = MqttConnection(
        user, BrokerAddress(mqtt.host, mqtt.port, user, password)
    )
    state.attach(connection)
    db_url = core.db_url or default_db_url()
    data = SessionData(db_url)
    token = command_token(os.environ.get("PITBOX_API_TOKENS", ""))
    if token is None:
        logger.warning(
            "PITBOX_API_TOKENS holds no 'commands' token: commands will fail"
        )
    api = CoreApi(api_base_url(core.api_host, core.api_port), token=token)
    crew = CrewStore(crew_file(db_url))
    app.on_startup(connection.start)
    app.on_shutdown(connection.stop)
    app.on_shutdown(api.close)
    app.on_shutdown(data.close)
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown, then on_shutdown) and
    # re-raises the signal to the previous handler afterwards: make that an exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    logger.info(
        "dashboard on http://%s:%s, broker %s:%s, database %s, core API %s",
        dashboard.host,
        dashboard.port,
        mqtt.host,
        mqtt.port,
        db_url,
        api.base_url,
    )
    ui.run(
        build_root(
            state,
            brand,
            data=data,
            api=api,
            crew=crew,
        ),
        host=dashboard.host,
        port=dashboard.port,
        title=f"{brand.team_name} · pit wall",
        favicon="🏁",
        reload=False,
        show=False,
        dark=True,
        show_welcome_message=False,
        # Pages refresh with their own timers; nothing uses property bindings.
        binding_refresh_interval=None,
    )


def _builder(spec: PageSpec, ctx: PageContext) -> Callable[[], None]:
    return lambda: spec.create(ctx)


def crew_file(db_url: str) -> Path:
    """The crew's checklist/log file: beside the database, else in the data dir."""
    database = make_url(db_url).database
    if database and database != ":memory:":
        return Path(database).parent / FILE_NAME
    return data_dirs.appliance_data_dir() / FILE_NAME


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)
    raise SystemExit(0)
