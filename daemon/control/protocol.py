"""Wire format of the control socket: one orjson object per line, each way.

Request: {"cmd": "status" | "halt" | "reset" | "start" | "sim", ...}. Response:
{"ok": true, "result": {...}} or {"ok": false, "error": "...", "code": "..."}; "code" is
present only when a client may act on it: "busy" means the request was never read (the
server was at its connection limit, or dropped the idle connection), so sending it again
is safe. Lines are capped at MAX_LINE bytes. Shared by the server and bot4ctl; it never
performs a command.
"""
from __future__ import annotations

import orjson

MAX_LINE = 64 * 1024
BUSY = "busy"


class ProtocolError(ValueError):
    pass


def encode(obj: dict) -> bytes:
    return orjson.dumps(obj, default=str) + b"\n"


def error_reply(message: str, code: str | None = None) -> dict:
    reply = {"ok": False, "error": message}
    if code:
        reply["code"] = code
    return reply


def decode_request(line: bytes) -> dict:
    try:
        req = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"request is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise ProtocolError("request must be a JSON object")
    if not isinstance(req.get("cmd"), str):
        raise ProtocolError('request needs a string "cmd"')
    return req
