"""Paired driver PCs ``/devices``: who is connected and driving, new pairing codes, revocation."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import segno
from nicegui import ui

from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.widgets import note, tid
from pitbox_appliance.security.pki import PkiFiles, ca_fingerprint
from pitbox_appliance.security.users import Role

RELOAD_S = 2.0

PAGE_CSS = """
.pb-devices-page { display: grid; width: 100%; height: 100%; gap: 8px;
                   grid-template-columns: minmax(0, 3fr) minmax(0, 2fr);
                   grid-template-rows: minmax(0, 1fr); }
.pb-devices-page .pb-tile { justify-content: flex-start; gap: 6px; overflow-y: auto; }
.pb-devtable { width: 100%; border-collapse: collapse; font-size: 15px; }
.pb-devtable td, .pb-devtable th { padding: 4px 6px; text-align: left;
                                   border-bottom: 1px solid var(--pb-line, #333); }
.pb-devtable .pb-revoked { opacity: 0.5; }
.pb-revoke-row { display: flex; flex-wrap: wrap; gap: 6px; }
.pb-revoke-row .q-btn, .pb-pair-form .q-btn { min-height: 44px; min-width: 44px; }
.pb-pair-form { display: flex; gap: 8px; align-items: flex-start; flex-wrap: wrap; }
.pb-pair-form .q-field { width: 160px; }
.pb-code { font-size: 44px; font-weight: 800; letter-spacing: 4px;
           font-variant-numeric: tabular-nums; line-height: 1.1; }
.pb-qr svg { background: #fff; padding: 6px; width: 150px; height: 150px; }
@media (max-width: 640px) {
  .pb-devices-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: auto auto;
                     height: auto; }
}
"""


@page(
    "/devices",
    icon="devices",
    label="Devices",
    order=90,
    css=PAGE_CSS,
    role=Role.ENGINEER,
)
def create(ctx: PageContext) -> None:
    """Build the devices page for one tab."""
    view = DevicesView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(RELOAD_S, view.reload)


class DevicesView:
    """The table of paired PCs with their revoke buttons, and the pairing tile."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        with tid(ui.element("div"), "page-devices").classes("pb-devices-page"):
            with ui.element("div").classes("pb-tile"):
                ui.label("Driver PCs").classes("pb-cap")
                self.table = tid(ui.html(""), "dev-table")
                self.revoke_row = ui.element("div").classes("pb-revoke-row")
                self.status = tid(ui.label(""), "dev-status").classes("pb-note")
            with ui.element("div").classes("pb-tile"):
                ui.label("Pair a new PC").classes("pb-cap")
                with ui.element("div").classes("pb-pair-form"):
                    self.source = tid(ui.input("PC id", value=""), "dev-source")
                    self.source.props(
                        'outlined dark maxlength=40 placeholder="car42-pc2"'
                    )
                    tid(ui.button("Make code", on_click=self.pair), "dev-pair")
                self.code = tid(ui.label(""), "dev-code").classes("pb-code")
                self.code_note = tid(ui.label(""), "dev-code-note").classes("pb-note")
                self.qr = tid(ui.html(""), "dev-qr").classes("pb-qr")
                note(
                    "On the driver PC: pitbox-shim pair (it finds this appliance on "
                    "the LAN and asks for the code). The code works once.",
                )
            with ui.element("div").classes("pb-tile"):
                ui.label("This appliance's CA (tablets trust it once)").classes(
                    "pb-cap"
                )
                self.ca = tid(ui.label(""), "dev-ca-fp").classes("pb-note")
                note(
                    "On the tablet open http://<this appliance>:8079/, compare the "
                    "SHA-256 fingerprint there with this one, then install the "
                    "certificate (docs/remote.md).",
                )
        self._shown: tuple[str, ...] = ()

    async def reload(self) -> None:
        self.ca.set_text(ca_text(self.ctx.services.ca_cert))
        api = self.ctx.services.api
        listed = await api.devices() if api is not None else None
        if listed is None:
            self.table.set_content(
                '<div class="pb-note">The core\'s API does not answer.</div>'
            )
            return
        devices = [d for d in listed.get("devices", []) if isinstance(d, dict)]
        self.table.set_content(devices_html(devices, listed.get("pending", [])))
        active = tuple(
            str(d["device_id"]) for d in devices if d.get("revoked_at") is None
        )
        if active != self._shown:
            self._shown = active
            self.revoke_row.clear()
            with self.revoke_row:
                for device in devices:
                    if device.get("revoked_at") is None:
                        self._revoke_button(device)

    def _revoke_button(self, device: dict[str, Any]) -> None:
        device_id, source = str(device["device_id"]), str(device["source"])

        async def confirm() -> None:
            with ui.dialog() as dialog, ui.card():
                ui.label(f"Revoke {source}? It must pair again to stream.")
                with ui.row():
                    ui.button("Cancel", on_click=lambda: dialog.submit(False))
                    tid(
                        ui.button("Revoke", on_click=lambda: dialog.submit(True)),
                        "dev-revoke-confirm",
                    ).props("color=negative")
            if await dialog:
                await self.revoke(device_id, source)

        tid(
            ui.button(f"Revoke {source}", on_click=confirm), f"dev-revoke-{source}"
        ).props("outline")

    async def revoke(self, device_id: str, source: str) -> None:
        api = self.ctx.services.api
        if api is None or not self.ctx.allow(Role.ENGINEER, "revoking a PC"):
            return
        ok, answer = await api.revoke(device_id)
        self.status.set_text(
            f"{source} revoked" if ok else f"not revoked: {answer['error']}"
        )
        await self.reload()

    async def pair(self) -> None:
        if not self.ctx.allow(Role.ENGINEER, "pairing a PC"):
            return
        api = self.ctx.services.api
        source = (self.source.value or "").strip()
        if api is None or not source:
            self.code_note.set_text("Give the PC an id such as car42-pc2.")
            return
        ok, answer = await api.start_pairing(source)
        if not ok:
            self.code.set_text("")
            self.qr.set_content("")
            self.code_note.set_text(f"No code: {answer['error']}")
            return
        minutes = max(1, round((float(answer["expires_at"]) - time.time()) / 60))
        self.code.set_text(str(answer["code"]))
        self.code_note.set_text(
            f"for {source}, valid {minutes} min, works once: {answer['command']}"
        )
        self.qr.set_content(qr_svg(str(answer["pair_uri"])))
        await self.reload()


def devices_html(devices: list[dict[str, Any]], pending: list[Any]) -> str:
    """The table of paired PCs, newest first, then the codes still waiting."""
    rows = []
    for d in sorted(devices, key=lambda d: -float(d.get("paired_at") or 0)):
        revoked = d.get("revoked_at") is not None
        state = "revoked" if revoked else str(d.get("state") or "not heard")
        spool = d.get("spool_depth")
        paired = time.strftime("%d %b %H:%M", time.localtime(float(d["paired_at"])))
        rows.append(
            f'<tr class="{"pb-revoked" if revoked else ""}" '
            f'data-testid="dev-row-{html.escape(str(d["source"]))}">'
            f"<td>{html.escape(str(d['source']))}</td>"
            f"<td>{html.escape(str(d.get('driver_name') or '—'))}</td>"
            f"<td>{html.escape(str(d.get('role') or '—'))}</td>"
            f"<td>{html.escape(state)}</td>"
            f"<td>{'—' if spool is None else int(spool)}</td><td>{paired}</td></tr>"
        )
    for p in pending:
        if isinstance(p, dict):
            rows.append(
                f"<tr><td>{html.escape(str(p.get('source')))}</td><td>—</td>"
                "<td>—</td><td>waiting for its code</td><td>—</td><td>—</td></tr>"
            )
    if not rows:
        rows.append('<tr><td colspan="6">no PC paired yet</td></tr>')
    return (
        '<table class="pb-devtable"><tr><th>PC</th><th>driver</th><th>role</th>'
        f"<th>shim</th><th>spool</th><th>paired</th></tr>{''.join(rows)}</table>"
    )


def qr_svg(uri: str) -> str:
    """The pairing URI as an inline SVG QR code (black on white)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, dark="#000"))


def ca_text(ca_cert: Path | None) -> str:
    """The CA's SHA-256 fingerprint, or why there is none."""
    if ca_cert is None or not ca_cert.exists():
        return "No CA yet (pitbox devices setup): the pit wall is plain HTTP."
    try:
        return "SHA-256 " + ca_fingerprint(PkiFiles(ca_cert.parent))
    except (OSError, ValueError) as exc:
        return f"The CA certificate cannot be read: {exc}"
