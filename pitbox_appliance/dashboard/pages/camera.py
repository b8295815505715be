"""Camera control and team messages ``/camera``: commands to the active driver PC, confirmed back."""

from __future__ import annotations

import html
import time
from typing import Any

from nicegui import ui

from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.core_api import CommandOutcome, Outcome
from pitbox_appliance.dashboard.crew_store import LogEntry
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.session_data import SessionExtras
from pitbox_appliance.dashboard.widgets import note, tid
from pitbox_appliance.security.users import Role

#: How often the page re-reads the car's session info and the shared log.
RELOAD_S = 2.0
MAX_MESSAGE = 200
QUICK_MESSAGES = ("Box this lap", "Push now", "Save fuel", "Stay out")
_OUTCOME_TONES = {Outcome.CONFIRMED: "pb-ok", Outcome.TIMEOUT: "pb-warn"}

PAGE_CSS = """
.pb-camera-page { display: grid; width: 100%; height: 100%; gap: 8px;
                  grid-template-columns: minmax(0, 1fr) minmax(0, 1fr);
                  grid-template-rows: minmax(0, 1fr); }
.pb-camera-page .pb-tile { justify-content: flex-start; gap: 6px; overflow-y: auto; }
.pb-fields { display: flex; gap: 8px; align-items: flex-start; flex-wrap: wrap; }
.pb-fields .q-field { min-width: 0; }
.pb-field-car { width: 110px; } .pb-field-num { width: 96px; }
.pb-field-msg { width: 100%; }
.pb-choices { display: flex; flex-wrap: wrap; gap: 6px; max-height: 112px; overflow-y: auto; }
.pb-choices .q-btn { min-height: 44px; min-width: 52px; }
.pb-status { font-size: 16px; font-weight: 700; line-height: 1.3; min-height: 22px; }
.pb-log { font-size: 14px; display: flex; flex-direction: column; gap: 2px;
          font-variant-numeric: tabular-nums; }
.pb-log span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
@media (max-width: 640px) {
  .pb-camera-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: auto auto;
                    height: auto; }
}
"""


@page(
    "/camera",
    icon="videocam",
    label="Camera",
    order=80,
    css=PAGE_CSS,
    role=Role.ENGINEER,
)
def create(ctx: PageContext) -> None:
    """Build the camera/message page for one tab."""
    view = CameraView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(RELOAD_S, view.reload)


