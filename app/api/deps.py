"""Dependencies the routes share: the runtime's services, settings and the API-key checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.error_envelope import ApiError
from app.services.runtime import ServerRuntime
from gloss_gen.core.config import Settings


def get_runtime(request: Request) -> ServerRuntime:
    return request.app.state.runtime


def get_settings(request: Request) -> Settings:
    return request.app.state.runtime.settings


RuntimeDep = Annotated[ServerRuntime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches_any(token: str, keys: list[str]) -> bool:
    """Constant-time in the token: every key is compared, whatever matched earlier."""
    presented = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key.encode())
    return found


def _missing_key(what: str) -> ApiError:
    return ApiError(
        "missing_api_key",
        f"This route needs {what} as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def api_key_refusal(authorization: str, settings: Settings) -> ApiError | None:
    """Why a request with this ``Authorization`` header may not use ``/v1/*``, or None.

    The body-budget middleware asks this before a request may hold any of the budget."""
    if not settings.api_keys:
        return None
    token = _bearer_token(authorization)
    if token is None:
        return _missing_key("an API key")
    if not _matches_any(token, settings.api_keys + settings.admin_keys):
        return ApiError("invalid_api_key", "The API key is not valid.")
    return None


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """``/v1/*`` when ``VGLOSS_API_KEYS`` is set: any API or admin key."""
    refusal = api_key_refusal(request.headers.get("authorization", ""), settings)
    if refusal is not None:
        raise refusal


def require_admin_key(request: Request, settings: SettingsDep) -> None:
    """Mutating routes: a key from ``VGLOSS_ADMIN_KEYS``; refused outright when none is configured."""
    if not settings.admin_keys:
        raise ApiError("admin_disabled", "Administration is disabled on this server (no VGLOSS_ADMIN_KEYS set).")
    token = _bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise _missing_key("an admin key")
    if not _matches_any(token, settings.admin_keys):
        raise ApiError("invalid_admin_key", "The admin key is not valid.")


ApiKey = Depends(require_api_key)
AdminKey = Depends(require_admin_key)
