"""``pitbox-shim``: the driver-PC program that streams a sim to the pit appliance."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from driver_pc.adapters.base import (
    ADAPTERS,
    AdapterUnavailableError,
    SimAdapter,
    adapter_names,
    create_adapter,
)
from driver_pc.appliance_api import ApplianceApi
from driver_pc.autostart import main as service_command
from driver_pc.autostart import status_file
from driver_pc.pairing import ca_path, default_credentials_path, load_credentials
from driver_pc.protocol import data_dirs
from driver_pc.protocol.logs import setup_logging
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.registration import DriverRegistrar
from driver_pc.service import ShimConfig, ShimService
from driver_pc.shim_status import ShimReport, write_status
from driver_pc.video import VideoSegmentWatcher

logger = logging.getLogger("driver_pc")

#: With --service: how often to look for the sim again while it is not running.
SIM_RETRY_S = 10.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pair"]:
        from driver_pc.pairing import main as pair_main

        setup_logging(logging.WARNING)
        return pair_main(argv[1:])
    if argv[:1] == ["service"]:
        setup_logging(logging.WARNING)
        return service_command(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.service:
        # Unattended: nobody reads stderr, so the log goes to a rotating file too.
        log_file = args.log_file or data_dirs.shim_data_dir() / "pitbox-shim.log"
        setup_logging(logging.INFO, log_file=log_file)
    else:
        setup_logging(logging.WARNING, log_file=args.log_file)
    key_hex = os.environ.get("PITBOX_TEAM_KEY", "")
    password = os.environ.get("PITBOX_MQTT_PASSWORD", "")
    paired = args.credentials is not None or not (args.source and key_hex)
    if paired:
        # Paired: TLS to the appliance's broker, this PC's own login and key.
        path = args.credentials or default_credentials_path()
        if not path.exists() and not key_hex:
            sys.stderr.write(
                f"pitbox-shim: not paired (no {path}); run `pitbox-shim pair`, "
                "or give --source with PITBOX_TEAM_KEY (legacy)\n"
            )
            return 2
        try:
            creds = load_credentials(path)
        except ValueError as exc:
            sys.stderr.write(f"pitbox-shim: {exc}\n")
            return 2
        source: str = creds.source
        team_key = creds.message_key
        broker = creds.broker_address(ca_path(path))
        # HTTPS to the API, checked against the CA received at pairing.
        api_url, ca_file = creds.api_url, str(ca_path(path))
    else:
        try:
            team_key = bytes.fromhex(key_hex)
            if len(team_key) != 32:
                raise ValueError
        except ValueError:
            sys.stderr.write(
                "pitbox-shim: PITBOX_TEAM_KEY must hold the 64-hex-digit team key"
                + "\n"
            )
            return 2
        source = args.source
        api_url, ca_file = None, None
        broker = BrokerAddress(
            args.host, args.port, args.username or args.source, password
        )
    spool = args.spool or data_dirs.shim_spool_file(source)
    status_path = args.status_file or status_file(source)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        adapter = _open_adapter(args, source, status_path, stop)
    except ValidationError as exc:
        sys.stderr.write(f"pitbox-shim: {explain(exc, args.adapter)}\n")
        return 2
    except AdapterUnavailableError as exc:
        sys.stderr.write(f"pitbox-shim: {exc}" + "\n")
        return 1
    if adapter is None:
        return 0  # stopped while waiting for the sim
    config = ShimConfig(
        source=source,
        broker=broker,
        team_key=team_key,
        spool_path=str(spool),
        status_file=str(status_path),
    )
    service = ShimService(config, adapter)
    # A paired PC reaches the API where pairing put its broker, and signs with its
    # own key; a legacy one needs --api-url (or --host) and a token.
    api = ApplianceApi(
        api_url=args.api_url or api_url or f"http://{broker.host}:8081",
        source=source,
        token=os.environ.get("PITBOX_API_TOKEN", ""),
        key=team_key if paired else None,
        ca_file=ca_file,
    )
    if paired or api.token:
        registrar = DriverRegistrar(api, sim=args.adapter, version=_version())
        service.on_driver_change = registrar.note
        _in_thread("register", registrar.run, stop)
    if args.video_dir is not None:
        watcher = VideoSegmentWatcher(
            folder=args.video_dir,
            target=api,
            clock=service.session_clock,
            state_path=spool.parent / f"{source}.videos.json",
        )
        _in_thread("video", watcher.run, stop)
    service.run(stop)
    return 0


def _open_adapter(
    args: argparse.Namespace, source: str, status_path: Path, stop: threading.Event
) -> SimAdapter | None:
    """The adapter; with ``--service``, waits for the sim however long it takes.

    Raises AdapterUnavailableError (without ``--service``) and ValidationError (bad
    options, never worth waiting for). None: ``stop`` was set while waiting.
    """
    options = adapter_options(args)
    while True:
        try:
            return create_adapter(args.adapter, **options)
        except AdapterUnavailableError as exc:
            if not args.service:
                raise
            write_status(
                status_path,
                ShimReport(
                    source,
                    "waiting_for_sim",
                    args.adapter,
                    "",
                    0,
                    0,
                    False,
                    None,
                    error=str(exc),
                ),
            )
            logger.info("waiting for the sim: %s", exc)
            if stop.wait(SIM_RETRY_S):
                return None


def build_parser() -> argparse.ArgumentParser:
    """The shim's command line; each adapter's options come from its declaration."""
    parser = argparse.ArgumentParser(
        prog="pitbox-shim",
        description=__doc__,
        epilog="Pair first: pitbox-shim pair --appliance URL --code CODE",
    )
    parser.add_argument("--adapter", default="iracing", choices=adapter_names())
    add_adapter_arguments(parser)
    parser.add_argument(
        "--source",
        help="legacy (with PITBOX_TEAM_KEY): this PC's id, e.g. car42-pc1; "
        "paired PCs take it from their credentials",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        help="credentials from `pitbox-shim pair` (default: user config dir)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--username", help="broker user (default: the source id)")
    parser.add_argument(
        "--spool", type=Path, help="spool file (default: user data dir)"
    )
    parser.add_argument(
        "--service",
        action="store_true",
        help="run unattended (how `pitbox-shim service install` starts it): wait for "
        "the sim however long it takes, log to a rotating file",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        help="also log here, rotated at 1 MB x 5 (--service default: "
        "pitbox-shim.log in the user data dir)",
    )
    parser.add_argument(
        "--status-file",
        type=Path,
        help="status for people and service managers (default: "
        "<source>.status.json in the user data dir; `pitbox-shim service status`)",
    )
    parser.add_argument(
        "--video-dir",
        type=Path,
        help="upload finished POV video segments from this folder (e.g. OBS output)",
    )
    parser.add_argument(
        "--api-url",
        help="appliance API for video uploads (default: port 8081 on the broker's "
        "host); paired PCs sign uploads with their key, legacy ones need a "
        "driver-scope token in PITBOX_API_TOKEN",
    )
    return parser


def add_adapter_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of the registered adapters' options models.

    A flag several adapters take is added once; absent flags stay absent, so each
    adapter's own defaults apply.
    """
    users: dict[str, list[str]] = {}
    fields: dict[str, FieldInfo] = {}
    for name, cls in ADAPTERS.items():
        for field_name, info in cls.options_model.model_fields.items():
            flag = info.alias or field_name
            fields.setdefault(flag, info)
            users.setdefault(flag, []).append(name)
    group = parser.add_argument_group("adapter options")
    for flag, info in fields.items():
        group.add_argument(
            "--" + flag.replace("_", "-"),
            dest=flag,
            default=argparse.SUPPRESS,
            help=f"{info.description} ({', '.join(users[flag])})",
            **_argument_kind(flag, info.annotation),
        )


