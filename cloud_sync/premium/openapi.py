"""The premium data API's OpenAPI 3.1 document (served at ``/openapi.json``; schemathesis runs against it)."""

from __future__ import annotations

from typing import Any

NUM = {"type": ["number", "null"]}
INT = {"type": ["integer", "null"]}
STR = {"type": ["string", "null"]}
BOOL = {"type": ["boolean", "null"]}


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": sorted(props)}


ROWS: dict[str, dict[str, Any]] = {
    "Session": _obj(
        {
            "session": {"type": "string"},
            "track": {"type": "string"},
            "session_key": STR,
            "car": STR,
            "track_name": STR,
            "team_name": STR,
            "first_time": NUM,
            "last_time": NUM,
            "duration": NUM,
            "laps": INT,
            "best_lap_time": NUM,
            "stints": INT,
            "drivers": {"type": ["array", "null"], "items": STR},
        }
    ),
    "Lap": _obj(
        {
            "lap_number": {"type": "integer"},
            "stint": INT,
            "driver_name": STR,
            "start_time": NUM,
            "end_time": NUM,
            "lap_time": NUM,
            "fuel_used": NUM,
            "pit_lap": BOOL,
            "max_speed": NUM,
        }
    ),
    "Stint": _obj(
        {
            "stint": INT,
            "driver_name": STR,
            "start_time": NUM,
            "end_time": NUM,
            "laps": INT,
            "timed_laps": INT,
            "avg_lap_time": NUM,
            "best_lap_time": NUM,
            "fuel_used": NUM,
        }
    ),
    "PitCycle": _obj(
        {
            "cycle": {"type": "integer"},
            "in_lap": {"type": "integer"},
            "out_lap": {"type": "integer"},
            "laps": {"type": "integer"},
            "start_time": NUM,
            "end_time": NUM,
            "driver_in": STR,
            "driver_out": STR,
            "time_lost_s": NUM,
        }
    ),
    "Handoff": _obj(
        {
            "from_stint": INT,
            "to_stint": INT,
            "from_driver": STR,
            "to_driver": STR,
            "from_end_time": NUM,
            "to_start_time": NUM,
            "gap_s": NUM,
        }
    ),
    "Prediction": _obj(
        {
            "session_time": {"type": "number"},
            "prediction": {
                "type": "object",
                "description": "the strategy engine's snapshot as stored "
                "(driver_pc/protocol/live.py StrategySnapshot)",
            },
        }
    ),
}
RESOURCES = {
    "laps": ("Lap", "Lap times of one session, in lap order."),
    "stints": ("Stint", "Stints of one session."),
    "pit-cycles": (
        "PitCycle",
        "Pit cycles: runs of consecutive pit laps and the time they cost against "
        "the session's median clean lap.",
    ),
    "handoffs": ("Handoff", "Driver changes between consecutive stints."),
    "predictions": ("Prediction", "The strategy engine's recommendations as stored."),
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


TEAM = _param(
    "team",
    {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
    "the team's partition slug",
)
SEASON = _param(
    "season", {"type": "integer", "minimum": 1000, "maximum": 9999}, "the season (year)"
)
SESSION = _param(
    "session",
    {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
    "the session's partition slug",
)


def _error(description: str, **headers: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }
    if headers:
        out["headers"] = headers
    return out


ERRORS = {
    "400": _error("a path value is malformed"),
    "401": _error("no key, an unknown key or a revoked one"),
    "403": _error(
        "the key has no scope for this team and season, or the team's "
        "plan does not include the premium API"
    ),
    "429": _error(
        "over the key's rate limit",
        **{
            "Retry-After": {
                "description": "seconds until a request may pass",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
}


def _list(schema: str, description: str, with_session: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "team": {"type": "string"},
        "season": {"type": "integer"},
        "count": {"type": "integer", "minimum": 0},
        "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}},
    }
    if with_session:
        props["session"] = {"type": "string"}
    responses: dict[str, Any] = {
        "200": {
            "description": description,
            "content": {"application/json": {"schema": _obj(props)}},
        },
        **ERRORS,
    }
    if with_session:
        responses["404"] = _error("no such session in this team and season")
    return {
        "get": {
            "summary": description,
            "operationId": f"list{schema}s",
            "security": SECURITY,
            "parameters": [TEAM, SEASON] + ([SESSION] if with_session else []),
            "responses": responses,
        }
    }


def document() -> dict[str, Any]:
    """The OpenAPI document of the premium data API."""
    paths: dict[str, Any] = {
        "/v1/teams/{team}/seasons/{season}/sessions": _list(
            "Session", "The team's compacted sessions of the season.", False
        ),
    }
    for name, (schema, description) in RESOURCES.items():
        paths[f"/v1/teams/{{team}}/seasons/{{season}}/sessions/{{session}}/{name}"] = (
            _list(schema, description, True)
        )
    paths["/v1/usage"] = {
        "get": {
            "summary": "This key's metered usage per day, route and status.",
            "operationId": "getUsage",
            "security": SECURITY,
            "responses": {
                "200": {
                    "description": "usage of the calling key",
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {
                                    "key": {"type": "string"},
                                    "usage": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Usage"},
                                    },
                                }
                            )
                        }
                    },
                },
                "401": ERRORS["401"],
                "429": ERRORS["429"],
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PitBox premium data API",
            "version": "1",
            "description": "Read-only partner access to a team's compacted sessions "
            "(docs/business.md). One key per partner, scoped per team and season; "
            "rate-limited per key; every request metered.",
        },
        "security": SECURITY,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a partner key from `pitbox-cloud keys add`",
                }
            },
            "schemas": {
                **ROWS,
                "Error": _obj({"error": {"type": "string"}}),
                "Usage": _obj(
                    {
                        "key_id": {"type": "string"},
                        "day": {"type": "string"},
                        "route": {"type": "string"},
                        "status": {"type": "integer"},
                        "requests": {"type": "integer"},
                        "rows": {"type": "integer"},
                        "bytes": {"type": "integer"},
                    }
                ),
            },
        },
    }
