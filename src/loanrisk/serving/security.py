"""API keys: stored as SHA-256 hashes, compared in constant time, checked per scope."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from loanrisk.config import ApiKey, Settings

UI_COOKIE = "loanrisk_api_key"


def new_key() -> tuple[str, str]:
    """A fresh random key and the SHA-256 hex to put in settings."""
    key = "lr_" + secrets.token_urlsafe(32)
    return key, hash_key(key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def find_key(presented: str, keys: list[ApiKey]) -> ApiKey | None:
    """The configured key matching ``presented``; every stored hash is compared."""
    digest = hash_key(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256.get_secret_value().lower(), digest):
            found = key
    return found


def presented_key(request: Request, *, allow_cookie: bool = False) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    if allow_cookie:
        return request.cookies.get(UI_COOKIE)
    return None


def check(
    request: Request,
    settings: Settings,
    scope: str,
    *,
    allow_cookie: bool = False,
    key: str | None = None,
) -> ApiKey | None:
    """401 without a valid key, 403 for a valid key without ``scope``."""
    if not settings.serving.auth_enabled:
        return None
    presented = key or presented_key(request, allow_cookie=allow_cookie)
    if presented is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = find_key(presented, settings.serving.api_keys)
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    if scope not in found.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"API key {found.name!r} lacks the {scope!r} scope"
        )
    return found


def require(scope: str) -> object:
    """A FastAPI dependency that enforces ``scope``."""

    async def dependency(request: Request) -> ApiKey | None:  # async: no thread-pool hop
        return check(request, request.app.state.service.settings, scope)

    return Depends(dependency)


Predict = Annotated[ApiKey | None, require("predict")]
Read = Annotated[ApiKey | None, require("read")]
Outcomes = Annotated[ApiKey | None, require("outcomes")]