class CameraView:
    """The camera form, the message form and the shared command log of one tab."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.extras = SessionExtras()
        self._extras_key: str | None = None
        self._log_version = -1
        self.last: CommandOutcome | None = None
        with tid(ui.element("div"), "page-camera").classes("pb-camera-page"):
            with ui.element("div").classes("pb-tile"):
                self.camera_title = ui.label("Camera").classes("pb-cap")
                with ui.element("div").classes("pb-fields"):
                    self.car_number = tid(
                        ui.input("Car #", value=""), "cam-car"
                    ).classes("pb-field-car")
                    self.car_number.props("outlined dark inputmode=numeric maxlength=4")
                    self.group = tid(
                        ui.number("Group", value=1, min=0, max=99, precision=0),
                        "cam-group",
                    ).classes("pb-field-num")
                    self.group.props("outlined dark")
                    self.camera = tid(
                        ui.number("Camera", value=1, min=0, max=99, precision=0),
                        "cam-camera",
                    ).classes("pb-field-num")
                    self.camera.props("outlined dark")
                self.car_choices = tid(ui.element("div"), "car-choices").classes(
                    "pb-choices"
                )
                self.group_choices = tid(ui.element("div"), "group-choices").classes(
                    "pb-choices"
                )
                self.send_camera = tid(
                    ui.button(
                        "Switch camera", icon="videocam", on_click=self.switch_camera
                    ),
                    "send-camera",
                ).classes("pb-btn")
                self.camera_status = tid(ui.label(""), "camera-status").classes(
                    "pb-status"
                )
                self.camera_note = note("", "camera-note")
            with ui.element("div").classes("pb-tile"):
                self.message_title = ui.label("Message to the driver").classes("pb-cap")
                self.message = tid(
                    ui.input("Message", value=""), "message-text"
                ).classes("pb-field-msg")
                self.message.props(f"outlined dark counter maxlength={MAX_MESSAGE}")
                with ui.element("div").classes("pb-choices"):
                    for index, text in enumerate(QUICK_MESSAGES):
                        tid(
                            ui.button(text, on_click=self._quick(text)),
                            f"quick-{index}",
                        ).props("no-caps outline color=white")
                self.send_message = tid(
                    ui.button("Send message", icon="send", on_click=self.send_text),
                    "send-message",
                ).classes("pb-btn")
                self.message_status = tid(ui.label(""), "message-status").classes(
                    "pb-status"
                )
                ui.label("Sent from the pit wall").classes("pb-cap")
                self.log = tid(ui.html("", sanitize=True), "command-log").classes(
                    "pb-log"
                )

    # ---- actions --------------------------------------------------------------------
    async def switch_camera(self) -> None:
        """Ask the selected car's shim to switch iRacing's broadcast camera."""
        number = str(self.car_number.value or "").strip()
        if not number:
            self._status(self.camera_status, "Enter the car number to show.", "pb-warn")
            return
        args: dict[str, Any] = {
            "car": number,
            "group": int(self.group.value or 0),
            "camera": int(self.camera.value or 0),
        }
        summary = f"car #{number}, group {args['group']}, camera {args['camera']}"
        await self._send("camera", args, summary, self.camera_status, self.send_camera)

    async def send_text(self) -> None:
        """Send the typed message to the selected car's driver."""
        text = str(self.message.value or "").strip()
        if not text:
            self._status(self.message_status, "Type a message first.", "pb-warn")
            return
        if len(text) > MAX_MESSAGE:
            self._status(
                self.message_status, f"At most {MAX_MESSAGE} characters.", "pb-warn"
            )
            return
        sent = await self._send(
            "message", {"text": text}, text, self.message_status, self.send_message
        )
        if sent is not None and sent.ok:
            self.message.set_value("")

    async def reload(self) -> None:
        """Session info (car numbers, camera groups) and the shared command log."""
        car = self.ctx.car()
        who = f"{car.car} · {car.driver}" if car is not None and car.driver else None
        self.message_title.set_text(
            f"Message to {who}" if who else "Message to the driver"
        )
        self.camera_title.set_text(f"Camera · via {car.car}" if car else "Camera")
        data = self.ctx.services.data
        if data is not None and car is not None and car.session_key != self._extras_key:
            extras = await data.extras(car.session_key)
            if self.log.is_deleted:
                return
            self._extras_key = car.session_key
            self._set_extras(extras)
        elif self._extras_key is None:
            self._set_extras(self.extras)
        self._show_log()

    # ---- helpers ---------------------------------------------------------------------
    async def _send(
        self,
        kind: str,
        args: dict[str, Any],
        summary: str,
        status: ui.label,
        button: ui.button,
    ) -> CommandOutcome | None:
        if not self.ctx.allow(Role.ENGINEER, "sending commands"):
            self._status(status, "Refused: engineers only.", "pb-bad")
            return None
        api = self.ctx.services.api
        car = self.ctx.car()
        if api is None:
            self._status(status, "No core API configured.", "pb-bad")
            return None
        if car is None:
            self._status(status, "No live car to send to.", "pb-warn")
            return None
        self._status(status, f"Sending to {car.car}… waiting for the shim", "pb-muted")
        button.disable()
        try:
            outcome = await api.send(car.car, kind, args, by=self.ctx.user_name)
        finally:
            if not button.is_deleted:
                button.enable()
        self.last = outcome
        crew = self.ctx.services.crew
        if crew is not None:
            await crew.add_log(
                LogEntry(
                    at=time.time(),
                    car=car.car,
                    session_key=car.session_key,
                    kind=kind,
                    text=summary,
                    outcome=outcome.outcome.value,
                    detail=outcome.detail,
                    user=self.ctx.user_name or "",
                )
            )
        if status.is_deleted:
            return outcome
        tone = _OUTCOME_TONES.get(outcome.outcome, "pb-bad")
        if outcome.ok:
            text = f"✓ {outcome.source} confirmed in {outcome.elapsed_s:.1f} s: {outcome.detail}"
        else:
            text = f"✗ {outcome.outcome.value}: {outcome.detail}"
        self._status(status, text, tone)
        self._show_log()
        return outcome

    def _status(self, label: ui.label, text: str, tone: str) -> None:
        label.set_text(text)
        label.classes(replace=f"pb-status {tone}")

    def _quick(self, text: str) -> Any:
        def fill() -> None:
            self.message.set_value(text)

        return fill

    def _set_extras(self, extras: SessionExtras) -> None:
        # Our own car number fills the field unless someone typed another one.
        previous = self.extras.own_car_number
        self.extras = extras
        current = str(self.car_number.value or "")
        if extras.own_car_number and current in ("", previous):
            self.car_number.set_value(extras.own_car_number)
        self.car_choices.clear()
        with self.car_choices:
            for number, team in extras.car_numbers[:24]:
                tid(
                    ui.button(f"#{number}", on_click=self._set_car(number)),
                    f"car-{number}",
                ).props(f'no-caps outline color=white title="{html.escape(team)}"')
        self.group_choices.clear()
        with self.group_choices:
            for group, name in extras.camera_groups:
                tid(
                    ui.button(name or str(group), on_click=self._set_group(group)),
                    f"group-{group}",
                ).props("no-caps outline color=white")
        if extras.camera_groups:
            self.camera_note.set_text(
                "Camera groups from the session info; the number fields take any other."
            )
        else:
            self.camera_note.set_text(
                "This session's info lists no camera groups (iRacing sends them live; "
                "the simulator and .ibt files do not): enter iRacing's group number."
            )

    def _set_car(self, number: str) -> Any:
        def choose() -> None:
            self.car_number.set_value(number)

        return choose

    def _set_group(self, number: int) -> Any:
        def choose() -> None:
            self.group.set_value(number)

        return choose

    def _show_log(self) -> None:
        crew = self.ctx.services.crew
        if crew is None or crew.version == self._log_version:
            return
        self._log_version = crew.version
        rows = []
        for entry in crew.log(limit=8):
            tone = "pb-ok" if entry.outcome == Outcome.CONFIRMED.value else "pb-bad"
            clock = time.strftime("%H:%M:%S", time.localtime(entry.at))
            who = f" · {html.escape(entry.user)}" if entry.user else ""
            rows.append(
                f'<span title="{html.escape(entry.detail)}">{clock}{who} '
                f"<b>{html.escape(entry.car)}</b> {html.escape(entry.kind)}: "
                f'{html.escape(entry.text)} <span class="{tone}">'
                f"{html.escape(entry.outcome)}</span></span>"
            )
        self.log.set_content(
            "".join(rows) or '<span class="pb-note">Nothing sent yet.</span>'
        )
