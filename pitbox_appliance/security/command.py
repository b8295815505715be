"""``pitbox devices``: set up TLS, pair driver PCs, list and revoke them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pitbox_appliance.broker import MosquittoBroker, TlsListener
from pitbox_appliance.config import ApplianceConfig, ConfigError, load_config
from pitbox_appliance.security.devices import (
    DeviceRegistry,
    broker_run_dir,
    security_dir,
)
from pitbox_appliance.security.pki import (
    PkiFiles,
    appliance_names,
    ca_fingerprint,
    ensure_pki,
)
from pitbox_appliance.security.web_tls import https_on


def add_command(sub: Any) -> None:
    """Add ``devices`` (setup, pair, list, revoke) to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "devices", help="pair, list and revoke driver PCs", description=__doc__
    )
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    actions = parser.add_subparsers(dest="action", required=True)
    p_setup = actions.add_parser(
        "setup", help="create the CA and the broker's TLS certificate (first setup)"
    )
    p_setup.add_argument(
        "--name",
        action="append",
        default=[],
        help="extra hostname or IP the driver PCs use (repeatable)",
    )
    p_pair = actions.add_parser("pair", help="start pairing: prints a one-time code")
    p_pair.add_argument(
        "--name", required=True, help="the driver PC's source id, e.g. car42-pc1"
    )
    p_list = actions.add_parser("list", help="paired devices (never their keys)")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_revoke = actions.add_parser("revoke", help="revoke a device by id or name")
    p_revoke.add_argument("device", help="device id or source id")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one ``pitbox devices`` action; 2 on bad input, 1 if it failed."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"pitbox devices: {exc}\n")
        return 2
    registry = DeviceRegistry.from_config(config.security, config.mqtt.username)
    try:
        if args.action == "setup":
            return _setup(config, args.name)
        if args.action == "pair":
            return _pair(config, registry, args.name)
        if args.action == "list":
            return _list(registry, args.json)
        if args.action == "revoke":
            device = registry.revoke(args.device)
            sys.stdout.write(
                f"revoked {device.device_id} ({device.source}): its broker login is "
                "gone and its key is refused\n"
            )
            return 0
    except (ValueError, LookupError) as exc:
        sys.stderr.write(f"pitbox devices {args.action}: {exc}\n")
        return 2
    except (RuntimeError, OSError) as exc:
        sys.stderr.write(f"pitbox devices {args.action}: {exc}\n")
        return 1
    return 2


def _setup(config: ApplianceConfig, extra: list[str]) -> int:
    # The public name (router port-forward, docs/remote.md) is in the certificate
    # too; a changed name re-issues it here.
    public = [config.security.public_host] if config.security.public_host else []
    files = ensure_pki(
        security_dir(config.security), appliance_names([*extra, *public])
    )
    sys.stdout.write(
        f"CA and broker certificate in {files.directory}\n"
        f"CA fingerprint (SHA-256): {ca_fingerprint(files)}\n"
    )
    run_dir = broker_run_dir(config.security)
    if (run_dir / "passwd").exists():
        # The broker is provisioned: give it the TLS listener (plain stays local).
        broker = secure_broker(config, run_dir)
        broker.write_config(config.mqtt.username)
        broker.reload()
        # SIGHUP re-reads logins and the ACL, not listeners or their settings (the
        # TLS listener, use_username_as_clientid): those need a restart.
        sys.stdout.write(
            f"broker config in {run_dir}: TLS on port {config.security.tls_port}, "
            f"plain TCP on 127.0.0.1:{config.mqtt.port}; restart the broker once "
            f"to apply listener changes (supervisorctl -c {run_dir}/supervisord.conf "
            "restart mosquitto)\n"
        )
    return 0


def secure_broker(config: ApplianceConfig, run_dir: Path) -> MosquittoBroker:
    """The appliance broker: plain TCP on 127.0.0.1, TLS on the LAN for driver PCs."""
    files = PkiFiles(security_dir(config.security))
    listener = TlsListener(
        config.security.tls_port, files.server_cert, files.server_key
    )
    return MosquittoBroker(run_dir, config.mqtt.port, "127.0.0.1", tls=listener)


def _pair(config: ApplianceConfig, registry: DeviceRegistry, name: str) -> int:
    directory = security_dir(config.security)
    if not (directory / "ca.crt").exists():
        public = [config.security.public_host] if config.security.public_host else []
        ensure_pki(directory, appliance_names(public))
    pending = registry.start_pairing(name, config.security.pairing_ttl_s)
    minutes = max(1, round((pending.expires_at - time.time()) / 60))
    code = f"{pending.code[:4]}-{pending.code[4:]}"
    scheme = "https" if https_on(config.security, config.core.api_host) else "http"
    # The code goes to the engineer's terminal only, never to a log.
    sys.stdout.write(
        f"Pairing code for {name}: {code}  (valid {minutes} min, works once)\n"
        f"On the driver PC: pitbox-shim pair --appliance {scheme}://<appliance>:"
        f"{config.core.api_port} --code {code}\n"
    )
    return 0


def _list(registry: DeviceRegistry, as_json: bool) -> int:
    devices = registry.devices()
    if as_json:
        rows = [
            {
                "device_id": d.device_id,
                "source": d.source,
                "paired_at": d.paired_at,
                "revoked_at": d.revoked_at,
            }
            for d in devices
        ]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return 0
    for d in devices:
        state = "active" if d.active else "revoked"
        paired = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.paired_at))
        sys.stdout.write(f"{d.device_id}  {d.source:<24} {state:8} {paired}\n")
    return 0
