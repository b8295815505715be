"""A whole appliance in one process, for a test to run inside a network namespace.

``python -m tests.system.lan_appliance --config FILE --address IP``: the CA and broker
certificate (valid for ``IP``), Mosquitto with its TLS listener, the core, and the API
on all of the namespace's addresses, advertised by mDNS. Prints ``READY <api url>``
once everything listens, and stops everything on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

from pitbox_appliance.api.app import bound_port, start_api
from pitbox_appliance.config import load_config
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.command import secure_broker
from pitbox_appliance.security.devices import broker_run_dir, security_dir
from pitbox_appliance.security.pki import appliance_names, ensure_pki


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--address", required=True)
    args = parser.parse_args()
    config = load_config(args.config)
    ensure_pki(security_dir(config.security), appliance_names([args.address]))
    broker = secure_broker(config, broker_run_dir(config.security))
    broker.add_user(config.mqtt.username, os.environ["PITBOX_MQTT_PASSWORD"])
    broker.write_config(config.mqtt.username)
    broker.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    core = CoreService(config, None)
    core.start()
    loop = asyncio.new_event_loop()
    try:
        runner = loop.run_until_complete(start_api(core))
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        sys.stdout.write(f"READY http://{args.address}:{bound_port(runner)}\n")
        sys.stdout.flush()
        stop.wait()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    finally:
        core.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
