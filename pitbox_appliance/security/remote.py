"""``pitbox remote``: driver PCs over the internet (public name in the certificate, the cloud bridge).

Two ways in (docs/remote.md): a router port-forward to the broker's TLS port, with
``security.public_host`` in the broker certificate and in each pairing answer; or,
behind CGNAT, a Mosquitto bridge from the appliance to a cloud broker. PitBox
renders that cloud broker's files itself (:func:`write_cloud_broker`): its
certificate comes from the appliance CA (the only CA a paired shim trusts), its
password file holds the paired devices' own logins (Mosquitto's salted hashes,
copied), its ACL is the appliance's per-device one, and the bridge's own login may
only read shims' data and write their commands and acknowledgements.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from pitbox_appliance.broker import (
    AUTOSAVE_INTERVAL_S,
    BRIDGE_TOPICS,
    BridgeConfig,
    password_users,
    set_password,
)
from pitbox_appliance.config import ApplianceConfig, ConfigError, load_config
from pitbox_appliance.security.command import secure_broker
from pitbox_appliance.security.devices import broker_run_dir, security_dir
from pitbox_appliance.security.files import write_private
from pitbox_appliance.security.pki import (
    PkiFiles,
    ca_fingerprint,
    issue_cert,
    server_cert_names,
)

#: The bridge's login on the cloud broker (also its client id there).
BRIDGE_USER = "pitbox-bridge"


def write_cloud_broker(
    out: Path,
    pki: PkiFiles,
    host: str,
    port: int,
    device_passwords: Path,
    bridge_password: str,
    bind: str = "0.0.0.0",
    user: str | None = None,
) -> Path:
    """Render a cloud Mosquitto in ``out`` (conf, ACL, passwd, cert); the conf's path.

    ``device_passwords`` is the appliance broker's password file: every paired
    device's line is copied (the program logins are not), so each shim logs in to
    the cloud broker exactly as to the appliance. The conf's paths point inside
    ``out``: copy the folder as a whole (e.g. to ``/etc/mosquitto/pitbox``).
    ``user``: the account Mosquitto runs as when started as root (its default,
    ``mosquitto``, must own the folder then).
    """
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    issue_cert(pki, [host], out / "cloud.crt", out / "cloud.key")
    devices = [
        line
        for line in _lines(device_passwords)
        if not line.split(":", 1)[0].startswith("pitbox-")
        and line.split(":", 1)[0] not in ("appliance", BRIDGE_USER)
    ]
    passwd = out / "passwd"
    write_private(passwd, "".join(f"{line}\n" for line in devices).encode())
    set_password(passwd, BRIDGE_USER, bridge_password)
    rules = {"in": "read", "out": "write"}
    acl = (
        "# Driver PCs: their own data, commands and acknowledgements only.\n"
        "pattern write pitbox/v1/shim/%u/data\n"
        "pattern read pitbox/v1/shim/%u/cmd\n"
        "pattern read pitbox/v1/shim/%u/ack\n"
        f"\n# The appliance's bridge.\nuser {BRIDGE_USER}\n"
        + "".join(
            f"topic {rules[direction]} pitbox/v1/{pattern}\n"
            for pattern, direction in BRIDGE_TOPICS
        )
    )
    write_private(out / "mosquitto.acl", acl.encode())
    (out / "data").mkdir(exist_ok=True)
    conf = (
        "# PitBox cloud broker (rendered by `pitbox remote cloud-broker`): driver PCs\n"
        "# off the appliance's LAN publish here; the appliance's bridge dials in.\n"
        "allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {out / 'mosquitto.acl'}\n"
        f"listener {port} {bind}\n"
        "use_username_as_clientid true\n"
        f"certfile {out / 'cloud.crt'}\n"
        f"keyfile {out / 'cloud.key'}\n"
        "tls_version tlsv1.2\n"
        "persistence true\n"
        f"persistence_location {out / 'data'}/\n"
        "autosave_on_changes false\n"
        f"autosave_interval {AUTOSAVE_INTERVAL_S}\n"
        "max_inflight_messages 1000\n"
        "max_queued_messages 100000\n"
        "max_packet_size 4194304\n"
        "set_tcp_nodelay true\n"
        f"pid_file {out / 'mosquitto.pid'}\n"
        "log_dest stderr\n"
        "connection_messages true\n"
        "log_timestamp true\n"
    )
    if user:
        conf += f"user {user}\n"
    path = out / "mosquitto.conf"
    write_private(path, conf.encode())
    return path


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ":" in ln]


# ---- the command ----------------------------------------------------------------------
def add_command(sub: Any) -> None:
    """Add ``remote`` (status, bridge, cloud-broker) to the ``pitbox`` subparsers."""
    parser = sub.add_parser(
        "remote",
        help="driver PCs over the internet: public name, cloud bridge",
        description=__doc__,
    )
    parser.add_argument("--config", type=Path, help="appliance YAML config")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "status", help="public name, certificate names, bridge (never passwords)"
    )
    p_bridge = actions.add_parser(
        "bridge", help="bridge the appliance's broker to a cloud broker (TLS)"
    )
    p_bridge.add_argument("--host", help="the cloud broker's DNS name or IP")
    p_bridge.add_argument("--port", type=int, default=8883)
    p_bridge.add_argument("--username", help="the bridge's login on the cloud broker")
    p_bridge.add_argument(
        "--password-file",
        type=Path,
        help="file holding the bridge's password (else $PITBOX_BRIDGE_PASSWORD)",
    )
    p_bridge.add_argument("--ca", type=Path, help="CA certificate of the cloud broker")
    p_bridge.add_argument(
        "--off", action="store_true", help="remove the bridge from the broker"
    )
    p_cloud = actions.add_parser(
        "cloud-broker",
        help="render a cloud Mosquitto for the bridge and set the bridge up",
    )
    p_cloud.add_argument(
        "--host", required=True, help="the cloud broker's DNS name or IP"
    )
    p_cloud.add_argument("--port", type=int, default=8883)
    p_cloud.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one ``pitbox remote`` action; 2 on bad input, 1 if it failed."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"pitbox remote: {exc}\n")
        return 2
    try:
        if args.action == "status":
            return _status(config)
        if args.action == "bridge":
            return _bridge(config, args)
        if args.action == "cloud-broker":
            return _cloud(config, args)
    except ValueError as exc:
        sys.stderr.write(f"pitbox remote {args.action}: {exc}\n")
        return 2
    except (RuntimeError, OSError) as exc:
        sys.stderr.write(f"pitbox remote {args.action}: {exc}\n")
        return 1
    return 2


def _status(config: ApplianceConfig) -> int:
    pki = PkiFiles(security_dir(config.security))
    have = server_cert_names(pki)
    public = config.security.public_host
    lines = [f"public host (security.public_host): {public or '(none: LAN only)'}"]
    if not have:
        lines.append("broker certificate: none yet (pitbox devices setup)")
    else:
        lines.append(f"broker certificate names: {', '.join(have)}")
        lines.append(f"CA fingerprint (SHA-256): {ca_fingerprint(pki)}")
        if public and public not in have:
            lines.append(
                f"the certificate lacks {public}: run `pitbox devices setup` to "
                "re-issue it, then restart the broker"
            )
    bridge = BridgeConfig.load(broker_run_dir(config.security) / "bridge.json")
    lines.append(
        f"bridge: {bridge.host}:{bridge.port} as {bridge.username}"
        if bridge
        else "bridge: off"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _bridge(config: ApplianceConfig, args: argparse.Namespace) -> int:
    run_dir = broker_run_dir(config.security)
    path = run_dir / "bridge.json"
    if args.off:
        path.unlink(missing_ok=True)
        return _rerender(config, run_dir, "bridge removed")
    if not (args.host and args.username and args.ca):
        raise ValueError("--host, --username and --ca are required (or --off)")
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").strip()
    else:
        password = os.environ.get("PITBOX_BRIDGE_PASSWORD", "")
    if not password:
        raise ValueError("give --password-file or set PITBOX_BRIDGE_PASSWORD")
    run_dir.mkdir(parents=True, exist_ok=True)
    ca = run_dir / "bridge-ca.crt"
    shutil.copyfile(args.ca, ca)
    bridge = BridgeConfig(args.host, args.port, args.username, password, str(ca))
    _save(path, bridge)
    return _rerender(config, run_dir, f"bridge to {args.host}:{args.port}")


def _cloud(config: ApplianceConfig, args: argparse.Namespace) -> int:
    pki = PkiFiles(security_dir(config.security))
    if not pki.ca_key.exists():
        raise ValueError("no appliance CA yet: run `pitbox devices setup` first")
    run_dir = broker_run_dir(config.security)
    password = secrets.token_urlsafe(24)
    conf = write_cloud_broker(
        args.out, pki, args.host, args.port, run_dir / "passwd", password
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    bridge = BridgeConfig(args.host, args.port, BRIDGE_USER, password, str(pki.ca_cert))
    _save(run_dir / "bridge.json", bridge)
    devices = sorted(password_users(args.out / "passwd") - {BRIDGE_USER})
    sys.stdout.write(
        f"cloud broker files in {args.out} (conf {conf.name}); devices: "
        f"{', '.join(devices) or 'none paired yet'}\n"
        f"Copy the folder to the cloud machine and run: mosquitto -c {conf}\n"
        "Set security.public_host to "
        f"{args.host} so pairing tells driver PCs to fall back to it.\n"
        "Run this again after pairing new driver PCs (their logins are copied).\n"
    )
    return _rerender(config, run_dir, f"bridge to {args.host}:{args.port}")


def _save(path: Path, bridge: BridgeConfig) -> None:
    write_private(path, json.dumps(bridge.to_json(), indent=1).encode())


def _rerender(config: ApplianceConfig, run_dir: Path, what: str) -> int:
    if not (run_dir / "passwd").exists():
        sys.stdout.write(f"{what}; the broker is not provisioned yet in {run_dir}\n")
        return 0
    secure_broker(config, run_dir).write_config(config.mqtt.username)
    # SIGHUP does not re-read bridges: the broker must restart.
    sys.stdout.write(
        f"{what}: broker config re-rendered in {run_dir}; restart the broker "
        f"(supervisorctl -c {run_dir}/supervisord.conf restart mosquitto)\n"
    )
    return 0
