"""Request bodies and headers: parsed strictly, refused with 422 naming where, never a 500.

What is refused here is what could not be stored faithfully or hurts the service: text
that is not UTF-8, ``NaN``/``Infinity``/numbers that overflow to infinity, nesting deeper
than any application needs, NUL characters and lone UTF-16 surrogates (PostgreSQL text
cannot hold the one, UTF-8 cannot encode the other), and over-long text.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

REQUEST_ID_MAX = 64  # predictions.request_id is varchar(64)
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"  # prediction ids (hex; batch ids add a prefix)


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"the number {text[:40]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a number JSON allows")


def refuse(loc: list[str | int], message: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 naming ``loc`` (as FastAPI's own validation errors do)."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message, "input": None}])


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, or a 422 saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(["body"], f"body is not UTF-8 (byte {exc.start})", "json_invalid") from exc
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise refuse(["body", exc.pos], f"JSON decode error: {exc.msg}", "json_invalid") from exc
    except _NotFinite as exc:
        raise refuse(["body"], str(exc), "json_invalid") from exc
    except RecursionError as exc:
        raise refuse(["body"], "JSON nested too deeply", "json_invalid") from exc
    except ValueError as exc:  # Python's limit on the digits of an integer
        limit = f"{sys.get_int_max_str_digits():,}"
        raise refuse(["body"], f"a number has more than {limit} digits", "json_invalid") from exc
    if "\\u" in text:  # only an escape can put a NUL or a lone surrogate into a string
        problem = _first_unstorable(value, ["body"])
        if problem is not None:
            raise refuse(problem[0], problem[1])
    return value


def text_problem(value: str, limit: int) -> str | None:
    """Why ``value`` cannot be stored as text (None when it can)."""
    if len(value) > limit:
        return f"text longer than {limit} characters ({len(value):,})"
    if "\x00" in value:
        return "text contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text contains a lone UTF-16 surrogate (not valid Unicode)"
    return None


def _first_unstorable(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    stack: list[tuple[Any, list[str | int]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item, len(item))
            if problem is not None:
                return where, problem
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key, len(key))
                if problem is not None:
                    return [*where, key.encode("utf-8", "backslashreplace").decode()], (
                        f"field name: {problem}"
                    )
                stack.append((child, [*where, key]))
        elif isinstance(item, list):
            stack.extend((child, [*where, i]) for i, child in enumerate(item))
    return None


def request_id(request: Request) -> str | None:
    """The caller's ``X-Request-Id`` when it can be stored; 422 when it cannot."""
    value = request.headers.get("x-request-id")
    if value is None:
        return None
    if not _REQUEST_ID.fullmatch(value):
        raise refuse(
            ["header", "x-request-id"],
            f"X-Request-Id must be 1 to {REQUEST_ID_MAX} printable ASCII characters, no spaces",
        )
    return value
