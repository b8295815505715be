"""Paired driver PCs for the engineer's /devices page: list, start a pairing, revoke."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from aiohttp import web

from pitbox_appliance.api.context import (
    REGISTRATIONS,
    SERVICE,
    error_response,
    json_response,
    read_body,
)
from pitbox_appliance.api.schemas import (
    DeviceList,
    DeviceOut,
    PairingIn,
    PairingOut,
    PendingOut,
)
from pitbox_appliance.core.ingest import car_of_source
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.devices import Device, PendingPairing
from pitbox_appliance.security.pki import appliance_names, ensure_pki

routes = web.RouteTableDef()


@routes.get("/api/v1/devices", allow_head=False)
async def list_devices(request: web.Request) -> web.Response:
    """Every paired PC with its role, shim state and spool; the codes still waiting."""
    service = request.app[SERVICE]
    loop = asyncio.get_running_loop()
    devices, pending, roles, statuses = await loop.run_in_executor(
        None, _snapshot, service
    )
    registered = request.app[REGISTRATIONS]
    rows = []
    for device in devices:
        status = statuses.get(device.source, {})
        who = registered.get(device.source)
        spool = status.get("spool_depth")
        rows.append(
            _out(device).model_copy(
                update={
                    "role": roles.get(device.source),
                    "state": status.get("state"),
                    "spool_depth": spool if isinstance(spool, int) else None,
                    "driver_name": who.driver_name if who is not None else None,
                }
            )
        )
    waiting = [PendingOut(source=p.source, expires_at=p.expires_at) for p in pending]
    return json_response(DeviceList(devices=rows, pending=waiting))


@routes.post("/api/v1/devices/pairings")
async def start_pairing(request: web.Request) -> web.Response:
    """A one-time pairing code for a new PC; 201 (the only time the code is shown)."""
    body = await read_body(request, PairingIn)
    if isinstance(body, web.Response):
        return body
    service = request.app[SERVICE]
    security = service.config.security
    loop = asyncio.get_running_loop()

    def start() -> tuple[str, float]:
        directory = service.devices.path.parent
        if not (directory / "ca.crt").exists():
            public = [security.public_host] if security.public_host else []
            ensure_pki(directory, appliance_names(public))
        pending = service.devices.start_pairing(body.source, security.pairing_ttl_s)
        return pending.code, pending.expires_at

    try:
        raw, expires_at = await loop.run_in_executor(None, start)
    except ValueError as exc:  # a bad or already paired source
        return error_response(409, f"source: {exc}", ["source"])
    code = f"{raw[:4]}-{raw[4:]}"
    api = _api_url(request, service)
    query = urllib.parse.urlencode({"api": api, "code": code})
    return json_response(
        PairingOut(
            source=body.source,
            code=code,
            expires_at=expires_at,
            command=f"pitbox-shim pair --code {code}",
            pair_uri=f"pitbox://pair?{query}",
        ),
        status=201,
    )


@routes.post("/api/v1/devices/{id}/revoke")
async def revoke_device(request: web.Request) -> web.Response:
    """Revoke a PC: its broker login goes, its key is refused from now on."""
    service = request.app[SERVICE]
    which = request.match_info["id"]
    loop = asyncio.get_running_loop()
    try:
        device = await loop.run_in_executor(None, service.devices.revoke, which)
    except LookupError as exc:
        return error_response(404, f"id: {exc}", ["id"])
    await loop.run_in_executor(None, lambda: service.refresh_keys(force=True))
    return json_response(_out(device))


def _snapshot(
    service: CoreService,
) -> tuple[
    list[Device], list[PendingPairing], dict[str, str], dict[str, dict[str, Any]]
]:
    """Devices, pending codes, each source's role and shim status (blocking reads)."""
    roles = {
        source: role.value
        for car in list(service.ingestor.live.values())
        for source, role in dict(car.pcs).items()
    }
    return (
        service.devices.devices(),
        service.devices.pending(),
        roles,
        service.ingestor.publisher.shim_statuses(),
    )


def _out(device: Device) -> DeviceOut:
    return DeviceOut(
        device_id=device.device_id,
        source=device.source,
        car=car_of_source(device.source),
        paired_at=device.paired_at,
        revoked_at=device.revoked_at,
    )


def _api_url(request: web.Request, service: CoreService) -> str:
    """The API as a PC on the LAN reaches it (the host this request came to)."""
    host = service.config.security.public_host or request.url.host or "127.0.0.1"
    return f"{request.url.scheme}://{host}:{request.url.port or 80}"
