"""What the route modules share: documented error answers and echo-safe inputs."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

_ERROR = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}
        }
    }
}
KEYED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **_ERROR},
    403: {"description": "The key lacks the scope", **_ERROR},
    408: {"description": "The body did not arrive in time", **_ERROR},
    413: {"description": "Body too large", **_ERROR},
    422: {"description": "Invalid input, each problem named by its location", **_ERROR},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "No model loaded, or the prediction log cannot record", **_ERROR}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found", **_ERROR}}


def short(value: Any) -> Any:
    """An input echoed in an error, cut short (a 1 MB field is not sent back)."""
    if isinstance(value, str) and len(value) > 100:
        return value[:100] + "…"
    if isinstance(value, dict | list):
        return None
    return value


def refused(exc: ValidationError, prefix: list[str | int]) -> RequestValidationError:
    """A pydantic error as FastAPI's 422, each problem located under ``prefix``."""
    return RequestValidationError(
        [
            {**e, "loc": [*prefix, *e["loc"]], "input": short(e.get("input"))}
            for e in exc.errors(include_url=False, include_context=False)
        ]
    )
