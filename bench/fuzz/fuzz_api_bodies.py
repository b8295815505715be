"""Fuzz every API request body: the JSON parse and pydantic model of each POST resource.

Runs the same steps as ``pitbox_appliance.api.context.read_body`` (json.loads, object
check, ``model_validate``) for DriverRegistration, StatusUpdate, CommandIn and PairIn;
only the errors read_body turns into a 400 may escape.

    .venv/bin/python bench/fuzz/fuzz_api_bodies.py -max_total_time=120
"""

from __future__ import annotations

import json

import atheris
from _fuzz import run

with atheris.instrument_imports():
    from pydantic import ValidationError

    from pitbox_appliance.api.pairing import PairIn
    from pitbox_appliance.api.schemas import CommandIn, DriverRegistration, StatusUpdate

MODELS = (DriverRegistration, StatusUpdate, CommandIn, PairIn)


def one_input(data: bytes) -> None:
    if not data:
        return
    model = MODELS[data[0] % len(MODELS)]
    try:
        body = json.loads(data[1:])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return  # read_body: 400 "not valid JSON" / "nested too deeply"
    if not isinstance(body, dict):
        return
    try:
        parsed = model.model_validate(body)
    except ValidationError:
        return
    parsed.model_dump_json()  # what the resource echoes back must serialise


def seeds() -> list[bytes]:
    return [
        b'\0{"source": "car42-pc1", "car": "car42", "driver_name": "Jane",'
        b' "sim": "iracing"}',
        b'\1{"source": "car42-pc1", "state": "streaming", "spool_depth": 3}',
        b'\2{"kind": "camera", "args": {"car_number": "42", "group": 3}}',
        b'\2{"kind": "message", "args": {"text": "box"}}',
        b'\3{"nonce": "' + b"a" * 32 + b'", "proof": "' + b"b" * 64 + b'"}',
    ]


if __name__ == "__main__":
    run("api_bodies", one_input, seeds())
