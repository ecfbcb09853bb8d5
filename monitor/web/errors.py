"""JSON errors: ``{"error": {"code", "message", "field"?}}`` for every failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from monitor.errors import InputError, MonitorError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status)


def validation_to_input_error(e: ValidationError, prefix: str = "") -> InputError:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return InputError(f"{field}: {msg}" if field else msg, field=field)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except InputError as e:
        return error_response(e.http_status, e.code, e.message, e.field)
    except MonitorError as e:
        return error_response(e.http_status, e.code, str(e))
    except ValidationError as e:
        ie = validation_to_input_error(e)
        return error_response(422, ie.code, ie.message, ie.field)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 429: "rate_limited"}.get(e.status, "http_error")
        resp = error_response(e.status, code, e.reason if e.text is None or e.text.startswith(str(e.status)) else e.text)
        for h in ("Retry-After", "Allow"):
            if h in e.headers:
                resp.headers[h] = e.headers[h]
        return resp


async def read_json(request: web.Request, *, max_bytes: int = 4 * 1024 * 1024) -> Any:
    """The request body as JSON, or a precise 400/413."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    raw = await request.read()
    if not raw:
        raise InputError("request body is empty; JSON expected", code="invalid_json")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"request body is not valid JSON: {e}", code="invalid_json") from e


M = TypeVar("M", bound=BaseModel)


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_to_input_error(e) from e
