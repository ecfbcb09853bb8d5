"""The one exception tree of the product.

MonitorError
├── ConfigError          a configuration file or value is wrong (carries file and line)
├── InputError           a request or message is malformed (carries the field); HTTP 400/422
│   └── NotFound         the thing asked for does not exist; HTTP 404
├── Forbidden            the caller's role may not do this; HTTP 403
├── Conflict             the action does not fit the current state; HTTP 409
├── ServiceUnavailable   a backing service (database, broker) cannot be reached
│   ├── DatabaseUnavailable
│   └── BrokerUnavailable
├── SourceError          a video source cannot be opened or read
└── ModelError           detector weights cannot be loaded or run

Third-party errors are converted at the boundary with ``raise ... from``.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error the product raises on purpose."""

    code = "error"
    http_status = 500


class ConfigError(MonitorError):
    code = "config_error"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.message = message


class InputError(MonitorError):
    code = "invalid_input"
    http_status = 422

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(InputError):
    code = "not_found"
    http_status = 404


class Forbidden(MonitorError):
    code = "forbidden"
    http_status = 403


class Conflict(MonitorError):
    code = "conflict"
    http_status = 409


class ServiceUnavailable(MonitorError):
    code = "unavailable"
    http_status = 503


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    code = "broker_unavailable"


class SourceError(MonitorError):
    code = "source_error"


class ModelError(MonitorError):
    code = "model_error"
