"""Bearer-token guard for mutating endpoints: constant-time compare, refused without a token."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, jsonify, request

TOKEN_ENV = "TESTBED_DASHBOARD_TOKEN"
F = TypeVar("F", bound=Callable[..., Any])


def _refuse(status: int, message: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="testbed-dashboard"'
    return resp


def token_problem(expected: str | None, header: str | None) -> tuple[int, str] | None:
    """(status, reason) when the Authorization header lacks the expected token, else None."""
    if not expected:
        return 403, f"mutations are disabled: no token configured (set {TOKEN_ENV})"
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401, "missing bearer token: send 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return 403, "wrong token"
    return None


def require_token(view: F) -> F:
    """Let the request through only with 'Authorization: Bearer <the configured token>'."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        problem = token_problem(
            current_app.config.get("DASHBOARD_TOKEN"), request.headers.get("Authorization")
        )
        if problem is not None:
            return _refuse(*problem)
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
