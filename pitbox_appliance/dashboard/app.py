"""Assembles the dashboard: one LiveState fed by MQTT, the session data, the logins, the pages, the server."""

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
from pitbox_appliance.config import (
    CoreConfig,
    DashboardConfig,
    MqttConfig,
    SecurityConfig,
    ThemeConfig,
)
from pitbox_appliance.dashboard import auth as logins
from pitbox_appliance.dashboard.auth import DashboardAuth
from pitbox_appliance.dashboard.context import PageContext, Services
from pitbox_appliance.dashboard.core_api import CoreApi, api_base_url, command_token
from pitbox_appliance.dashboard.crew_store import FILE_NAME, CrewStore
from pitbox_appliance.dashboard.layout import Branding, CarSelection, frame
from pitbox_appliance.dashboard.live_state import LiveState
from pitbox_appliance.dashboard.pages import PageSpec, pages
from pitbox_appliance.dashboard.session_data import SessionData
from pitbox_appliance.dashboard.theme import branding as theme_branding
from pitbox_appliance.dashboard.widgets import note, tid
from pitbox_appliance.security.devices import security_dir
from pitbox_appliance.security.pki import PkiFiles
from pitbox_appliance.security.users import Role, UserStore
from pitbox_appliance.security.web_tls import https_on, web_tls
from pitbox_appliance.storage.database import default_db_url

logger = logging.getLogger(__name__)


def build_root(
    state: LiveState,
    branding: Branding,
    *,
    data: SessionData | None = None,
    api: CoreApi | None = None,
    crew: CrewStore | None = None,
    auth: DashboardAuth | None = None,
    ca_cert: Path | None = None,
) -> Callable[[], None]:
    """The root page function NiceGUI calls for every new browser tab.

    The header and navigation are built once per tab; ``ui.sub_pages`` swaps the page
    below them when a navigation link is followed, without reloading the tab. With
    ``auth`` (``run`` always passes it) the tab belongs to the logged-in user: the
    navigation offers only the pages their role may open, and the others are refused.
    Without it (the in-process tests) every page is open.
    """
    services = Services(state, branding, data, api, crew, auth, ca_cert)
    every_page = pages()
    # Every page's own CSS, added once per tab (sub pages come and go, styles stay).
    css = "".join(p.css for p in every_page)

    def root() -> None:
        selection = CarSelection(state)
        user = None
        if auth is not None:
            # The gate let the request through, so the cookie held a session; it
            # may have ended since (a logout in another tab).
            user = auth.current(ui.context.client.request.cookies.get(logins.COOKIE))
            if user is None:
                ui.context.client.open(logins.login_url("/", "expired"))
                return
        ctx = PageContext(services, selection, user)
        shown = [p for p in every_page if ctx.may(p.role)]
        watch = (lambda: ctx.may(Role.VIEWER)) if auth is not None else None
        with frame(
            branding,
            state,
            selection,
            css=css,
            shown=shown,
            user=user,
            still_valid=watch,
        ):
            ui.sub_pages({p.path: _builder(p, ctx) for p in every_page})

    return root


def run(
    dashboard: DashboardConfig,
    mqtt: MqttConfig,
    password: str,
    core: CoreConfig | None = None,
    theme: ThemeConfig | None = None,
    security: SecurityConfig | None = None,
) -> None:
    """Serve the dashboard until SIGTERM or SIGINT (blocks; uvicorn handles both).

    Everyone logs in: the people of ``users.json`` in the security directory.
    """
    core = core or CoreConfig()
    security = security or SecurityConfig()
    brand, logo = theme_branding(dashboard, theme or ThemeConfig())
    auth = DashboardAuth(UserStore.from_config(security), security_dir(security))
    if not auth.has_users():
        logger.warning(
            "no dashboard users yet: nobody can log in until "
            "'pitbox users add NAME --role engineer' (users file %s)",
            auth.users.path,
        )
    logins.install(auth, team=brand.team_name, accent=brand.accent_color)
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
    # An HTTPS API keeps plain HTTP on 127.0.0.1 for the appliance's programs.
    api_host = "127.0.0.1" if https_on(security, core.api_host) else core.api_host
    api = CoreApi(api_base_url(api_host, core.api_port), token=token)
    # HTTPS for tablets once the appliance has its CA (security/web_tls.py).
    # (Tablets fetch the CA from the API's plain-HTTP page, security.ca_http_port.)
    tls = web_tls(security, dashboard.host)
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
        "dashboard on %s://%s:%s, broker %s:%s, database %s, core API %s",
        "https" if tls else "http",
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
            auth=auth,
            ca_cert=PkiFiles(security_dir(security)).ca_cert,
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
        # Passed on to uvicorn; None: plain HTTP.
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None,
    )


def _builder(spec: PageSpec, ctx: PageContext) -> Callable[[], None]:
    def build() -> None:
        # Checked when the page is opened, not only when the navigation was drawn:
        # a typed URL or a role changed since must not open it.
        if ctx.may(spec.role):
            spec.create(ctx)
            return
        who = ctx.user_name or "nobody"
        logger.warning("refused %s to %s: needs %s", spec.path, who, spec.role.label)
        with tid(ui.element("div"), "refused").classes("pb-tile"):
            ui.label(f"{spec.label}: for the {spec.role.label} role").classes("pb-cap")
            note(
                f"You are logged in as {who}. Ask an engineer for access "
                "(pitbox users add … --replace --role …).",
                "refused-note",
            )

    return build


def crew_file(db_url: str) -> Path:
    """The crew's checklist/log file: beside the database, else in the data dir."""
    database = make_url(db_url).database
    if database and database != ":memory:":
        return Path(database).parent / FILE_NAME
    return data_dirs.appliance_data_dir() / FILE_NAME


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)
    raise SystemExit(0)