def adapter_options(args: argparse.Namespace) -> dict[str, Any]:
    """The adapter flags given that the chosen adapter takes (others: warned, ignored)."""
    model = ADAPTERS.lookup(args.adapter).options_model
    takes = {info.alias or name for name, info in model.model_fields.items()}
    given = {
        flag
        for cls in ADAPTERS.values()
        for name, info in cls.options_model.model_fields.items()
        if hasattr(args, flag := info.alias or name)
    }
    for flag in sorted(given - takes):
        logger.warning(
            "--%s is ignored: the %s adapter does not take it",
            flag.replace("_", "-"),
            args.adapter,
        )
    return {flag: getattr(args, flag) for flag in given & takes}


def explain(exc: ValidationError, adapter: str) -> str:
    """Bad adapter options in the command line's terms (``--file is required ...``)."""
    problems = []
    for err in exc.errors():
        flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else ""
        if err["type"] == "missing":
            problems.append(f"{flag} is required for the {adapter} adapter")
        else:
            problems.append(f"{flag}: {err['msg']}")
    return "; ".join(problems)


def _argument_kind(flag: str, annotation: Any) -> dict[str, Any]:
    """Argparse's ``type``/``action`` for an option field (``X | None`` is ``X``)."""
    kind = annotation
    if get_origin(annotation) in (Union, UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if kind in (str, int, float, Path):
        return {"type": kind}
    raise TypeError(f"adapter option {flag!r}: {annotation} has no command-line form")


def _in_thread(
    name: str, work: Callable[[threading.Event], None], stop: threading.Event
) -> None:
    """Run ``work(stop)`` on a thread of its own (never on the 60 Hz path)."""
    threading.Thread(target=work, args=(stop,), name=name, daemon=True).start()


def _version() -> str | None:
    try:
        return importlib.metadata.version("pitbox")
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
