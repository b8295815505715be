"""Assembles the dashboard: one LiveState fed by MQTT, the pages, and the NiceGUI server."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

from nicegui import app, ui

from driver_pc.transport.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.config import DashboardConfig, MqttConfig
from pitbox_appliance.dashboard.layout import Branding
from pitbox_appliance.dashboard.live_state import LiveState
from pitbox_appliance.dashboard.pages import pitwall

logger = logging.getLogger(__name__)


def build_root(state: LiveState, branding: Branding) -> Callable[[], None]:
    """The root page function NiceGUI calls for every new browser tab."""

    def root() -> None:
        pitwall.create(state, branding)

    return root


def run(dashboard: DashboardConfig, mqtt: MqttConfig, password: str) -> None:
    """Serve the dashboard until SIGTERM or SIGINT (blocks; uvicorn handles both)."""
    state = LiveState()
    client_id = f"pitbox-dashboard-{socket.gethostname()}-{os.getpid()}"
    connection = MqttConnection(
        client_id, BrokerAddress(mqtt.host, mqtt.port, mqtt.username, password)
    )
    state.attach(connection)
    app.on_startup(connection.start)
    app.on_shutdown(connection.stop)
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown, then on_shutdown) and
    # re-raises the signal to the previous handler afterwards: make that an exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    logger.info(
        "dashboard on http://%s:%s, broker %s:%s",
        dashboard.host,
        dashboard.port,
        mqtt.host,
        mqtt.port,
    )
    ui.run(
        build_root(state, Branding(dashboard.team_name, dashboard.accent_color)),
        host=dashboard.host,
        port=dashboard.port,
        title=f"{dashboard.team_name} · pit wall",
        favicon="🏁",
        reload=False,
        show=False,
        dark=True,
        show_welcome_message=False,
        # Pages refresh with their own timers; nothing uses property bindings.
        binding_refresh_interval=None,
    )


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)
    raise SystemExit(0)
